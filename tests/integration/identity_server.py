"""The identity service as a subprocess (`tenantproxy identity run`), for tests.

``IdentityServer.start(folder, roles, principals)`` writes a config and a key into ``folder``,
starts the service on a free port and returns once it printed its ready line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantproxy.identity import encode_key, new_key

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
READY_PREFIX = "tenantproxy identity ready "


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    folder: Path, roles: dict[str, str], principals: list[dict[str, Any]]
) -> tuple[Path, bytes]:
    """Writes identity.toml and identity.key into ``folder``; returns the config path and key."""
    key = new_key()
    (folder / "identity.key").write_text(encode_key(key))
    lines = [
        f'account_id = "{ACCOUNT_ID}"',
        f'region = "{REGION}"',
        'key_file = "identity.key"',
        "port = 0",
        "max_session_duration_s = 3600",
    ]
    for name, policy in roles.items():
        lines += ["[[roles]]", f"name = {_toml_string(name)}", f"policy = {_toml_string(policy)}"]
    for principal in principals:
        lines.append("[[principals]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in principal.items()]
    path = folder / "identity.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, key


@dataclass
class IdentityServer:
    url: str
    key: bytes
    process: subprocess.Popen[str] = field(repr=False)

    @classmethod
    def start(
        cls, folder: Path, roles: dict[str, str], principals: list[dict[str, Any]]
    ) -> IdentityServer:
        config, key = write_config(folder, roles, principals)
        process = subprocess.Popen(
            [
                *(sys.executable, "-c", "from tenantproxy.cli import main; main()"),
                *("identity", "run", "--config", str(config), "--log-level", "WARNING"),
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until ready, or '' if the process died
        if not line.startswith(READY_PREFIX):
            process.kill()
            process.wait()
            raise RuntimeError(f"identity service did not start: {line!r}")
        return cls(line.removeprefix(READY_PREFIX).strip(), key, process)

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()
