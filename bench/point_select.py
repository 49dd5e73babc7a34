"""Point selects by primary key: straight to MariaDB, through the proxy, side by side, with
PgBouncer in front of PostgreSQL on the same machine as a reference.

For each variant (tls: the client speaks TLS to the server it reaches, as the stack requires by
default; plain: no TLS anywhere) this starts its own stack with ONE replica, so that every MariaDB
mode reaches the same mariadbd the same way, then for each client connection count runs:

- direct:     sysbench (bench/point_select.lua) to that replica, as the tenant's own MariaDB user;
- proxy:      the proxy's read-only endpoint (session pooling, the stack's proxy), same user;
- proxy txn:  a second proxy on the same servers with ``pool_mode = "transaction"``;
- proxy 2w:   a second proxy with ``workers = 2`` (SO_REUSEPORT processes; CPU summed over them);
- relay:      plain only, bench/bare_relay.py in front of the replica (a floor for Python proxies);
- pg direct:  plain only, ``pgbench -S`` straight to a PostgreSQL the benchmark starts;
- pgbouncer:  plain only, ``pgbench -S`` through PgBouncer (transaction pooling) to it.

Modes are interleaved, R rounds of T seconds each, order reversed every other round, after a short
unmeasured warm-up. Around each run the CPU time (user+sys) of every process the benchmark started
is read with psutil (the client's from wait4); divided by the run's queries it gives µs of CPU per
query for the client, the proxy|relay|pgbouncer, each mariadbd (or postgres), and their sum.
Prints one table per variant, then paired ratios (proxy txn ÷ proxy, proxy ÷ relay,
proxy ÷ pgbouncer), and writes everything to bench/results/point_select-<time>.json.

    .venv/bin/python bench/point_select.py [--rounds 3] [--seconds 3] [--connections 1,8,32]
                                           [--both | --tls | --plain] [--no-relay] [--no-pg]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from bench_stack import BenchStack, Endpoint, running_stack, second_proxy
from pg_reference import PgReference, pg_reference, run_pgbench, server_versions
from process_cpu import cpu_by_name
from results_table import COMPARISONS, compare, print_comparisons, print_table, summarize
from sysbench_run import Login, SysbenchResult, run_sysbench
from tenantproxy.config import ProxyConfig

RESULTS_DIR = Path(__file__).with_name("results")
BARE_RELAY = Path(__file__).with_name("bare_relay.py")
WARM_UP_S = 1.0
ROWS = 1000
# One replica: direct, proxy and relay all reach the same mariadbd (see bench/README.md). The
# stack's proxy is one process (bench_stack: workers = 1); "proxy 2w" is it with two workers.
STACK_SETTINGS = ("replicas=1",)
TWO_WORKERS = 2

# Wide enough for the table when the output is a file or a pipe (`make bench | tee`).
console = Console() if sys.stdout.isatty() else Console(width=200)


@dataclass(frozen=True)
class Mode:
    name: str  # direct | proxy | proxy txn | proxy 2w | relay | pg direct | pgbouncer
    client: str  # sysbench | pgbench
    endpoint: Endpoint
    middle: str | None  # the process between client and server (a key of the PIDs); None: direct
    server: str  # the server process the queries reach
    baseline: str | None  # the mode its q/s and p95 are divided by, round by round


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` brings stacks down
    variants = {"both": ["tls", "plain"], "tls": ["tls"], "plain": ["plain"]}[args.variant]
    report: dict[str, Any] = {
        "benchmark": "point_select",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": psutil.cpu_count(),
            "python": platform.python_version(),
            "load_average": list(psutil.getloadavg()),
        },
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "connections": args.connections,
            "warm_up_s": WARM_UP_S,
            "rows": ROWS,
            "stack": list(STACK_SETTINGS),
            "query": "SELECT * FROM mytable WHERE ID = ? (text protocol, uniform random ID)",
            "pg_query": "pgbench -S: SELECT abalance FROM pgbench_accounts WHERE aid = ?",
        },
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="tp-bench-") as root:
        for variant in variants:
            result = run_variant(variant, Path(root) / variant, args)
            report["variants"][variant] = result
            print_table(console, variant, result["summary"])
            print_comparisons(console, variant, result["comparisons"])
    json_dir = Path(args.json_dir)
    json_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = json_dir / f"point_select-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"JSON: {path}")


def has_pool_mode() -> bool:
    """Whether this proxy's config takes ``pool_mode`` (the transaction-mode row needs it)."""
    return "pool_mode" in ProxyConfig.model_fields


