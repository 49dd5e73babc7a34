"""Transaction multiplexing (issue 9), measured: many long-lived clients on few database
connections, side by side with direct connections and session pooling, in one run.

Three parts, each on a plain (no TLS) stack of its own kind, 4 tenants, 2 replicas, password
logins; every proxy is a ``tenantproxy proxy run`` the benchmark starts with an explicit
``pool_mode`` and ``workers = 1`` on the stack's servers (the stack's own proxy is not started):

a) many clients: ``--clients`` (2,000) long-lived connections, spread over client processes
   (bench/mux_clients.py, ``--per-process`` each) and the tenants, all logged in first, then each
   thinking ``--a-think-s`` (5-15 s) before every point select, for ``--a-seconds`` (60), through
   the read-only endpoint of a transaction-mode proxy, on replicas with ``max_connections`` =
   ``--a-max-connections`` (100). The servers are sampled throughout (tenants' rows of
   PROCESSLIST, Threads_connected). Then the same clients straight to one replica, for
   ``--a-direct-seconds``: how many are refused with ERROR 1040. "q/s ÷ offered" divides the
   rate reached by clients ÷ mean think: below 1, latency (or a saturated proxy) slowed them.
b) idle + busy: ``--idle`` (100,1000) connections that stay logged in and run a point select
   every ``--idle-think-s`` (10 s, ±50 %; 0: never), and 32 busy sysbench threads running point
   selects for ``--seconds``: direct (both replicas, round robin) vs proxy session mode vs proxy
   transaction mode. A fresh proxy per measurement, so that neither its memory nor its pools
   carry over. Replicas' max_connections is sized so that every mode can hold every client.
c) point selects, ``--c-connections`` (32) sysbench threads, no idle clients: proxy session mode
   vs transaction mode (and direct), ``--c-rounds`` rounds, q/s and CPU µs per query.

Rounds interleave the modes, order reversed every other round; rows are medians over rounds and
ratios are paired per round (bench/README.md). JSON goes to bench/results/multiplex-<time>.json.

    .venv/bin/python bench/multiplex.py [--parts a,b,c] [--clients 2000] [--a-seconds 60]
        [--idle 100,1000] [--rounds 3] [--seconds 4] [--c-rounds 5] [--c-seconds 4]
    .venv/bin/python bench/multiplex.py --parts b --idle 100,1000,5000 --rounds 3 --seconds 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from bench_stack import BenchStack, Endpoint, ProxyHandle, proxy_process, running_stack
from mux_load import ClientFleet, FleetResult, ServerSampler, pins_total
from mux_summary import print_idle_busy, print_many_clients, print_point_select
from process_cpu import cpu_by_name
from sysbench_run import Login, SysbenchResult, run_sysbench

RESULTS_DIR = Path(__file__).with_name("results")
TENANTS = 4
ROWS = 1000
WARM_UP_S = 1.0
SAMPLE_S = 0.25  # how often the servers' connections are counted
TOO_MANY_CONNECTIONS = "1040"

console = Console() if sys.stdout.isatty() else Console(width=200)


@dataclass(frozen=True)
class Mode:
    name: str
    pool_mode: str | None  # None: straight to the replicas


DIRECT = Mode("direct", None)
SESSION = Mode("proxy session", "session")
TRANSACTION = Mode("proxy txn", "transaction")
IDLE_BUSY_MODES = (DIRECT, SESSION, TRANSACTION)


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` brings stacks down
    report: dict[str, Any] = {
        "benchmark": "multiplex",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": psutil.cpu_count(),
            "python": platform.python_version(),
            "load_average": list(psutil.getloadavg()),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("json_dir", "parts")},
    }
    report["settings"]["parts"] = sorted(args.parts)
    with tempfile.TemporaryDirectory(prefix="tp-mux-") as root:
        if "a" in args.parts:
            report["many_clients"] = many_clients_part(Path(root) / "a", args)
            print_many_clients(console, report["many_clients"])
        if "b" in args.parts or "c" in args.parts:
            with bench_stack(Path(root) / "bc", idle_busy_max_connections(args)) as stack:
                if "b" in args.parts:
                    report["idle_busy"] = idle_busy_part(stack, args)
                    print_idle_busy(console, report["idle_busy"])
                if "c" in args.parts:
                    report["point_select"] = point_select_part(stack, args)
                    print_point_select(console, report["point_select"])
    report["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    json_dir = Path(args.json_dir)
    json_dir.mkdir(parents=True, exist_ok=True)
    path = json_dir / f"multiplex-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"JSON: {path}")


def bench_stack(state_dir: Path, max_connections: int) -> Any:
    console.print(f"starting a stack (replicas' max_connections {max_connections}) in {state_dir}")
    settings = ("replicas=2", "start_proxy=false", f"mariadb_max_connections={max_connections}")
    return running_stack(
        state_dir, is_tls_required=False, rows=ROWS, iam_auth="disabled", extra_settings=settings
    )


def idle_busy_max_connections(args: argparse.Namespace) -> int:
    """Room on ONE replica for every client of part b (a session-mode proxy need not balance
    them evenly) within the proxy's 90 % share, and for the stack's own connections."""
    clients = max(args.idle, default=0) + max(args.busy, args.c_connections)
    return int(clients / 0.9 * 1.1) + 100


def tenant_logins(stack: BenchStack) -> list[tuple[str, str, str]]:
    return [stack.tenant_login(tenant) for tenant in range(TENANTS)]


def server_pids(stack: BenchStack) -> dict[str, int]:
    return {f"mariadbd {name}": pid for name, pid in stack.mariadbd_pids.items()}


def server_max_connections(stack: BenchStack, instance: str) -> int:
    connection = stack.admin_connection(instance)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@max_connections")
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def backend_cap(stack: BenchStack, max_connections: int) -> int:
    """What a proxy may open per target: max_connections_percent of the server's cap."""
    config = tomllib.loads(Path(stack.outputs["ProxyConfig"]).read_text())
    return max_connections * int(config["max_connections_percent"]) // 100


