"""What the proxy exports to Prometheus: counters, and gauges read from its state at scrape."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from tenantproxy.observability.prometheus import Family, Sample, prometheus_name

if TYPE_CHECKING:
    from tenantproxy.proxy.server import ProxyContext


def proxy_families(context: ProxyContext) -> list[Family]:
    metrics = context.metrics
    targets = context.router.targets

    def counters() -> list[Family]:
        return [
            Family(
                prometheus_name(name),
                f"RDS Proxy's {name}",
                "counter",
                lambda name=name: [Sample("", metrics.snapshot()[name])],  # type: ignore[misc]
            )
            for name in metrics.snapshot()
        ]

    def per_target(read: str) -> Iterable[Sample]:
        for state in targets:
            value = {
                "open": state.budget.in_use,
                "borrowed": state.active_leases,
                "allowed": state.budget.max_connections,
                "healthy": 1 if state.is_healthy else 0,
            }[read]
            yield Sample("", value, {"target": state.target.name})

    return [
        *counters(),
        Family(
            "client_connections",
            "ClientConnections: client connections open now",
            "gauge",
            lambda: [Sample("", len(context.sessions))],
        ),
        Family(
            "database_connections",
            "DatabaseConnections: backend connections open now, per target",
            "gauge",
            lambda: per_target("open"),
        ),
        Family(
            "database_connections_currently_borrowed",
            "DatabaseConnectionsCurrentlyBorrowed, per target",
            "gauge",
            lambda: per_target("borrowed"),
        ),
        Family(
            "max_database_connections_allowed",
            "MaxDatabaseConnectionsAllowed, per target",
            "gauge",
            lambda: per_target("allowed"),
        ),
        Family(
            "target_healthy",
            "1 when the target passed its last health check",
            "gauge",
            lambda: per_target("healthy"),
        ),
        Family(
            "database_connections_borrow_latency_us",
            "DatabaseConnectionsBorrowLatency: µs from asking for a backend to holding one",
            "summary",
            lambda: [
                Sample("count", metrics.borrow_latency_count),
                Sample("sum", metrics.borrow_latency_us_sum),
            ],
        ),
    ]
