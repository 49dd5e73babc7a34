"""PostgreSQL with PgBouncer in front, on this machine, as the point-select benchmark's reference.

Both run as processes the benchmark starts itself, in a temporary folder, on 127.0.0.1, and stops
by PID: Debian's packages (bench/setup.sh installs them when missing), not their services.
postgres refuses to run as root, and so does pgbouncer, so as root both (and initdb) run as the
``postgres`` user the package creates, in a folder that user owns.

pgbench ``-S`` (C, libpq) is the client: ``SELECT abalance FROM pgbench_accounts WHERE aid = ?``,
one query per transaction, simple protocol, one thread per connection as sysbench runs them.
Latency percentiles come from pgbench's per-transaction log, sampled (``--sampling-rate``) so
that writing it costs the client little.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench_stack import Endpoint
from sysbench_run import SysbenchResult, percentile, run_measured

SETUP_SCRIPT = Path(__file__).with_name("setup.sh")
HOST = "127.0.0.1"
USER = "bench"  # initdb's superuser; trusted on 127.0.0.1, no password
DATABASE = "postgres"
SCALE = 1  # pgbench_accounts: 100,000 rows
SAMPLING_RATE = 0.1
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PgReference:
    postgres: Endpoint
    pgbouncer: Endpoint
    postmaster_pid: int
    pgbouncer_pid: int


def ensure_installed() -> None:
    """Runs bench/setup.sh when a program is missing (it installs Debian's packages)."""
    if _postgres_bin_dir() is None or shutil.which("pgbouncer", path=_sbin_path()) is None:
        subprocess.run([str(SETUP_SCRIPT)], check=True)


@contextmanager
def pg_reference(pool_size: int) -> Iterator[PgReference]:
    """postgres and pgbouncer (transaction pooling, ``pool_size`` server connections), running;
    both stopped and their folder removed on any exit."""
    ensure_installed()
    folder = Path(tempfile.mkdtemp(prefix="tp-bench-pg-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        _give_to_runner(folder)
        postgres = _start_postgres(folder, processes)
        pgbouncer = _start_pgbouncer(folder, postgres, pool_size, processes)
        yield PgReference(postgres, pgbouncer, processes[0].pid, processes[1].pid)
    finally:
        for process in reversed(processes):  # pgbouncer first, then postgres
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def server_versions() -> dict[str, str]:
    """e.g. {"postgres": "postgres (PostgreSQL) 15.18 ...", "pgbouncer": "PgBouncer 1.18.0"}."""
    pgbouncer = shutil.which("pgbouncer", path=_sbin_path()) or "pgbouncer"
    versions = {}
    for name, program in (("postgres", str(_program("postgres"))), ("pgbouncer", pgbouncer)):
        done = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
        versions[name] = done.stdout.splitlines()[0] if done.stdout else "?"
    return versions


def run_pgbench(
    endpoint: Endpoint, *, threads: int, seconds: float, workdir: Path
) -> SysbenchResult:
    """One ``pgbench -S`` run; the result in sysbench's shape, so one table holds both."""
    log_dir = Path(tempfile.mkdtemp(prefix="pgbench-log-", dir=workdir))
    command = [
        str(_program("pgbench")),
        "--select-only",
        "--no-vacuum",
        f"--host={endpoint.host}",
        f"--port={endpoint.port}",
        f"--username={USER}",
        f"--client={threads}",
        f"--jobs={threads}",
        f"--time={max(1, round(seconds))}",
        "--log",
        f"--log-prefix={log_dir / 'tx'}",
        f"--sampling-rate={SAMPLING_RATE}",
        DATABASE,
    ]
    try:
        text, returncode, cpu_s = run_measured(command, workdir)
        latencies_us = _sampled_latencies_us(log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    return parse_pgbench_report(text, returncode, cpu_s, latencies_us)


def parse_pgbench_report(
    text: str, returncode: int, client_cpu_s: float, latencies_us: list[int]
) -> SysbenchResult:
    transactions = _number(r"number of transactions actually processed: (\d+)", text) or 0.0
    failed = _number(r"number of failed transactions: (\d+)", text) or 0.0
    buckets = [(us / 1000, 1) for us in latencies_us]
    return SysbenchResult(
        returncode=returncode,
        queries=int(transactions),
        seconds=_number(r"^duration: (\d+) s", text) or 0.0,
        queries_per_s=_number(r"^tps = ([0-9.]+)", text) or 0.0,
        p50_ms=percentile(buckets, 0.50),
        p95_ms=percentile(buckets, 0.95),
        sysbench_p95_ms=None,
        avg_ms=_number(r"^latency average = ([0-9.]+) ms", text),
        errors=int(failed),
        reconnects=0,
        tls_cipher=None,
        client_cpu_s=client_cpu_s,
        fatal_lines=sorted(set(re.findall(r"^.*(?:error|FATAL|aborted).*$", text, re.M)))[:10],
        p99_ms=percentile(buckets, 0.99),
    )


def _sampled_latencies_us(log_dir: Path) -> list[int]:
    """Column 3 of pgbench's log lines: ``client tx_no latency_us script epoch us``."""
    latencies = []
    for path in log_dir.iterdir():
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(int(fields[2]))
    return latencies


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


# --- the two servers ------------------------------------------------------------------------


def _start_postgres(folder: Path, processes: list[subprocess.Popen[bytes]]) -> Endpoint:
    data = folder / "data"
    _run_as_runner([str(_program("initdb")), "-D", str(data), "-U", USER, "--auth=trust",
                    "--no-sync", "--encoding=UTF8", "--locale=C"])  # fmt: skip
    port = _free_port()
    settings = {
        "listen_addresses": HOST,
        "port": port,
        "unix_socket_directories": str(folder),
        "max_connections": 300,
        "fsync": "off",  # reads only; set-up writes need not survive a crash
        "synchronous_commit": "off",
        "log_destination": "stderr",
    }
    argv = [str(_program("postgres")), "-D", str(data)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    processes.append(_spawn_as_runner(argv, folder / "postgres.log"))
    endpoint = Endpoint(HOST, port)
    _wait_for_port(endpoint, processes[-1])
    pgbench = str(_program("pgbench"))
    _run_as_runner([pgbench, "--initialize", f"--scale={SCALE}", "--quiet", f"--host={HOST}",
                    f"--port={port}", f"--username={USER}", DATABASE])  # fmt: skip
    return endpoint


def _start_pgbouncer(
    folder: Path,
    postgres: Endpoint,
    pool_size: int,
    processes: list[subprocess.Popen[bytes]],
) -> Endpoint:
    port = _free_port()
    (folder / "userlist.txt").write_text(f'"{USER}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{DATABASE} = host={postgres.host} port={postgres.port} dbname={DATABASE}\n"
        "[pgbouncer]\n"
        f"listen_addr = {HOST}\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        # As many server connections as clients: the pool is never what limits the run.
        f"default_pool_size = {pool_size}\n"
        "max_client_conn = 1000\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n"
    )
    _give_to_runner(folder)
    pgbouncer = shutil.which("pgbouncer", path=_sbin_path())
    assert pgbouncer is not None
    argv = [pgbouncer, str(folder / "pgbouncer.ini")]
    processes.append(_spawn_as_runner(argv, folder / "pgbouncer.out"))
    endpoint = Endpoint(HOST, port)
    _wait_for_port(endpoint, processes[-1])
    return endpoint


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT: postgres's fast shutdown, pgbouncer's safe one; SIGKILL if that takes too long."""
    if process.poll() is not None:
        return
    process.send_signal(2)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- running as a non-root user ------------------------------------------------------------


def _runner() -> str | None:
    """The user the servers run as: ``postgres`` when we are root, else ourselves (None)."""
    return "postgres" if os.geteuid() == 0 else None


def _give_to_runner(folder: Path) -> None:
    user = _runner()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run_as_runner(argv: list[str]) -> None:
    done = subprocess.run(argv, user=_runner(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _spawn_as_runner(argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("wb") as log:
        return subprocess.Popen(
            argv, user=_runner(), stdout=log, stderr=subprocess.STDOUT, cwd=log_file.parent
        )


def _wait_for_port(endpoint: Endpoint, process: subprocess.Popen[bytes]) -> None:
    name = Path(str(process.args[0])).name  # type: ignore[index]
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited ({process.returncode}) before listening")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((endpoint.host, endpoint.port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on {endpoint} in {START_TIMEOUT_S} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --- where Debian puts the programs ---------------------------------------------------------


def _postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, postgres and pgbench."""
    found = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        if all((folder / name).exists() for name in ("initdb", "postgres", "pgbench")):
            version = folder.parent.name
            found.append((int(version) if version.isdigit() else 0, folder))
    return max(found)[1] if found else None


def _program(name: str) -> Path:
    folder = _postgres_bin_dir()
    assert folder is not None, "bench/setup.sh installs PostgreSQL"
    return folder / name


def _sbin_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