def has_workers() -> bool:
    """Whether this proxy's config takes ``workers`` (the two-worker row needs it)."""
    return "workers" in ProxyConfig.model_fields


def run_variant(variant: str, state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    is_tls = variant == "tls"
    console.print(f"[bold]{variant}[/]: starting a stack in {state_dir}")
    with ExitStack() as cleanup:
        # sysbench logs in with the tenant's password, as a direct client would.
        stack = cleanup.enter_context(
            running_stack(state_dir, is_tls_required=is_tls, rows=ROWS, iam_auth="disabled",
                          extra_settings=STACK_SETTINGS)
        )  # fmt: skip
        workdir = state_dir / "sysbench"
        stack.write_sysbench_tls_files(workdir)
        user, password, database = stack.tenant_login()
        login = Login(user, password, database)
        (replica_name, replica), *_ = stack.replicas.items()
        pids = {f"mariadbd {name}": pid for name, pid in stack.mariadbd_pids.items()}
        pids["proxy"] = stack.proxy_pid
        server = f"mariadbd {replica_name}"
        modes = [
            Mode("direct", "sysbench", replica, None, server, None),
            Mode("proxy", "sysbench", stack.proxy_reader, "proxy", server, "direct"),
        ]
        if has_pool_mode():
            overrides = {"pool_mode": "transaction"}
            endpoint, pids["proxy txn"] = cleanup.enter_context(
                second_proxy(stack, "proxy-transaction", overrides)
            )
            modes.append(Mode("proxy txn", "sysbench", endpoint, "proxy txn", server, "direct"))
        if has_workers():
            endpoint, pids["proxy 2w"] = cleanup.enter_context(
                second_proxy(stack, "proxy-two-workers", {"workers": TWO_WORKERS})
            )
            modes.append(Mode("proxy 2w", "sysbench", endpoint, "proxy 2w", server, "direct"))
        if not is_tls and not args.no_relay:
            endpoint, pids["relay"] = cleanup.enter_context(bare_relay(replica))
            modes.append(Mode("relay", "sysbench", endpoint, "relay", server, "direct"))
        pg: PgReference | None = None
        if not is_tls and not args.no_pg:
            pg = cleanup.enter_context(pg_reference(pool_size=max(args.connections)))
            pids["postgres"], pids["pgbouncer"] = pg.postmaster_pid, pg.pgbouncer_pid
            modes += [
                Mode("pg direct", "pgbench", pg.postgres, None, "postgres", None),
                Mode("pgbouncer", "pgbench", pg.pgbouncer, "pgbouncer", "postgres", "pg direct"),
            ]
        runs = run_rounds(variant, modes, login, pids, is_tls, workdir, args)
        names = [mode.name for mode in modes]
        baselines = {mode.name: mode.baseline for mode in modes if mode.baseline}
        summary = summarize(runs, names, args.connections, baselines=baselines)
        pairs = [(a, b) for a, b in COMPARISONS if a in names and b in names]
        has_trouble = any(r["errors"] or r["reconnects"] or r["returncode"] for r in runs)
        return {
            "stack": {
                "require_tls": is_tls,
                "direct_target": replica_name,
                "proxy_reads_from": sorted(stack.replicas),
                "proxy_to_backend_tls": False,
                "proxy_txn_pool_mode": "transaction" if has_pool_mode() else None,
                "proxy_2w_workers": TWO_WORKERS if has_workers() else None,
                "pids": pids,
                "pg": {**server_versions(), "pgbouncer_pool_size": max(args.connections)}
                if pg
                else None,
            },
            "summary": summary,
            "comparisons": compare(runs, pairs, args.connections),
            "runs": runs,
            "proxy_log_tail": _log_tail(stack) if has_trouble else None,
        }
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def run_rounds(
    variant: str,
    modes: list[Mode],
    login: Login,
    pids: dict[str, int],
    is_tls: bool,
    workdir: Path,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    runs = []
    for connections in args.connections:
        for mode in modes:  # unmeasured: opens the proxies' backends, warms caches
            run_client(mode, login, connections, WARM_UP_S, is_tls, workdir)
        for round_index in range(args.rounds):
            order = modes if round_index % 2 == 0 else modes[::-1]
            for mode in order:
                run = measure(mode, login, connections, args.seconds, is_tls, workdir, pids)
                run["round"] = round_index
                runs.append(run)
                console.print(_one_line(variant, run))
    return runs


def run_client(
    mode: Mode,
    login: Login,
    connections: int,
    seconds: float,
    is_tls: bool,
    workdir: Path,
) -> SysbenchResult:
    if mode.client == "pgbench":
        return run_pgbench(mode.endpoint, threads=connections, seconds=seconds, workdir=workdir)
    return run_sysbench(
        mode.endpoint, login, threads=connections, seconds=seconds, is_tls=is_tls,
        workdir=workdir, id_max=ROWS, check_tls=mode.name == "direct",
    )  # fmt: skip


def measure(
    mode: Mode,
    login: Login,
    connections: int,
    seconds: float,
    is_tls: bool,
    workdir: Path,
    pids: dict[str, int],
) -> dict[str, Any]:
    """One client run, with the CPU every process the benchmark started spent during it."""
    before = cpu_by_name(pids)
    result = run_client(mode, login, connections, seconds, is_tls, workdir)
    after = cpu_by_name(pids)
    cpu_s = {name: after[name] - before[name] for name in pids}
    per_query = 1e6 / result.queries if result.queries else float("nan")
    us = {name: seconds * per_query for name, seconds in cpu_s.items()}
    on_path = processes_on_path(mode, pids)
    idle_mariadbd = [n for n in on_path if n.startswith("mariadbd ") and n != mode.server]
    client_us = result.client_cpu_s * per_query
    return {
        "mode": mode.name,
        "client": mode.client,
        "connections": connections,
        **asdict(result),
        "cpu_s": cpu_s,
        "cpu_us_per_query": us,
        "client_us_per_query": client_us,
        "middle_us_per_query": us[mode.middle] if mode.middle else None,
        "server_us_per_query": us[mode.server],
        "writer_us_per_query": sum(us[n] for n in idle_mariadbd) if idle_mariadbd else None,
        "path_us_per_query": client_us + sum(us[name] for name in on_path),
        "others_us_per_query": sum(us[name] for name in pids if name not in on_path),
    }


def processes_on_path(mode: Mode, pids: dict[str, int]) -> list[str]:
    """The processes a mode's queries go through: its middle, its server, and for MariaDB modes
    the cluster's other mariadbd (the writer: it only idles, but it is the cluster's cost too)."""
    names = [mode.server] + ([mode.middle] if mode.middle else [])
    if mode.server.startswith("mariadbd "):
        names += [name for name in pids if name.startswith("mariadbd ") and name != mode.server]
    return names


@contextmanager
def bare_relay(target: Endpoint) -> Iterator[tuple[Endpoint, int]]:
    command = [sys.executable, str(BARE_RELAY), f"--target={target.host}:{target.port}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()  # "listening HOST:PORT"
        if not first_line.startswith("listening "):
            raise SystemExit(f"bare relay did not start: {first_line!r}")
        yield Endpoint.parse(first_line.split()[1]), process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _one_line(variant: str, run: dict[str, Any]) -> str:
    trouble = ""
    if run["errors"] or run["reconnects"] or run["returncode"]:
        trouble = f"  [red]errors={run['errors']} reconnects={run['reconnects']}"
        trouble += f" rc={run['returncode']} {' | '.join(run['fatal_lines'][:3])}[/]"
    return (
        f"  {variant:5} c={run['connections']:<3} r{run['round']} {run['mode']:9}"
        f" {run['queries_per_s']:9.0f} q/s  p50 {run['p50_ms'] or 0:.3f} ms"
        f"  p95 {run['p95_ms'] or 0:.3f} ms{trouble}"
    )


def _log_tail(stack: BenchStack, lines: int = 60) -> list[str]:
    try:
        return stack.proxy_log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per run (3)")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 8, 32],
        help="client connection counts, comma-separated (1,8,32)",
    )
    variant = parser.add_mutually_exclusive_group()
    variant.add_argument("--both", dest="variant", action="store_const", const="both")
    variant.add_argument("--tls", dest="variant", action="store_const", const="tls")
    variant.add_argument("--plain", dest="variant", action="store_const", const="plain")
    parser.set_defaults(variant="both")
    parser.add_argument("--no-relay", action="store_true", help="plain: skip the bare relay")
    parser.add_argument("--no-pg", action="store_true", help="plain: skip PostgreSQL and PgBouncer")
    parser.add_argument("--json-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    return parser.parse_args()


if __name__ == "__main__":
    main()
