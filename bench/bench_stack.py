"""The benchmark's own stack: `tenantproxy stack up` in a temporary folder, always brought down.

Also what sysbench needs to reach it: a tenant's password from the secret store, and TLS files.
sysbench 1.0's MariaDB driver, given ``--mysql-ssl=on``, loads ``cacert.pem``,
``client-cert.pem`` and ``client-key.pem`` from its working directory and fails without them, so
we sign a client certificate with the stack's CA and run sysbench in that folder.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pymysql
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenantproxy.app import READY_LINE
from tenantproxy.config import FileSecretStoreConfig
from tenantproxy.secretstore import FileSecretStore
from tenantproxy.stack import mariadb
from tenantproxy.stack.outputs import read_admin_credentials, write_proxy_config

TENANTPROXY = Path(sys.executable).with_name("tenantproxy")
TENANT = 1  # the one tenant the benchmark reads as: user1 / user_database1


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        host, _, port = text.rpartition(":")
        return cls(host, int(port))


@dataclass(frozen=True)
class BenchStack:
    state_dir: Path
    outputs: dict[str, Any]

    @property
    def proxy_reader(self) -> Endpoint:
        return Endpoint.parse(self.outputs["ProxyReaderEndpoint"])

    @property
    def proxy_pid(self) -> int:
        return int(self.outputs["ProxyPid"])

    @property
    def replicas(self) -> dict[str, Endpoint]:
        """The proxy cluster's replicas, the servers the proxy's reader endpoint reads from."""
        return {
            instance["name"]: Endpoint.parse(instance["endpoint"])
            for instance in self.outputs["ProxyClusterInstances"]
            if instance["role"] == "replica"
        }

    @property
    def mariadbd_pids(self) -> dict[str, int]:
        """Every MariaDB server of the proxy cluster (writer and replicas), by instance name."""
        names = [instance["name"] for instance in self.outputs["ProxyClusterInstances"]]
        return {name: self.mariadbd_pid(name) for name in names}

    def mariadbd_pid(self, instance_name: str) -> int:
        return int((self.state_dir / instance_name / "mysqld.pid").read_text().strip())

    @property
    def proxy_log(self) -> Path:
        return self.state_dir / "proxy.log"

    def secret_store(self) -> FileSecretStore:
        return FileSecretStore.from_config(
            FileSecretStoreConfig(
                path=Path(self.outputs["SecretStore"]),
                key_file=Path(self.outputs["SecretsKeyFile"]),
            )
        )

    def tenant_login(self, tenant: int = TENANT) -> tuple[str, str, str]:
        """(user, password, database) of a tenant, by default the benchmark's one."""
        secret = self.secret_store().get(f"tenants/user{tenant}")
        return f"user{tenant}", secret.password, f"user_database{tenant}"

    def set_iam_auth(self, tenant: int, iam_auth: str) -> None:
        """Token login ("required") or password login ("disabled") for one tenant at the proxy;
        the proxy reads the secret store file again when it changes."""
        store = self.secret_store()
        name = f"tenants/user{tenant}"
        secret = store.get(name)
        store.put(name, replace(secret, extra={**secret.extra, "iam_auth": iam_auth}))

    def admin_connection(self, instance_name: str) -> pymysql.connections.Connection[Any]:
        """The stack's admin account on one MariaDB instance (TLS), e.g. for SHOW GLOBAL STATUS."""
        instance = next(
            i for i in self.outputs["ProxyClusterInstances"] if i["name"] == instance_name
        )
        return mariadb.connect(
            Endpoint.parse(instance["endpoint"]).port,
            read_admin_credentials(Path(self.outputs["AdminCredentials"])),
            Path(self.outputs["CACertificate"]),
        )

    def write_sysbench_tls_files(self, folder: Path) -> None:
        """cacert.pem, client-cert.pem, client-key.pem, where sysbench looks for them."""
        folder.mkdir(parents=True, exist_ok=True)
        ca_pem = Path(self.outputs["CACertificate"]).read_bytes()
        ca_key_pem = (Path(self.outputs["CACertificate"]).parent / "ca-key.pem").read_bytes()
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sysbench")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(ca_key, hashes.SHA256())
        )
        (folder / "cacert.pem").write_bytes(ca_pem)
        (folder / "client-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / "client-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@contextmanager
def running_stack(
    state_dir: Path,
    *,
    is_tls_required: bool,
    rows: int,
    iam_auth: str = "required",
    extra_settings: Sequence[str] = (),
) -> Iterator[BenchStack]:
    """Starts a small stack (4 tenants, proxy cluster only); brings it down on any exit.

    ``iam_auth`` is every tenant's: "required" (token login, the stack's default) or "disabled"
    (password login). The proxies are one process each (``proxy_workers=1``; the proxy's own
    default is one worker per CPU), so rows measured before workers existed still compare; a
    benchmark asks for workers explicitly. ``extra_settings`` (``key=value``) come last and win."""
    settings = ["tenants=4", f"rows={rows}", "load_test=false", f"iam_auth={iam_auth}"]
    settings.append("proxy_workers=1")
    settings.append(f"require_tls={'true' if is_tls_required else 'false'}")
    settings += extra_settings
    command = [str(TENANTPROXY), "stack", "up", "--state-dir", str(state_dir)]
    for item in settings:
        command += ["--set", item]
    try:
        _run_quietly(command)
        outputs = json.loads((state_dir / "outputs.json").read_text())
        yield BenchStack(state_dir, outputs)
    finally:
        down = [str(TENANTPROXY), "stack", "down", "--state-dir", str(state_dir)]
        _run_quietly(down, is_fatal=False)  # a failure here must not hide the first one


def _run_quietly(command: list[str], *, is_fatal: bool = True) -> None:
    """Runs a command, showing its output only when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        sys.stderr.write(f"failed ({done.returncode}): {' '.join(command)}\n")
        if is_fatal:
            raise SystemExit(1)


@dataclass(frozen=True)
class ProxyHandle:
    """A proxy process the benchmark started: its read-only endpoint, /metrics address, PID."""

    read_only: Endpoint
    metrics: Endpoint | None
    pid: int


@contextmanager
def second_proxy(
    stack: BenchStack, name: str, overrides: dict[str, Any], timeout_s: float = 30.0
) -> Iterator[tuple[Endpoint, int]]:
    """``proxy_process``'s read-only endpoint and PID."""
    with proxy_process(stack, name, overrides, timeout_s) as proxy:
        yield proxy.read_only, proxy.pid


@contextmanager
def proxy_process(
    stack: BenchStack, name: str, overrides: dict[str, Any], timeout_s: float = 30.0
) -> Iterator[ProxyHandle]:
    """Another proxy process on the stack's servers: the stack's proxy config with ``overrides``
    (e.g. ``pool_mode``), its own ports, metrics port and spans file. Stopped by PID (SIGTERM,
    then SIGKILL) on any exit."""
    config = tomllib.loads(Path(stack.outputs["ProxyConfig"]).read_text())
    config.update(overrides)
    config["metrics_port"] = 0
    config["endpoints"] = [{**endpoint, "port": 0} for endpoint in config["endpoints"]]
    if config.get("tracing", {}).get("spans_file"):
        config["tracing"]["spans_file"] = str(stack.state_dir / f"{name}-spans.jsonl")
    config_path = stack.state_dir / f"{name}.toml"
    write_proxy_config(config_path, config)  # validates it, as the stack does its own
    ready_file = stack.state_dir / f"{name}.out"
    argv = [str(TENANTPROXY), "proxy", "run", "--config", str(config_path)]
    with ready_file.open("w") as out, (stack.state_dir / f"{name}.log").open("w") as log:
        process = subprocess.Popen(argv, stdout=out, stderr=log)
    try:
        fields = _ready_fields(ready_file, process, timeout_s)
        metrics = Endpoint.parse(fields["metrics"]) if "metrics" in fields else None
        yield ProxyHandle(Endpoint.parse(fields["read_only"]), metrics, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready_fields(
    ready_file: Path, process: subprocess.Popen[bytes], timeout_s: float
) -> dict[str, str]:
    """From the proxy's ``tenantproxy ready read_write=H:P read_only=H:P metrics=...`` line."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in ready_file.read_text().splitlines():
            if line.startswith(READY_LINE):
                return dict(part.split("=", 1) for part in line.split()[2:])
        if process.poll() is not None:
            raise SystemExit(f"the second proxy exited ({process.returncode}); see its log")
        time.sleep(0.1)
    raise SystemExit(f"the second proxy was not ready in {timeout_s} s")
