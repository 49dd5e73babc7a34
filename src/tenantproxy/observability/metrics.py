"""The proxy's counters, named as RDS Proxy's CloudWatch metrics (REFERENCE.md).

Declared once here. Counting is a dictionary increment; gauges (connections now open) are read
from the proxy's own state when scraped, see proxy/exported_metrics.py.
"""

from __future__ import annotations

from collections import Counter

COUNTER_NAMES = (
    "ClientConnectionsReceived",
    "ClientConnectionsSetupSucceeded",
    "ClientConnectionsSetupFailedAuth",
    "ClientConnectionsClosed",
    "ClientConnectionsNoTLS",
    "ClientConnectionsTLS",
    "DatabaseConnectionRequests",
    "DatabaseConnectionsBorrowTimeouts",
)


class Metrics:
    """Counters of one proxy process, and the running sum of borrow latencies."""

    def __init__(self) -> None:
        self._counters: Counter[str] = Counter({name: 0 for name in COUNTER_NAMES})
        self.borrow_latency_us_sum = 0.0
        self.borrow_latency_count = 0

    def count(self, name: str, amount: int = 1) -> None:
        if name not in COUNTER_NAMES:
            raise KeyError(f"undeclared metric {name!r}")
        self._counters[name] += amount

    def observe_borrow_latency_us(self, latency_us: float) -> None:
        """DatabaseConnectionsBorrowLatency: from asking the pool to holding a backend."""
        self.borrow_latency_us_sum += latency_us
        self.borrow_latency_count += 1

    def snapshot(self) -> dict[str, int]:
        return dict(self._counters)
