"""One MariaDB instance of the stack: install its datadir, start it, create the admin account.

Every program gets ``--no-defaults`` first, or it reads Debian's config (``/run/mysqld``).
``mariadb-install-db`` makes ``root@localhost`` with unix_socket auth only, so the admin account
``'tpadmin'@'%'`` is created over the socket; everything after that uses TCP as the admin.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets as random_secrets
import socket
import string
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pymysql

from tenantproxy.errors import StackError
from tenantproxy.stack.certificates import CertificateFiles
from tenantproxy.stack.processes import ProcessRecord, is_ours, wait_for_port
from tenantproxy.wire.mysql.handshake import PROTOCOL_VERSION

HOST = "127.0.0.1"
ADMIN_USER = "tpadmin"
_ALPHABET = string.ascii_letters + string.digits
# sockaddr_un.sun_path holds 108 bytes; deep state dirs get a socket in the temp folder instead.
_MAX_SOCKET_PATH = 100
_POLL_S = 0.05
# How long one readiness probe waits for the server's greeting on the socket.
_GREETING_TIMEOUT_S = 2.0

Role = Literal["writer", "replica"]


def random_password(length: int = 32) -> str:
    return "".join(random_secrets.choice(_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class AdminAccount:
    """The stack's administrative account, on every instance (also the replication user)."""

    user: str
    password: str = field(repr=False)

    @classmethod
    def generate(cls) -> AdminAccount:
        return cls(ADMIN_USER, random_password())


@dataclass(frozen=True)
class InstanceSpec:
    """Where one instance lives and listens."""

    cluster: str
    name: str
    role: Role
    server_id: int
    port: int
    base_dir: Path

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def datadir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket(self) -> Path:
        path = self.base_dir / "mysqld.sock"
        if len(str(path.absolute())) <= _MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"tenantproxy-{digest}.sock"

    @property
    def tmpdir(self) -> Path:
        # Bootstraps sharing one tmpdir crash each other (Aria temporary tables): one each.
        return self.base_dir / "tmp"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "mariadbd.log"

    @property
    def error_log(self) -> Path:
        return self.base_dir / "error.log"


@dataclass(frozen=True)
class ServerOptions:
    """What every instance of the stack shares."""

    certificates: CertificateFiles
    max_allowed_packet_mb: int = 64
    max_connections: int = 200
    # e.g. pam_login.SERVER_OPTIONS (token login checked by the server)
    extra_options: tuple[str, ...] = ()


def install(spec: InstanceSpec) -> None:
    """Creates the system tables in an empty datadir."""
    spec.tmpdir.mkdir(parents=True, exist_ok=True)
    argv = [
        "mariadb-install-db",
        "--no-defaults",
        f"--datadir={spec.datadir.absolute()}",
        f"--tmpdir={spec.tmpdir.absolute()}",
        "--skip-test-db",
        "--auth-root-authentication-method=socket",
        *_user_options(),
    ]
    log = spec.base_dir / "install.log"
    with log.open("wb") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise StackError(f"{spec.name}: mariadb-install-db failed ({result.returncode})\n{tail}")


def server_argv(spec: InstanceSpec, options: ServerOptions) -> list[str]:
    certs = options.certificates
    argv = [
        "mariadbd",
        "--no-defaults",
        *_user_options(),
        f"--datadir={spec.datadir.absolute()}",
        f"--socket={spec.socket.absolute()}",
        f"--pid-file={(spec.base_dir / 'mysqld.pid').absolute()}",
        f"--log-error={spec.error_log.absolute()}",
        f"--tmpdir={spec.tmpdir.absolute()}",
        f"--port={spec.port}",
        f"--bind-address={HOST}",
        "--skip-name-resolve",
        f"--server-id={spec.server_id}",
        f"--log-bin={(spec.datadir / 'mariadb-bin').absolute()}",
        "--gtid-strict-mode=1",
        f"--max-allowed-packet={options.max_allowed_packet_mb}M",
        f"--max-connections={options.max_connections}",
        # Below the connection churn MariaDB would create a thread per connection.
        f"--thread-cache-size={options.max_connections}",
        "--local-infile=1",
        f"--ssl-cert={certs.server_cert.absolute()}",
        f"--ssl-key={certs.server_key.absolute()}",
        f"--ssl-ca={certs.ca_cert.absolute()}",
        *options.extra_options,
    ]
    if spec.role == "replica":
        argv += ["--read-only=1", f"--relay-log={(spec.datadir / 'relay-bin').absolute()}"]
    return argv


