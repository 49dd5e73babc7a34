"""The report's findings: each finding of the write-up beside this run's figure, and a verdict.

The write-up (1,000 users, ~120 requests/s, 30 minutes on AWS) found: the no-proxy stage ≈ 900
HTTP 500 per minute and the proxy stage none; replica CPU about 4x lower with the proxy; the
proxy's database connections flat; higher median and p90 latency and higher Lambda concurrency
without the proxy. Each row compares the direction of this run's figures with the write-up's:

- ``reproduced``: same direction (the magnitude is in the measured column);
- ``reversed``: the opposite direction;
- ``not reproducible here``: the run cannot show it (e.g. neither stage failed), with the
  measured reason: the load, the machine's CPU, who used it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tenantproxy.loadtest.report_summary import StageSummary, Summary

REPRODUCED = "reproduced"
REVERSED = "reversed"
NOT_HERE = "not reproducible here"
# Below this many 5xx per minute a stage is taken as not failing (one failure in a 3-minute run
# is 0.33/min).
FAILING_5XX_PER_MIN = 1.0
# Latency figures closer than this (relative) are taken as equal.
SAME_WITHIN = 0.05


@dataclass(frozen=True)
class Finding:
    name: str
    write_up: str
    measured: str
    verdict: str
    reason: str = ""


def findings(
    summary: Summary,
    in_flight_mean: Mapping[str, float | None] | None = None,
    step_ms: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Finding]:
    """``in_flight_mean``: per stage, the mean of the sampled invocations in flight;
    ``step_ms``: per stage, the traces' ms of each step at the median (report_traces)."""
    proxy, noproxy = summary.stages.get("proxy"), summary.stages.get("noproxy")
    if proxy is None or noproxy is None:
        return []
    context = _context(summary.run, proxy, noproxy)
    median = _latency("median latency", "median_ms", proxy, noproxy, context)
    return [
        _errors(proxy, noproxy, context),
        _replica_cpu(proxy, noproxy, context),
        _connections(proxy, noproxy, context),
        _with_step_differences(median, step_ms or {}),
        _latency("p90 latency", "p90_ms", proxy, noproxy, context),
        _concurrency(in_flight_mean or {}, context),
    ]


def _context(run: Mapping[str, Any], proxy: StageSummary, noproxy: StageSummary) -> str:
    """What the run was, in measured terms, for the reasons of "not reproducible here"."""
    parts = []
    users = (run.get("options") or {}).get("users")
    if users:
        parts.append(f"{users} users")
    rates = [s.requests_per_s for s in (proxy, noproxy) if s.requests_per_s is not None]
    if rates:
        parts.append(f"{sum(rates):.0f} requests/s")
    cpu = run.get("cpu") or {}
    if cpu.get("machine_busy_percent") is not None:
        parts.append(f"machine CPU {cpu['machine_busy_percent']:.0f} % busy")
    if cpu.get("locust_percent") is not None:
        parts.append(f"Locust {cpu['locust_percent']:.0f} % of a core")
    return ", ".join(parts)


def _errors(proxy: StageSummary, noproxy: StageSummary, context: str) -> Finding:
    p, n = proxy.http_5xx_per_minute, noproxy.http_5xx_per_minute
    name, write_up = "HTTP 5xx per minute", "no proxy ≈ 900, proxy 0"
    if p is None or n is None:
        return Finding(name, write_up, "n/a", NOT_HERE, "no 5xx samples")
    measured = f"no proxy {n:.1f}, proxy {p:.1f}"
    if n >= FAILING_5XX_PER_MIN and p < n / 10:
        return Finding(name, write_up, measured, REPRODUCED)
    if p >= FAILING_5XX_PER_MIN and p > n:
        return Finding(name, write_up, measured, REVERSED)
    return Finding(
        name, write_up, measured, NOT_HERE, f"neither stage fails at this load ({context})"
    )


def _replica_cpu(proxy: StageSummary, noproxy: StageSummary, context: str) -> Finding:
    p, n = proxy.replica_cpu_mean_percent, noproxy.replica_cpu_mean_percent
    name, write_up = "replica CPU, no proxy / proxy", "≈ 4x (lower with the proxy)"
    if p is None or n is None or p <= 0:
        return Finding(name, write_up, "n/a", NOT_HERE, "no replica CPU samples")
    measured = f"{n / p:.2f}x (mean {n:.1f} % against {p:.1f} %)"
    return _higher_without_proxy(
        name, write_up, measured, n, p, f"the replicas' CPU is even ({context})"
    )