@contextmanager
def reaching(
    stack: BenchStack, mode: Mode, name: str
) -> Iterator[tuple[list[Endpoint], ProxyHandle | None]]:
    """Where a mode's clients connect: both replicas (direct), or a proxy started for it."""
    if mode.pool_mode is None:
        yield list(stack.replicas.values()), None
        return
    # One worker process, whatever the proxy's default: a worker's RSS is what is measured per
    # idle client, and the rows compare with those measured before workers existed.
    overrides = {"pool_mode": mode.pool_mode, "workers": 1}
    with proxy_process(stack, name, overrides) as proxy:
        yield [proxy.read_only], proxy


# --- part a: many long-lived clients --------------------------------------------------------


def many_clients_part(state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    with bench_stack(state_dir, args.a_max_connections) as stack:
        first_name = next(iter(stack.replicas))
        max_connections = server_max_connections(stack, first_name)
        logins = tenant_logins(stack)
        runs = []
        for round_index in range(args.a_rounds):
            # One after the other, so that the direct run finds no proxy's pooled backends.
            for mode, seconds in ((TRANSACTION, args.a_seconds), (DIRECT, args.a_direct_seconds)):
                console.print(
                    f"  a r{round_index} {mode.name}: {args.clients} clients, {seconds:g} s"
                )
                with reaching(stack, mode, f"proxy-a-{round_index}") as (endpoints, proxy):
                    # Direct: all to one replica, as an application would without a proxy.
                    run = clients_run(stack, endpoints[:1], logins, seconds, args, proxy)
                runs.append({"mode": mode.name, "round": round_index, **run})
        return {
            "replica_max_connections": max_connections,
            "backend_cap": backend_cap(stack, max_connections),
            "direct_target": first_name,
            "think_s": args.a_think_s,
            "runs": runs,
        }


def clients_run(
    stack: BenchStack,
    endpoints: list[Endpoint],
    logins: Sequence[tuple[str, str, str]],
    seconds: float,
    args: argparse.Namespace,
    proxy: ProxyHandle | None,
) -> dict[str, Any]:
    pids = server_pids(stack) | ({"proxy": proxy.pid} if proxy else {})
    fleet = ClientFleet(
        endpoints, logins, args.clients, args.a_think_s, per_process=args.per_process, id_max=ROWS
    )
    with ServerSampler(stack, list(stack.replicas), SAMPLE_S) as sampler, fleet:
        fleet.wait_ready()
        pids |= {f"client {i}": pid for i, pid in enumerate(fleet.pids)}
        before = cpu_by_name(pids)
        fleet.go()
        time.sleep(seconds)
        result = fleet.stop()
        after = cpu_by_name(pids)
    us = cpu_us_per_query(before, after, result.queries)
    return {
        **result.as_json(),
        "refused_1040": result.login_errors.get(TOO_MANY_CONNECTIONS, 0),
        "backends": sampler.summary(),
        "proxy_us_per_query": us.get("proxy"),
        "servers_us_per_query": sum(v for k, v in us.items() if k.startswith("mariadbd ")),
        "clients_us_per_query": sum(v for k, v in us.items() if k.startswith("client ")),
    }


def cpu_us_per_query(
    before: dict[str, float], after: dict[str, float], queries: int
) -> dict[str, float]:
    per_query = 1e6 / queries if queries else float("nan")
    return {name: (after[name] - before[name]) * per_query for name in before}


# --- parts b and c: idle + busy, and point selects -------------------------------------------


def idle_busy_part(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    think = (args.idle_think_s * 0.5, args.idle_think_s * 1.5) if args.idle_think_s else None
    runs = []
    for idle in args.idle:
        for round_index in range(args.rounds):
            order = IDLE_BUSY_MODES if round_index % 2 == 0 else IDLE_BUSY_MODES[::-1]
            for mode in order:
                name = f"proxy-b-{mode.pool_mode}-{idle}-{round_index}"
                with reaching(stack, mode, name) as (endpoints, proxy):
                    warm_up(stack, endpoints, args.busy)
                    run = busy_run(
                        stack, endpoints, proxy, idle, think, args.busy, args.seconds, args
                    )
                runs.append({"mode": mode.name, "round": round_index, "idle": idle, **run})
                console.print(one_line(runs[-1]))
    return {
        "replica_max_connections": server_max_connections(stack, next(iter(stack.replicas))),
        "idle_think_s": think,
        "runs": runs,
    }


def point_select_part(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with ExitStack() as cleanup:
        places = {
            mode: cleanup.enter_context(reaching(stack, mode, f"proxy-c-{mode.pool_mode}"))
            for mode in IDLE_BUSY_MODES
        }
        for endpoints, _ in places.values():
            warm_up(stack, endpoints, args.c_connections)
        for round_index in range(args.c_rounds):
            order = IDLE_BUSY_MODES if round_index % 2 == 0 else IDLE_BUSY_MODES[::-1]
            for mode in order:
                endpoints, proxy = places[mode]
                run = busy_run(
                    stack, endpoints, proxy, 0, None, args.c_connections, args.c_seconds, args
                )
                runs.append({"mode": mode.name, "round": round_index, "idle": 0, **run})
                console.print(one_line(runs[-1]))
    return {"connections": args.c_connections, "runs": runs}


def warm_up(stack: BenchStack, endpoints: list[Endpoint], threads: int) -> None:
    """Unmeasured: opens a proxy's backends for the busy tenant, warms the servers' caches."""
    run_sysbench(
        endpoints, Login(*stack.tenant_login()), threads=threads, seconds=WARM_UP_S,
        is_tls=False, workdir=sysbench_dir(stack), id_max=ROWS,
    )  # fmt: skip


def sysbench_dir(stack: BenchStack) -> Path:
    folder = stack.state_dir / "sysbench"
    folder.mkdir(exist_ok=True)
    return folder


def busy_run(
    stack: BenchStack,
    endpoints: list[Endpoint],
    proxy: ProxyHandle | None,
    idle: int,
    think: tuple[float, float] | None,
    threads: int,
    seconds: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``idle`` clients logged in, then ``threads`` sysbench threads for ``seconds``; the CPU,
    the servers' connections and the proxy's pins over the busy window."""
    pids = server_pids(stack) | ({"proxy": proxy.pid} if proxy else {})
    rss_before, pins_before = proxy_rss(proxy), proxy_pins(proxy)
    fleet = ClientFleet(
        endpoints, tenant_logins(stack), idle, think, per_process=args.per_process, id_max=ROWS
    )
    with ServerSampler(stack, list(stack.replicas), SAMPLE_S * 2) as sampler, fleet:
        idle_result = fleet.wait_ready()
        rss_after = proxy_rss(proxy)
        before, started = cpu_by_name(pids), time.monotonic()
        fleet.go()
        busy = run_sysbench(
            endpoints, Login(*stack.tenant_login()), threads=threads, seconds=seconds,
            is_tls=False, workdir=sysbench_dir(stack), id_max=ROWS,
        )  # fmt: skip
        idle_result = fleet.stop()
        after, ended = cpu_by_name(pids), time.monotonic()
    return busy_record(
        busy, idle_result, cpu_us_per_query(before, after, busy.queries + idle_result.queries),
        sampler.summary(started, ended),
        rss_kib_per_idle=(rss_after - rss_before) / 1024 / idle if proxy and idle else None,
        pins=_difference(proxy_pins(proxy), pins_before) if proxy else None,
    )  # fmt: skip


def proxy_rss(proxy: ProxyHandle | None) -> int:
    return int(psutil.Process(proxy.pid).memory_info().rss) if proxy else 0


def proxy_pins(proxy: ProxyHandle | None) -> float | None:
    return pins_total(proxy.metrics) if proxy and proxy.metrics else None


def _difference(after: float | None, before: float | None) -> float | None:
    return after - before if after is not None and before is not None else None


def busy_record(
    busy: SysbenchResult,
    idle: FleetResult,
    us: dict[str, float],
    backends: dict[str, Any],
    *,
    rss_kib_per_idle: float | None,
    pins: float | None,
) -> dict[str, Any]:
    servers_us = sum(v for k, v in us.items() if k.startswith("mariadbd "))
    client_us = busy.client_cpu_s * 1e6 / busy.queries if busy.queries else None
    return {
        "returncode": busy.returncode,
        "queries_per_s": busy.queries_per_s,
        "p50_ms": busy.p50_ms,
        "p95_ms": busy.p95_ms,
        "p99_ms": busy.p99_ms,
        "errors": busy.errors + busy.reconnects + idle.errors,
        "db_connections": sum(b["peak"] or 0 for b in backends.values()),
        "proxy_us_per_query": us.get("proxy"),
        "servers_us_per_query": servers_us,
        "client_us_per_query": client_us,
        "sum_us_per_query": servers_us + (us.get("proxy") or 0) + (client_us or 0),
        "proxy_rss_kib_per_idle": rss_kib_per_idle,
        "pins": pins,
        "idle_queries": idle.queries,
        "backends": backends,
        "busy": asdict(busy),
        "idle_clients": idle.as_json(),
    }


def one_line(run: dict[str, Any]) -> str:
    trouble = f"  [red]errors={run['errors']} rc={run['returncode']}[/]" if run["errors"] else ""
    return (
        f"  idle={run['idle']:<5} r{run['round']} {run['mode']:13} {run['queries_per_s']:8.0f} q/s"
        f"  p99 {run['p99_ms'] or 0:.3f} ms  db connections {run['db_connections']}{trouble}"
    )


def parse_args() -> argparse.Namespace:
    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--parts", default="a,b,c", help="which parts to run, comma-separated (a,b,c)")
    add("--clients", type=int, default=2000, help="a: long-lived clients (2000)")
    add("--per-process", type=int, default=500, help="client connections per process (500)")
    add("--a-seconds", type=float, default=60.0, help="a: seconds through the proxy (60)")
    add("--a-direct-seconds", type=float, default=10.0, help="a: seconds straight to a replica")
    add("--a-max-connections", type=int, default=100, help="a: the replicas' max_connections")
    add("--a-rounds", type=int, default=1, help="a: rounds (1)")
    add(
        "--a-think-s",
        type=lambda text: tuple(float(part) for part in text.split(",")),
        # ~200 q/s from 2,000 clients: within what one proxy process turns around here when the
        # machine's other jobs leave it ~0.3 of a core; 1,3 and 0.2,1 saturate it (README).
        default=(5.0, 15.0),
        help="a: each client's pause before each query, uniform in LOW,HIGH seconds (5,15)",
    )
    add("--idle", type=numbers, default=[100, 1000], help="b: idle client counts (100,1000)")
    add("--idle-think-s", type=float, default=10.0, help="b: an idle client's mean think (10)")
    add("--busy", type=int, default=32, help="b: busy sysbench threads (32)")
    add("--rounds", type=int, default=3, help="b: interleaved rounds (3)")
    add("--seconds", type=float, default=4.0, help="b: seconds per busy run (4)")
    add("--c-connections", type=int, default=32, help="c: sysbench threads (32)")
    add("--c-rounds", type=int, default=5, help="c: interleaved rounds (5)")
    add("--c-seconds", type=float, default=4.0, help="c: seconds per run (4)")
    add("--json-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    return args


if __name__ == "__main__":
    main()
