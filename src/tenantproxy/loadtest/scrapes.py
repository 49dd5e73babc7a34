"""The sampler's math, pure: what one scrape holds, and the rows two consecutive scrapes make.

Counters become rates from the difference between two scrapes (a counter that went back, after a
restart, counts from zero); the access API's latency list becomes percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tenantproxy.loadtest.samples import (
    PROXY_INSTANCE,
    SOURCE_DATABASE,
    SOURCE_PROXY,
    SOURCE_STAGE,
    Sample,
)

# MariaDB 10.6+ has no Innodb_rows_read; Rows_read (every engine; the tenants' tables are InnoDB)
# stands in for it there.
STATUS_VARIABLES = (
    "Threads_connected",
    "Connections",
    "Queries",
    "Innodb_rows_read",
    "Rows_read",
    "Aborted_connects",
)
_RATES = {
    "Connections": "connections_per_s",
    "Queries": "queries_per_s",
    "Innodb_rows_read": "innodb_rows_read_per_s",
    "Aborted_connects": "aborted_connects_per_s",
}
CLIENT_CONNECTIONS = "tenantproxy_client_connections"
DATABASE_CONNECTIONS = "tenantproxy_database_connections"
BORROW_LATENCY_SUM = "tenantproxy_database_connections_borrow_latency_us_sum"
BORROW_LATENCY_COUNT = "tenantproxy_database_connections_borrow_latency_us_count"


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``values`` not empty."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def per_second(previous: float, current: float, elapsed_s: float) -> float:
    """The rate of a counter; a counter that went back (a restart) counts from zero."""
    if elapsed_s <= 0:
        return 0.0
    delta = current - previous if current >= previous else current
    return delta / elapsed_s


@dataclass(frozen=True)
class StageScrape:
    """One stage's part of the access API's /metrics.json."""

    requests_total: float
    responses_total: Mapping[int, float]
    throttles_total: float
    in_flight_peak: float
    latency_ms: Sequence[float]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageScrape:
        peak = data.get("in_flight_peak_since_last_scrape", data.get("in_flight", 0))
        return cls(
            requests_total=float(data.get("requests_total", 0)),
            responses_total={int(k): float(v) for k, v in data.get("responses_total", {}).items()},
            throttles_total=float(data.get("throttles_total", 0)),
            in_flight_peak=float(peak),
            latency_ms=[float(v) for v in data.get("latency_ms", data.get("latency", []))],
        )

    def count(self, is_counted: Callable[[int], bool]) -> float:
        return sum(n for code, n in self.responses_total.items() if is_counted(code))


def stage_samples(
    time_s: float, stage: str, previous: StageScrape, current: StageScrape, elapsed_s: float
) -> list[Sample]:
    def rate(old: float, new: float) -> float:
        return per_second(old, new, elapsed_s)

    def is_failure(code: int) -> bool:
        return not 200 <= code < 300

    def is_5xx(code: int) -> bool:
        return 500 <= code < 600

    values = {
        "requests_per_s": rate(previous.requests_total, current.requests_total),
        "failures_per_s": rate(previous.count(is_failure), current.count(is_failure)),
        "http_5xx_per_s": rate(previous.count(is_5xx), current.count(is_5xx)),
        "throttles_per_s": rate(previous.throttles_total, current.throttles_total),
        "in_flight": current.in_flight_peak,
    }
    if current.latency_ms:
        for name, fraction in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99)):
            values[name] = percentile(current.latency_ms, fraction)
    return [Sample(time_s, SOURCE_STAGE, stage, k, v) for k, v in values.items()]


def database_samples(
    time_s: float,
    instance: str,
    previous: Mapping[str, float],
    current: Mapping[str, float],
    elapsed_s: float,
    cpu_percent: float | None,
) -> list[Sample]:
    values: dict[str, float] = {}
    if cpu_percent is not None:
        values["cpu_percent"] = cpu_percent
    if "Threads_connected" in current:
        values["threads_connected"] = current["Threads_connected"]
    for variable, metric in _RATES.items():
        if variable == "Innodb_rows_read" and variable not in current:
            variable = "Rows_read"
        if variable in previous and variable in current:
            values[metric] = per_second(previous[variable], current[variable], elapsed_s)
    return [Sample(time_s, SOURCE_DATABASE, instance, k, v) for k, v in values.items()]


@dataclass(frozen=True)
class ProxyScrape:
    client_connections: float
    backend_connections: float
    borrow_latency_sum_us: float
    borrow_count: float

    @classmethod
    def from_text(cls, text: str) -> ProxyScrape:
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + float(sample.value)
        return cls(
            client_connections=sums.get(CLIENT_CONNECTIONS, 0.0),
            backend_connections=sums.get(DATABASE_CONNECTIONS, 0.0),
            # As a summary's _sum/_count, or as two counters (whose samples end in _total).
            borrow_latency_sum_us=sums.get(
                BORROW_LATENCY_SUM, sums.get(f"{BORROW_LATENCY_SUM}_total", 0.0)
            ),
            borrow_count=sums.get(
                BORROW_LATENCY_COUNT, sums.get(f"{BORROW_LATENCY_COUNT}_total", 0.0)
            ),
        )


def proxy_samples(time_s: float, previous: ProxyScrape, current: ProxyScrape) -> list[Sample]:
    values = {
        "client_connections": current.client_connections,
        "backend_connections": current.backend_connections,
    }
    borrows = current.borrow_count - previous.borrow_count
    if borrows > 0:
        spent = current.borrow_latency_sum_us - previous.borrow_latency_sum_us
        values["borrow_latency_us"] = spent / borrows
    return [Sample(time_s, SOURCE_PROXY, PROXY_INSTANCE, k, v) for k, v in values.items()]
