"""Per-stage counters, the CloudWatch Lambda + API Gateway metrics of the write-up's dashboard.

``GET /metrics`` answers one JSON object, a key per stage::

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
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

STAGES = ("proxy", "noproxy")
LATENCY_SAMPLE_SIZE = 10_000


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
