"""`tenantproxy proxy run` in a process of its own, for tests that measure the proxy itself (its
memory) or must read its log as an operator would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from tenantproxy.config import ProxyConfig
from tenantproxy.stack.outputs import to_toml

PROGRAM = Path(sys.executable).parent / "tenantproxy"


class ProxyProcess:
    def __init__(self, config: ProxyConfig, folder: Path) -> None:
        self._config_file = folder / "proxy.toml"
        self._config_file.write_text(to_toml(config.model_dump(mode="json", exclude_none=True)))
        self.log_file = folder / "proxy.log"
        self._process: subprocess.Popen[str] | None = None
        self.addresses: dict[str, str] = {}

    def __enter__(self) -> ProxyProcess:
        with self.log_file.open("w") as log:
            self._process = subprocess.Popen(
                [str(PROGRAM), "proxy", "run", "--config", str(self._config_file)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self._process.stdout is not None
        ready = self._process.stdout.readline()
        assert ready.startswith("tenantproxy ready"), self.log_text()
        self.addresses = dict(part.split("=") for part in ready.split()[2:])
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self._process
        assert process is not None
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, then the exit status once the proxy (every worker) has drained."""
        assert self._process is not None
        self._process.terminate()
        return self._process.wait(timeout=timeout_s)

    def wait(self, timeout_s: float) -> int:
        """The exit status, once the proxy exits on its own."""
        assert self._process is not None
        return self._process.wait(timeout=timeout_s)

    def worker_pids(self) -> list[int]:
        """The worker processes (workers > 1); none when the proxy is a single process."""
        assert self._process is not None
        return [child.pid for child in psutil.Process(self._process.pid).children()]

    def endpoint(self, name: str) -> str:
        return self.addresses[name]

    def rss_bytes(self) -> int:
        """The whole proxy's: its process and its workers'."""
        assert self._process is not None
        process = psutil.Process(self._process.pid)
        return sum(int(p.memory_info().rss) for p in [process, *process.children()])

    def log_text(self) -> str:
        return self.log_file.read_text()
