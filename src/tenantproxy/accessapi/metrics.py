"""Per-stage counters, the CloudWatch Lambda + API Gateway metrics of the write-up's dashboard.

Two views of the same counters. ``GET /metrics`` is Prometheus text (``prometheus_families``),
read-only, for anyone's Prometheus: per stage, requests, responses by status code, throttles,
errors, invocations in flight now, and a latency histogram. ``GET /metrics.json`` is what the
load test's sampler reads: one JSON object, a key per stage::

    {
      "proxy": {
        "requests_total": 1200,               # every request to the stage, throttled ones too
        "responses_total": {"200": 1150, "429": 0, "500": 50},   # by status code
        "in_flight": 3,                       # admitted and not yet answered, now
        "in_flight_peak_since_last_scrape": 9,  # Lambda's ConcurrentExecutions (maximum)
        "throttles_total": 0,                 # answered 429: the concurrency limit was reached
        "errors_total": 50,                   # answered 500
        "latency_ms": [12.5, 30.1, ...],      # requests finished since the previous scrape
        "latency_ms_count": 610,              # how many finished (latency_ms may be a sample)
        "window_s": 5.002                     # time since the previous scrape
      },
      "noproxy": {...}
    }

Totals only grow; a sampler polling every few seconds takes differences for rates. ``latency_ms``
holds every request that finished since the previous scrape, or a uniform sample of 10,000 of
them (reservoir sampling) when more finished; each scrape starts a new window, so one sampler
should poll. Latency covers every answered request of the stage (200, 400, 429 and 500 alike).
The Prometheus view never resets anything, so scraping it beside the sampler changes no figure.
"""

from __future__ import annotations

import bisect
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from tenantproxy.observability.prometheus import Family, Sample

STAGES = ("proxy", "noproxy")
LATENCY_SAMPLE_SIZE = 10_000
# Upper bounds of the latency histogram's buckets, in seconds: from a warm proxy login (a few ms)
# to a connect timeout (the write-up's 500s come from authentication timeouts).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StageMetrics:
    """One stage's counters; the event loop is the only writer, so no locks."""

    def __init__(self, sample_size: int = LATENCY_SAMPLE_SIZE, seed: int | None = None) -> None:
        self.requests_total = 0
        self.responses_total: Counter[int] = Counter()
        self.in_flight = 0
        self.in_flight_peak = 0
        self.throttles_total = 0
        self.errors_total = 0
        self._sample_size = sample_size
        self._latencies_ms: list[float] = []
        self._finished_in_window = 0
        self._window_started = time.monotonic()
        self._random = random.Random(seed)
        # Non-cumulative counts per bucket of LATENCY_BUCKETS_S, the last one for +Inf.
        self.latency_bucket_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_s_sum = 0.0

    def received(self) -> None:
        self.requests_total += 1

    def admitted(self) -> None:
        self.in_flight += 1
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def released(self) -> None:
        self.in_flight -= 1

    def answered(self, status: int, duration_ms: float) -> None:
        self.responses_total[status] += 1
        if status == 429:
            self.throttles_total += 1
        elif status >= 500:
            self.errors_total += 1
        self._finished_in_window += 1
        duration_s = duration_ms / 1000
        self.latency_bucket_counts[bisect.bisect_left(LATENCY_BUCKETS_S, duration_s)] += 1
        self.latency_s_sum += duration_s
        # Algorithm R: the n-th item replaces a random slot with probability size/n.
        if len(self._latencies_ms) < self._sample_size:
            self._latencies_ms.append(duration_ms)
        else:
            slot = self._random.randrange(self._finished_in_window)
            if slot < self._sample_size:
                self._latencies_ms[slot] = duration_ms

    def scrape(self) -> dict[str, Any]:
        """The counters now, and the window's latencies; starts a new window."""
        now = time.monotonic()
        snapshot = {
            "requests_total": self.requests_total,
            "responses_total": {str(code): n for code, n in sorted(self.responses_total.items())},
            "in_flight": self.in_flight,
            "in_flight_peak_since_last_scrape": self.in_flight_peak,
            "throttles_total": self.throttles_total,
            "errors_total": self.errors_total,
            "latency_ms": [round(ms, 3) for ms in self._latencies_ms],
            "latency_ms_count": self._finished_in_window,
            "window_s": round(now - self._window_started, 3),
        }
        self.in_flight_peak = self.in_flight
        self._latencies_ms = []
        self._finished_in_window = 0
        self._window_started = now
        return snapshot


class AccessApiMetrics:
    """The metrics of both stages."""

    def __init__(self) -> None:
        self.stages = {stage: StageMetrics() for stage in STAGES}

    def scrape(self) -> dict[str, Any]:
        return {stage: metrics.scrape() for stage, metrics in self.stages.items()}


def prometheus_families(metrics: AccessApiMetrics) -> list[Family]:
    """The Prometheus view: names ``tenantproxy_accessapi_*``, a ``stage`` label on each."""
    stages = metrics.stages

    def per_stage(read: str) -> list[Sample]:
        return [Sample("", getattr(m, read), {"stage": name}) for name, m in stages.items()]

    def responses() -> list[Sample]:
        return [
            Sample("", n, {"stage": name, "code": str(code)})
            for name, m in stages.items()
            for code, n in sorted(m.responses_total.items())
        ]

    def latency() -> Iterator[Sample]:
        bounds = [*(repr(b) for b in LATENCY_BUCKETS_S), "+Inf"]
        for name, m in stages.items():
            cumulative = 0
            for bound, count in zip(bounds, m.latency_bucket_counts, strict=True):
                cumulative += count
                yield Sample("bucket", cumulative, {"stage": name, "le": bound})
            yield Sample("sum", m.latency_s_sum, {"stage": name})

    def family(name: str, help_text: str, kind: str, read: str) -> Family:
        return Family(name, help_text, kind, lambda: per_stage(read))

    return [
        family(
            "accessapi_requests",
            "API Gateway Count: requests to the stage",
            "counter",
            "requests_total",
        ),
        Family("accessapi_responses", "responses by HTTP status code", "counter", responses),
        family(
            "accessapi_throttles",
            "Lambda Throttles: answered 429 (concurrency_limit)",
            "counter",
            "throttles_total",
        ),
        family("accessapi_errors", "Lambda Errors: answered 500", "counter", "errors_total"),
        family(
            "accessapi_in_flight",
            "Lambda ConcurrentExecutions: invocations admitted and not yet answered, now",
            "gauge",
            "in_flight",
        ),
        Family(
            "accessapi_request_duration_seconds",
            "API Gateway Latency: from receiving a request to its answer, every status",
            "histogram",
            latency,
        ),
    ]
