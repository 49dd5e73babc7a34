"""What the proxy exports to Prometheus: counters, and gauges read from its state at scrape."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from tenantproxy.observability.metrics import TENANT_COUNTER_NAMES
from tenantproxy.observability.prometheus import PREFIX, Family, Sample, prometheus_name

if TYPE_CHECKING:
    from tenantproxy.proxy.server import ProxyContext

# With several workers (proxy/coordination.py) a sample is the sum of the workers' values, but
# for these: each worker checks each target's health itself, so a target is healthy when every
# worker sees it so, and its changes are counted as the worker that saw most.
MERGED = {PREFIX + "target_healthy": min, PREFIX + "target_state_changes": max}


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

    def state_changes() -> Iterable[Sample]:
        for state in targets:
            name = state.target.name
            yield Sample("", state.went_unhealthy_total, {"target": name, "to": "unhealthy"})
            yield Sample("", state.went_healthy_total, {"target": name, "to": "healthy"})

    def tenant_counters() -> list[Family]:
        return [
            Family(
                "tenant_" + prometheus_name(name),
                f"RDS Proxy's {name}, per tenant (DB user)",
                "counter",
                lambda name=name: [  # type: ignore[misc]
                    Sample("", n, {"tenant": tenant})
                    for tenant, n in metrics.tenant_snapshot(name).items()
                ],
            )
            for name in TENANT_COUNTER_NAMES
        ]

    def per_tenant_backends(index: int) -> Iterable[Sample]:
        for (tenant, target), counts in context.pools.backends_per_tenant().items():
            yield Sample("", counts[index], {"tenant": tenant, "target": target})

    def multiplexed(read: str) -> list[Sample]:
        # Transaction mode only: a session-mode client holds its backend anyway.
        multiplexers = [s.multiplexer for s in list(context.sessions.values()) if s.multiplexer]
        if read == "pinned":
            return [Sample("", sum(1 for m in multiplexers if m.held and m.is_pinned))]
        return [Sample("", sum(1 for m in multiplexers if m.is_in_transaction))]

    return [
        *counters(),
        *tenant_counters(),
        Family(
            "database_connections_handed_over",
            "backends a tenant's pool took over from another's with COM_CHANGE_USER, per target",
            "counter",
            lambda: [
                Sample("", total, {"target": target})
                for target, total in context.pools.handed_over_per_target().items()
            ],
        ),
        Family(
            "tenant_client_connections",
            "ClientConnections per tenant (DB user): logged-in clients now",
            "gauge",
            lambda: [
                Sample("", n, {"tenant": tenant}) for tenant, n in context.tenant_clients.items()
            ],
        ),
        Family(
            "tenant_database_connections",
            "DatabaseConnections per tenant and target: backends open now",
            "gauge",
            lambda: per_tenant_backends(0),
        ),
        Family(
            "tenant_database_connections_currently_borrowed",
            "DatabaseConnectionsCurrentlyBorrowed per tenant and target",
            "gauge",
            lambda: per_tenant_backends(1),
        ),
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
            "1 when the router may pick the target: its last health check passed and no new "
            "backend failed to reach it since",
            "gauge",
            lambda: per_target("healthy"),
        ),
        Family(
            "target_state_changes",
            "times the target went unhealthy (a failed health check or connect) or healthy again",
            "counter",
            state_changes,
        ),
        Family(
            "session_pins",
            "clients pinned to their backend in transaction mode, per tenant and reason "
            "(docs/multiplexing.md)",
            "counter",
            lambda: [
                Sample("", n, {"tenant": tenant, "reason": reason})
                for (tenant, reason), n in sorted(metrics.pins.items())
            ],
        ),
        Family(
            "database_connections_currently_session_pinned",
            "DatabaseConnectionsCurrentlySessionPinned: backends held by a pinned client",
            "gauge",
            lambda: multiplexed("pinned"),
        ),
        Family(
            "database_connections_currently_in_transaction",
            "DatabaseConnectionsCurrentlyInTransaction: backends lent for one transaction "
            "(or statement) now",
            "gauge",
            lambda: multiplexed("in_transaction"),
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
