"""What a token login costs the database itself: the no-proxy cluster, token (PAM) vs native.

One stack with the no-proxy cluster (`noproxy_auth = "token"`: tenants IDENTIFIED VIA pam, see
docs/configuration.md "Token login checked by MariaDB"). One event = TLS connect + log in + one
point select + close, driven by sysbench with bench/login.lua (libmariadb, a C client), straight
to the no-proxy cluster's first replica. Modes, interleaved in rounds:

- native: a user created `IDENTIFIED BY '<password>' REQUIRE SSL` with the tenant's grants;
- token:  the tenant `user1`, every connection presenting one db-auth token signed for that
          replica (the checker keeps no cache, so one token costs what distinct ones would).

Around each run: CPU time (user+sys) of the replica's mariadbd INCLUDING its reaped children
(auth_pam v2 forks the setuid auth_pam_tool per login; psutil's children_user/children_system),
of the db-login checker process, and of sysbench (wait4). "Database-side" = mariadbd + checker.
Saturation is where logins/s stops growing with connections; on 2 shared cores the client, the
server and the checker compete, so the JSON keeps every process's CPU per login.

    .venv/bin/python bench/noproxy_login.py [--rounds 3] [--seconds 3] [--connections 1,4,16]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import signal
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from bench_stack import BenchStack, Endpoint, running_stack
from login import LUA_SCRIPT, parse_login_report
from sysbench_run import run_measured
from tenantproxy.identity.access import TenantAccess
from tenantproxy.stack import mariadb
from tenantproxy.stack.outputs import read_admin_credentials

RESULTS_DIR = Path(__file__).with_name("results")
ROWS = 1000
TENANT = 1
NATIVE_USER = "bench_native"
MODES = ["native", "token"]

console = Console() if sys.stdout.isatty() else Console(width=160)


def total_cpu_s(pid: int) -> float:
    """user+sys of a process and of its children that it has waited for."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class NoProxyLoginBench:
    def __init__(self, stack: BenchStack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        stack.write_sysbench_tls_files(workdir)
        outputs = stack.outputs
        if outputs.get("NoProxyAuth") != "token":
            raise SystemExit("the stack's no-proxy cluster does not use token login")
        replica = next(i for i in outputs["NoProxyClusterInstances"] if i["role"] == "replica")
        writer = next(i for i in outputs["NoProxyClusterInstances"] if i["role"] == "writer")
        self.replica_name = replica["name"]
        self.replica = Endpoint.parse(replica["endpoint"])
        self.replica_pid = stack.mariadbd_pid(replica["name"])
        self.checker_pid = _process_pid(stack.state_dir, "dblogin")
        self.native_password = mariadb.random_password()
        self._create_native_user(Endpoint.parse(writer["endpoint"]).port)
        self.access = TenantAccess.from_outputs(outputs)

    def _create_native_user(self, writer_port: int) -> None:
        admin = read_admin_credentials(Path(self.stack.outputs["AdminCredentials"]))
        connection = mariadb.connect(writer_port, admin, Path(self.stack.outputs["CACertificate"]))
        with connection.cursor() as cursor:
            # random_password() is letters and digits: nothing to quote.
            cursor.execute(
                f"CREATE USER '{NATIVE_USER}'@'%' IDENTIFIED BY '{self.native_password}' "
                "REQUIRE SSL"
            )
            cursor.execute(f"GRANT SELECT ON user_database{TENANT}.* TO '{NATIVE_USER}'@'%'")
            cursor.execute("SELECT @@GLOBAL.gtid_binlog_pos")
            (position,) = cursor.fetchone()
        connection.close()
        replica = mariadb.connect(
            self.replica.port, admin, Path(self.stack.outputs["CACertificate"])
        )
        with replica.cursor() as cursor:
            cursor.execute("SELECT MASTER_GTID_WAIT(%s, 30)", (position,))
        replica.close()

    def sysbench(self, mode: str, *, threads: int, seconds: float = 0, events: int = 0) -> Any:
        command = [
            "sysbench",
            str(LUA_SCRIPT),
            f"--host={self.replica.host}",
            f"--port={self.replica.port}",
            f"--db=user_database{TENANT}",
            "--tls=on",
            f"--threads={threads}",
            f"--time={max(1, round(seconds)) if seconds else 0}",
            f"--events={events}",
            "--percentile=95",
            "--histogram=on",
            f"--id-max={ROWS}",
        ]
        if mode == "native":
            command += [f"--user={NATIVE_USER}", f"--password={self.native_password}"]
        else:
            user = f"user{TENANT}"
            credentials = self.access.assume(
                user, resource_id=self.stack.outputs["NoProxyResourceId"]
            )
            token = self.access.token(credentials, self.replica.host, self.replica.port, user)
            command += [f"--user={user}", "--clear-text=on", f"--password={token}"]
        return parse_login_report(*run_measured([*command, "run"], self.workdir))

    def check_both_modes(self) -> None:
        for mode in MODES:
            result = self.sysbench(mode, threads=1, events=3)
            if result.logins != 3:
                raise SystemExit(f"{mode}: logins fail: {result.first_failures}")

    def measure(self, mode: str, threads: int, seconds: float) -> dict[str, Any]:
        before_db, before_checker = total_cpu_s(self.replica_pid), total_cpu_s(self.checker_pid)
        result = self.sysbench(mode, threads=threads, seconds=seconds)
        db_s = total_cpu_s(self.replica_pid) - before_db
        checker_s = total_cpu_s(self.checker_pid) - before_checker
        per_login = 1e6 / result.logins if result.logins else math.nan
        return {
            "mode": mode,
            "connections": threads,
            "logins": result.logins,
            "failures": result.failures,
            "logins_per_s": result.logins / result.seconds if result.seconds else 0.0,
            "p50_ms": result.p50_ms,
            "p95_ms": result.p95_ms,
            "mariadbd_us_per_login": db_s * per_login,
            "checker_us_per_login": checker_s * per_login,
            "database_side_us_per_login": (db_s + checker_s) * per_login,
            "client_us_per_login": result.client_cpu_s * per_login,
            "first_failures": result.first_failures,
        }


def _process_pid(state_dir: Path, name: str) -> int:
    state = json.loads((state_dir / "state.json").read_text())
    return int(next(p["pid"] for p in state["processes"] if p["name"] == name))


KEYS = (
    "logins_per_s",
    "p50_ms",
    "mariadbd_us_per_login",
    "checker_us_per_login",
    "database_side_us_per_login",
    "client_us_per_login",
)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for connections in sorted({r["connections"] for r in runs}):
        for mode in MODES:
            mine = [r for r in runs if r["mode"] == mode and r["connections"] == connections]
            row: dict[str, Any] = {"mode": mode, "connections": connections}
            for key in KEYS:
                values = [r[key] for r in mine if r[key] is not None and not math.isnan(r[key])]
                row[key] = statistics.median(values) if values else None
            row["failures"] = sum(r["failures"] for r in mine)
            rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(
        "conn",
        "mode",
        "logins/s",
        "p50 ms",
        "mariadbd µs",
        "checker µs",
        "DB side µs",
        "client µs",
        "failures",
        title="per login, medians over rounds",
    )
    for row in rows:
        table.add_row(
            str(row["connections"]),
            row["mode"],
            *(f"{row[k]:.1f}" if row[k] is not None else "-" for k in KEYS),
            str(row["failures"]),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per run (3)")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[1, 4, 16],
        help="concurrent sysbench threads, comma-separated (1,4,16)",
    )
    parser.add_argument("--json-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report: dict[str, Any] = {
        "benchmark": "noproxy_login",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "settings": vars(args) | {"event": "TLS connect + login + point select + close"},
    }
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tp-bench-noproxy-login-") as root, ExitStack() as ex:
        state_dir = Path(root) / "stack"
        console.print(f"starting a stack in {state_dir}")
        stack = ex.enter_context(
            running_stack(
                state_dir,
                is_tls_required=True,
                rows=ROWS,
                extra_settings=["load_test=true", "noproxy_auth=token", "replicas=1"],
            )
        )
        bench = NoProxyLoginBench(stack, Path(root) / "sysbench")
        bench.check_both_modes()
        for connections in args.connections:
            for round_index in range(args.rounds):
                for mode in MODES if round_index % 2 == 0 else MODES[::-1]:
                    run = bench.measure(mode, connections, args.seconds)
                    run["round"] = round_index
                    runs.append(run)
                    console.print(
                        f"  c={connections:<3} r{round_index} {mode:6} "
                        f"{run['logins_per_s']:7.0f} logins/s  DB side "
                        f"{run['database_side_us_per_login']:.0f} µs/login"
                    )
    report["runs"] = runs
    report["summary"] = summarize(runs)
    print_table(report["summary"])
    json_dir = Path(args.json_dir)
    json_dir.mkdir(parents=True, exist_ok=True)
    path = json_dir / f"noproxy-login-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"JSON: {path}")


if __name__ == "__main__":
    main()