def _connections(proxy: StageSummary, noproxy: StageSummary, context: str) -> Finding:
    """Judged on the run's second half: the proxy's pools open one connection per tenant and
    replica as tenants first call (hundreds in a short run's first minute); the write-up's
    30-minute graphs show what stays, the steady churn."""
    late = proxy.db_new_connections_per_s_late is not None
    p = proxy.db_new_connections_per_s_late if late else proxy.db_new_connections_per_s
    n = noproxy.db_new_connections_per_s_late if late else noproxy.db_new_connections_per_s
    name = "proxy's database connections flat"
    write_up = "flat with the proxy; one per request without"
    if p is None or n is None:
        return Finding(name, write_up, "n/a", NOT_HERE, "no connection samples")
    when = "in the run's second half" if late else "over the run"
    measured = f"new connections/s {when}: proxy {p:.2f}, no proxy {n:.1f}"
    whole_p, whole_n = proxy.db_new_connections_per_s, noproxy.db_new_connections_per_s
    if late and whole_p is not None and whole_n is not None:
        measured += f" (whole run: {whole_p:.2f}, {whole_n:.1f})"
    peak = proxy.db_connections_peak
    if peak is not None:
        measured += f"; proxy cluster peak {peak:.0f} connected"
    if n > 0 and p < n / 10:
        return Finding(name, write_up, measured, REPRODUCED)
    if p >= n:
        return Finding(name, write_up, measured, REVERSED)
    return Finding(
        name, write_up, measured, NOT_HERE, f"the proxy opened connections too ({context})"
    )


def _latency(
    name: str, field: str, proxy: StageSummary, noproxy: StageSummary, context: str
) -> Finding:
    p, n = getattr(proxy, field), getattr(noproxy, field)
    write_up = "higher without the proxy"
    if p is None or n is None:
        return Finding(name, write_up, "n/a", NOT_HERE, "no latency data")
    measured = f"no proxy {n:.0f} ms, proxy {p:.0f} ms"
    return _higher_without_proxy(name, write_up, measured, n, p, f"equal within 5 % ({context})")


# The steps named when the proxy stage's median is not below the no-proxy stage's.
STEPS_NAMED = 3


def _with_step_differences(finding: Finding, step_ms: Mapping[str, Mapping[str, float]]) -> Finding:
    """A median that is not lower with the proxy gets, from the traces, the steps whose ms at
    the median differ most between the stages (proxy - no proxy): where the difference is."""
    proxy, noproxy = step_ms.get("proxy"), step_ms.get("noproxy")
    if finding.verdict == REPRODUCED or not proxy or not noproxy:
        return finding
    differences = {
        step: proxy.get(step, 0.0) - noproxy.get(step, 0.0) for step in {*proxy, *noproxy}
    }
    by_size = sorted(differences.items(), key=lambda item: (-abs(item[1]), item[0]))
    largest = by_size[:STEPS_NAMED]
    named = ", ".join(f"{step} {ms:+.1f} ms" for step, ms in largest)
    traces = f"the traces, proxy - no proxy per step at the median: {named}"
    reason = f"{finding.reason}; {traces}" if finding.reason else traces
    return replace(finding, reason=reason)


def _concurrency(in_flight: Mapping[str, float | None], context: str) -> Finding:
    name, write_up = "Lambda concurrency", "higher without the proxy"
    p, n = in_flight.get("proxy"), in_flight.get("noproxy")
    if p is None or n is None:
        return Finding(name, write_up, "n/a", NOT_HERE, "no in-flight samples")
    measured = f"mean in flight: no proxy {n:.2f}, proxy {p:.2f}"
    return _higher_without_proxy(name, write_up, measured, n, p, f"equal within 5 % ({context})")


def _higher_without_proxy(
    name: str, write_up: str, measured: str, noproxy: float, proxy: float, even_reason: str
) -> Finding:
    """A finding that says the figure is higher without the proxy: its verdict by direction."""
    if noproxy > proxy * (1 + SAME_WITHIN):
        return Finding(name, write_up, measured, REPRODUCED)
    if proxy > noproxy * (1 + SAME_WITHIN):
        return Finding(name, write_up, measured, REVERSED)
    return Finding(name, write_up, measured, NOT_HERE, even_reason)


HEADER = ("finding", "write-up", "this run", "verdict")


def finding_rows(items: list[Finding]) -> list[tuple[str, str, str, str]]:
    return [
        (f.name, f.write_up, f.measured, f.verdict + (f": {f.reason}" if f.reason else ""))
        for f in items
    ]


def render_findings_markdown(items: list[Finding]) -> str:
    if not items:
        return "(no findings: the run lacks one of the stages)\n"
    lines = ["| " + " | ".join(HEADER) + " |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(row) + " |" for row in finding_rows(items)]
    return "\n".join(lines) + "\n"


def render_findings_text(items: list[Finding]) -> str:
    """The findings as a plain-text table for the terminal (the verdict with its reason last)."""
    if not items:
        return "(no findings: the run lacks one of the stages)\n"
    rows = [HEADER, *finding_rows(items)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3]])
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in [*widths, len(HEADER[3])]))
    return "\n".join(line.rstrip() for line in lines) + "\n"
