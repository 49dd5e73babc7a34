"""Point selects by primary key: straight to a replica, through the proxy, side by side.

For each variant (tls: the client speaks TLS to the server it reaches, as the stack requires by
default; plain: no TLS anywhere) this starts its own small stack, then for each client connection
count runs sysbench (bench/point_select.lua) against:

- direct: the proxy cluster's first replica, as the tenant's own MariaDB user;
- proxy:  the proxy's read-only endpoint, same user and password (it reads from the same replicas);
- relay:  plain only, bench/bare_relay.py in front of that replica (a floor for Python proxies).

Modes are interleaved, R rounds of T seconds each, order reversed every other round, after a short
unmeasured warm-up. Around each run the CPU time (user+sys) of the proxy or relay and of both
replicas' mariadbd is read with psutil; divided by the run's queries it gives µs of CPU per query.
Prints one table per variant and writes everything to bench/results/point_select-<time>.json.

    .venv/bin/python bench/point_select.py [--rounds 3] [--seconds 3] [--connections 1,8,32]
                                           [--both | --tls | --plain] [--no-relay]
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
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from bench_stack import BenchStack, Endpoint, running_stack
from results_table import print_table, summarize
from sysbench_run import Login, run_sysbench

RESULTS_DIR = Path(__file__).with_name("results")
BARE_RELAY = Path(__file__).with_name("bare_relay.py")
WARM_UP_S = 1.0
ROWS = 1000

# Wide enough for the table when the output is a file or a pipe (`make bench | tee`).
console = Console() if sys.stdout.isatty() else Console(width=150)


@dataclass(frozen=True)
class Mode:
    name: str  # direct | proxy | relay
    endpoint: Endpoint
    middle_pid: int | None  # the proxy's or the relay's process; None when direct


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` brings stacks down
    variants = {"both": ["tls", "plain"], "tls": ["tls"], "plain": ["plain"]}[args.variant]
    report: dict[str, Any] = {
        "benchmark": "point_select",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "connections": args.connections,
            "warm_up_s": WARM_UP_S,
            "rows": ROWS,
            "query": "SELECT * FROM mytable WHERE ID = ? (text protocol, uniform random ID)",
        },
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="tp-bench-") as root:
        for variant in variants:
            report["variants"][variant] = run_variant(variant, Path(root) / variant, args)
            print_table(console, variant, report["variants"][variant]["summary"])
    json_dir = Path(args.json_dir)
    json_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = json_dir / f"point_select-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"JSON: {path}")


def run_variant(variant: str, state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    is_tls = variant == "tls"
    console.print(f"[bold]{variant}[/]: starting a stack in {state_dir}")
    with ExitStack() as cleanup:
        # sysbench logs in with the tenant's password, as a direct client would.
        stack = cleanup.enter_context(
            running_stack(state_dir, is_tls_required=is_tls, rows=ROWS, iam_auth="disabled")
        )
        workdir = state_dir / "sysbench"
        stack.write_sysbench_tls_files(workdir)
        user, password, database = stack.tenant_login()
        login = Login(user, password, database)
        replica_name, replica = next(iter(stack.replicas.items()))
        modes = [Mode("direct", replica, None), Mode("proxy", stack.proxy_reader, stack.proxy_pid)]
        if not is_tls and not args.no_relay:
            relay_endpoint, relay_pid = cleanup.enter_context(bare_relay(replica))
            modes.append(Mode("relay", relay_endpoint, relay_pid))
        replica_pids = {name: stack.mariadbd_pid(name) for name in stack.replicas}
        runs = []
        for connections in args.connections:
            for mode in modes:  # unmeasured: opens the proxy's backends, warms caches
                run_sysbench(mode.endpoint, login, threads=connections, seconds=WARM_UP_S,
                             is_tls=is_tls, workdir=workdir, id_max=ROWS)  # fmt: skip
            for round_index in range(args.rounds):
                order = modes if round_index % 2 == 0 else modes[::-1]
                for mode in order:
                    run = measure(mode, login, connections, args.seconds, is_tls, workdir,
                                  replica_pids)  # fmt: skip
                    run["round"] = round_index
                    runs.append(run)
                    console.print(_one_line(variant, run))
        summary = summarize(runs, [mode.name for mode in modes], args.connections)
        has_trouble = any(r["errors"] or r["reconnects"] or r["returncode"] for r in runs)
        return {
            "stack": {
                "require_tls": is_tls,
                "direct_target": replica_name,
                "proxy_reads_from": sorted(stack.replicas),
                "proxy_to_backend_tls": False,
            },
            "summary": summary,
            "runs": runs,
            "proxy_log_tail": _log_tail(stack) if has_trouble else None,
        }
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def measure(
    mode: Mode,
    login: Login,
    connections: int,
    seconds: float,
    is_tls: bool,
    workdir: Path,
    replica_pids: dict[str, int],
) -> dict[str, Any]:
    """One sysbench run, with the CPU the proxy (or relay) and the replicas spent during it."""
    before_middle = _cpu_s(mode.middle_pid)
    before_replicas = sum(_cpu_s(pid) for pid in replica_pids.values())
    result = run_sysbench(
        mode.endpoint, login, threads=connections, seconds=seconds, is_tls=is_tls,
        workdir=workdir, id_max=ROWS, check_tls=mode.name == "direct",
    )  # fmt: skip
    middle_cpu_s = _cpu_s(mode.middle_pid) - before_middle
    replicas_cpu_s = sum(_cpu_s(pid) for pid in replica_pids.values()) - before_replicas
    per_query = 1e6 / result.queries if result.queries else float("nan")
    return {
        "mode": mode.name,
        "connections": connections,
        **asdict(result),
        "middle_cpu_s": middle_cpu_s if mode.middle_pid else None,
        "middle_us_per_query": middle_cpu_s * per_query if mode.middle_pid else None,
        "replicas_cpu_s": replicas_cpu_s,
        "replicas_us_per_query": replicas_cpu_s * per_query,
        "client_us_per_query": result.client_cpu_s * per_query,
    }


def _cpu_s(pid: int | None) -> float:
    """user+sys seconds of a process and its children (0 for no process)."""
    if pid is None:
        return 0.0
    process = psutil.Process(pid)
    total = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


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
        f"  {variant:5} c={run['connections']:<3} r{run['round']} {run['mode']:6}"
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
    parser.add_argument("--json-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    return parser.parse_args()


if __name__ == "__main__":
    main()