def wait_ready(spec: InstanceSpec, record: ProcessRecord, timeout_s: float) -> None:
    """Returns once the started mariadbd listens on its TCP port and greets on its unix socket;
    its error log on failure.

    The admin account is made over the socket, and mariadbd opens the socket after its TCP port:
    a wait for the port alone let ``create_admin`` meet no socket yet (ERROR 2002) under load.
    """
    deadline = time.monotonic() + timeout_s
    try:
        wait_for_port(record, timeout_s)
        _wait_for_greeting(spec, record, deadline)
    except StackError as exc:
        raise StackError(f"{exc}\n{_error_log_tail(spec)}") from None


def _wait_for_greeting(spec: InstanceSpec, record: ProcessRecord, deadline: float) -> None:
    path = spec.socket.absolute()
    while (why_not := _why_no_greeting(path)) is not None:
        if not is_ours(record):
            raise StackError(f"{spec.name} exited before answering on its socket {path}")
        if time.monotonic() >= deadline:
            raise StackError(f"{spec.name} does not answer on its socket {path}: {why_not}")
        time.sleep(_POLL_S)


def _why_no_greeting(path: Path) -> str | None:
    """None when the server on the unix socket sends its handshake (HandshakeV10); else why not:
    no socket yet, refused, silent, or an ERR instead (too many connections, …)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(_GREETING_TIMEOUT_S)
            sock.connect(str(path))
            first = _receive_exactly(sock, 5)  # packet header (4 bytes), the payload's first byte
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    if first is None:
        return "closed before greeting"
    if first[4] != PROTOCOL_VERSION:
        return f"its first packet is not a handshake (starts with {first[4]:#04x})"
    return None


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def create_admin(spec: InstanceSpec, admin: AdminAccount) -> None:
    """Creates the admin account over the unix socket (root has socket auth only).

    Not binlogged, and the binlog is reset, so that every instance starts with an empty GTID
    history: replicas then need no dump (REFERENCE.md, "Running MariaDB by hand").
    """
    sql = (
        "SET SESSION sql_log_bin=0;\n"
        f"CREATE USER '{admin.user}'@'%' IDENTIFIED BY '{admin.password}';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{admin.user}'@'%' WITH GRANT OPTION;\n"
        "SET SESSION sql_log_bin=1;\n"
        "RESET MASTER;\n"
    )
    argv = [
        "mariadb",
        "--no-defaults",
        "--protocol=socket",
        f"--socket={spec.socket.absolute()}",
        f"--user={_socket_user()}",
        "--batch",
    ]
    result = subprocess.run(argv, input=sql.encode(), capture_output=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        output = output.replace(admin.password, "********")
        raise StackError(f"{spec.name}: cannot create the admin account: {output.strip()}")


def connect(
    port: int,
    admin: AdminAccount,
    ca_file: Path | None = None,
    database: str | None = None,
    **kwargs: Any,
) -> pymysql.connections.Connection[Any]:
    """A PyMySQL connection as the admin, over TLS when ``ca_file`` is given."""
    ssl: dict[str, Any] | None = {"ca": str(ca_file)} if ca_file is not None else None
    try:
        return pymysql.connect(
            host=HOST,
            port=port,
            user=admin.user,
            password=admin.password,
            database=database,
            ssl=ssl,
            autocommit=True,
            connect_timeout=10,
            **kwargs,
        )
    except pymysql.MySQLError as exc:
        raise StackError(f"cannot connect to {HOST}:{port} as {admin.user}: {exc}") from None


def _user_options() -> list[str]:
    return ["--user=root"] if os.geteuid() == 0 else []


def _socket_user() -> str:
    return "root" if os.geteuid() == 0 else getpass.getuser()


def _error_log_tail(spec: InstanceSpec, lines: int = 15) -> str:
    try:
        tail = spec.error_log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"--- last lines of {spec.error_log} ---\n" + "\n".join(tail)
