"""The findings' verdicts, from synthetic summaries: each direction, and the measured reason."""

from __future__ import annotations

from dataclasses import replace

from tenantproxy.loadtest.findings import NOT_HERE, REPRODUCED, REVERSED, findings
from tenantproxy.loadtest.report_summary import StageSummary, Summary

QUIET = StageSummary(
    requests_per_s=20.0,
    requests=3600,
    failures=0,
    failure_ratio=0.0,
    http_5xx_per_minute=0.0,
    median_ms=40.0,
    p90_ms=80.0,
    average_ms=50.0,
    replica_cpu_peak_percent=30.0,
    replica_cpu_mean_percent=20.0,
    db_connections_peak=10.0,
    db_new_connections_per_s=0.1,
)
RUN = {"options": {"users": 400}, "cpu": {"machine_busy_percent": 97.0, "locust_percent": 41.0}}


def verdicts(proxy: StageSummary, noproxy: StageSummary) -> dict[str, tuple[str, str]]:
    summary = Summary({"proxy": proxy, "noproxy": noproxy}, RUN)
    return {f.name: (f.verdict, f.reason) for f in findings(summary, {"proxy": 1, "noproxy": 3})}


def test_no_errors_on_either_side_is_not_reproducible_with_the_load_and_cpu_as_reason() -> None:
    found = verdicts(QUIET, replace(QUIET, db_new_connections_per_s=20.0))
    verdict, reason = found["HTTP 5xx per minute"]
    assert verdict == NOT_HERE
    assert reason == (
        "neither stage fails at this load (400 users, 40 requests/s, machine CPU 97 % busy, "
        "Locust 41 % of a core)"
    )
    assert found["proxy's database connections flat"][0] == REPRODUCED
    assert found["Lambda concurrency"][0] == REPRODUCED


def test_a_slower_proxy_stage_reverses_the_latency_findings() -> None:
    found = verdicts(replace(QUIET, median_ms=90.0, p90_ms=200.0), QUIET)
    assert found["median latency"][0] == REVERSED
    assert found["p90 latency"][0] == REVERSED


def test_errors_only_without_the_proxy_reproduce_the_5xx_finding() -> None:
    found = verdicts(QUIET, replace(QUIET, http_5xx_per_minute=300.0))
    assert found["HTTP 5xx per minute"][0] == REPRODUCED
    found = verdicts(replace(QUIET, http_5xx_per_minute=300.0), QUIET)
    assert found["HTTP 5xx per minute"][0] == REVERSED


def test_the_connections_finding_is_judged_on_the_second_half_after_the_pools_warmed() -> None:
    # Warming 200 tenants' pools: 2.6 new connections/s over the run, 1 in its second half.
    warming = replace(QUIET, db_new_connections_per_s=2.6, db_new_connections_per_s_late=1.0)
    churning = replace(QUIET, db_new_connections_per_s=22.0, db_new_connections_per_s_late=24.0)
    found = {f.name: f for f in findings(Summary({"proxy": warming, "noproxy": churning}, RUN))}
    flat = found["proxy's database connections flat"]
    assert flat.verdict == REPRODUCED
    assert flat.measured.startswith(
        "new connections/s in the run's second half: proxy 1.00, no proxy 24.0 "
        "(whole run: 2.60, 22.0)"
    )


def test_a_median_not_lower_with_the_proxy_names_the_steps_that_differ_most() -> None:
    steps = {
        "proxy": {"connect": 9.0, "TLS": 14.0, "login": 20.0, "query": 10.0, "close": 0.2},
        "noproxy": {"connect": 8.8, "TLS": 12.0, "login": 26.0, "query": 4.0, "read secret": 1.5},
    }
    summary = Summary({"proxy": replace(QUIET, median_ms=90.0), "noproxy": QUIET}, RUN)
    median = next(f for f in findings(summary, None, steps) if f.name == "median latency")
    assert median.verdict == REVERSED
    assert median.reason == (
        "the traces, proxy - no proxy per step at the median: "
        "login -6.0 ms, query +6.0 ms, TLS +2.0 ms"
    )
    faster = Summary({"proxy": replace(QUIET, median_ms=20.0), "noproxy": QUIET}, RUN)
    median = next(f for f in findings(faster, None, steps) if f.name == "median latency")
    assert (median.verdict, median.reason) == (REPRODUCED, "")
