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
    # Not RDS Proxy's: client-leg protocol compression (CLIENT_COMPRESS), both directions, the
    # bytes on the wire (compressed headers included) and the packet stream they carry.
    "ClientBytesCompressed",
    "ClientBytesUncompressed",
    # Not RDS Proxy's: hostile or broken clients (proxy/client_errors.py, proxy/admission.py).
    "ClientErrors",
    "ClientErrorsNotLogged",
    "ClientLoginTimeouts",
    "ClientLoginsEvicted",
    # Not RDS Proxy's: unanswered commands sent again after their backend died (transaction
    # mode, retries_on_backend_loss).
    "CommandsResentAfterBackendLoss",
)


# Counted per tenant as well: events of logged-in tenants only, so that a client spraying
# unknown user names cannot grow the label set.
TENANT_COUNTER_NAMES = (
    "ClientConnectionsSetupSucceeded",
    "DatabaseConnectionRequests",
    "DatabaseConnectionsBorrowTimeouts",
    "CommandsResentAfterBackendLoss",
)


class Metrics:
    """Counters of one proxy process (also per tenant for TENANT_COUNTER_NAMES), and the
    running sum of borrow latencies."""

    def __init__(self) -> None:
        self._counters: Counter[str] = Counter({name: 0 for name in COUNTER_NAMES})
        self._tenant_counters: Counter[tuple[str, str]] = Counter()
        # Sessions pinned to their backend in transaction mode, per (tenant, reason).
        self.pins: Counter[tuple[str, str]] = Counter()
        self.borrow_latency_us_sum = 0.0
        self.borrow_latency_count = 0

    def count(self, name: str, amount: int = 1, *, tenant: str | None = None) -> None:
        if name not in COUNTER_NAMES:
            raise KeyError(f"undeclared metric {name!r}")
        self._counters[name] += amount
        if tenant is not None and name in TENANT_COUNTER_NAMES:
            self._tenant_counters[(name, tenant)] += amount

    def count_pin(self, tenant: str, reason: str) -> None:
        """A session pinned to its backend (transaction mode), for one reason."""
        self.pins[(tenant, reason)] += 1

    def tenant_snapshot(self, name: str) -> dict[str, int]:
        """Per tenant, one of TENANT_COUNTER_NAMES."""
        return {
            tenant: n for (counted, tenant), n in self._tenant_counters.items() if counted == name
        }

    def observe_borrow_latency_us(self, latency_us: float) -> None:
        """DatabaseConnectionsBorrowLatency: from asking the pool to holding a backend."""
        self.borrow_latency_us_sum += latency_us
        self.borrow_latency_count += 1

    def snapshot(self) -> dict[str, int]:
        return dict(self._counters)
