"""The proxy's counters and gauges, named as RDS Proxy's CloudWatch metrics (REFERENCE.md).

Declared once here; the Prometheus exporter and the dashboard read ``snapshot()``.
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
    """Counters of one proxy process (no labels yet; per-tenant labels come with #P-metrics)."""

    def __init__(self) -> None:
        self._counters: Counter[str] = Counter({name: 0 for name in COUNTER_NAMES})

    def count(self, name: str, amount: int = 1) -> None:
        if name not in COUNTER_NAMES:
            raise KeyError(f"undeclared metric {name!r}")
        self._counters[name] += amount

    def snapshot(self) -> dict[str, int]:
        return dict(self._counters)
