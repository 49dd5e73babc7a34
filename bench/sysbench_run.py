"""One sysbench run of bench/point_select.lua, and what its report says.

Latency percentiles come from sysbench's ``--histogram`` (logarithmic buckets about 1.8 % wide,
over every query of every thread): sysbench 1.0 computes only one percentile itself
(``--percentile``, here 95, kept as a cross-check). The load generator's own CPU time comes from
``wait4``'s resource usage of the finished sysbench process.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_stack import Endpoint

LUA_SCRIPT = Path(__file__).with_name("point_select.lua")


@dataclass(frozen=True)
class Login:
    user: str
    password: str
    database: str


@dataclass(frozen=True)
class SysbenchResult:
    returncode: int
    queries: int
    seconds: float
    queries_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    sysbench_p95_ms: float | None
    avg_ms: float | None
    errors: int
    reconnects: int
    tls_cipher: str | None  # only when asked to check; "" means no TLS
    client_cpu_s: float
    fatal_lines: list[str]
    p99_ms: float | None = None


def run_sysbench(
    endpoint: Endpoint | Sequence[Endpoint],
    login: Login,
    *,
    threads: int,
    seconds: float,
    is_tls: bool,
    workdir: Path,
    id_max: int,
    check_tls: bool = False,
) -> SysbenchResult:
    # Given several servers, sysbench spreads its connections over them, round robin.
    endpoints = [endpoint] if isinstance(endpoint, Endpoint) else list(endpoint)
    command = [
        "sysbench",
        str(LUA_SCRIPT),
        "--db-driver=mysql",
        f"--mysql-host={','.join(e.host for e in endpoints)}",
        f"--mysql-port={','.join(str(e.port) for e in endpoints)}",
        f"--mysql-user={login.user}",
        f"--mysql-password={login.password}",
        f"--mysql-db={login.database}",
        f"--mysql-ssl={'on' if is_tls else 'off'}",
        f"--threads={threads}",
        f"--time={max(1, round(seconds))}",
        "--percentile=95",
        "--histogram=on",
        f"--id-max={id_max}",
        f"--check-tls={'on' if check_tls else 'off'}",
        "run",
    ]
    text, returncode, cpu_s = run_measured(command, workdir)
    return parse_report(text, returncode, cpu_s)


def run_measured(command: list[str], workdir: Path) -> tuple[str, int, float]:
    """Runs sysbench in ``workdir``; its output, exit code, and CPU seconds (from wait4: the
    client's own cost, so that it can be told apart from the proxy's and the server's)."""
    output_path = workdir / "sysbench.out"
    with output_path.open("w") as output:
        process = subprocess.Popen(command, cwd=workdir, stdout=output, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
    return (
        output_path.read_text(),
        os.waitstatus_to_exitcode(status),
        usage.ru_utime + usage.ru_stime,
    )


def parse_report(text: str, returncode: int, client_cpu_s: float) -> SysbenchResult:
    buckets = [
        (float(value), int(count))
        for value, count in re.findall(r"^\s*([0-9.]+) \|\**\s+(\d+)\s*$", text, re.MULTILINE)
    ]
    queries, queries_per_s = _pair(r"queries:\s+(\d+)\s+\(([0-9.]+) per sec", text)
    errors, _ = _pair(r"ignored errors:\s+(\d+)\s+\(([0-9.]+)", text)
    reconnects, _ = _pair(r"reconnects:\s+(\d+)\s+\(([0-9.]+)", text)
    seconds = _number(r"total time:\s+([0-9.]+)s", text)
    cipher = re.search(r"^tls-cipher: \[(.*)\]$", text, re.MULTILINE)
    return SysbenchResult(
        returncode=returncode,
        queries=int(queries),
        seconds=seconds or 0.0,
        queries_per_s=queries_per_s,
        p50_ms=percentile(buckets, 0.50),
        p95_ms=percentile(buckets, 0.95),
        sysbench_p95_ms=_number(r"95th percentile:\s+([0-9.]+)", text),
        avg_ms=_number(r"avg:\s+([0-9.]+)", text),
        errors=int(errors),
        reconnects=int(reconnects),
        tls_cipher=cipher.group(1) if cipher else None,
        client_cpu_s=client_cpu_s,
        fatal_lines=sorted(set(re.findall(r"^FATAL: .*$", text, re.MULTILINE)))[:10],
        p99_ms=percentile(buckets, 0.99),
    )


def percentile(buckets: list[tuple[float, int]], fraction: float) -> float | None:
    """The smallest bucket value at or below which ``fraction`` of the queries fall."""
    total = sum(count for _, count in buckets)
    if total == 0:
        return None
    seen = 0
    for value, count in sorted(buckets):
        seen += count
        if seen >= fraction * total:
            return value
    return buckets[-1][0]


def _pair(pattern: str, text: str) -> tuple[float, float]:
    match = re.search(pattern, text)
    return (float(match.group(1)), float(match.group(2))) if match else (0.0, 0.0)


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None
