"""Which target serves a session, and which pool lends its backend.

Pools are kept per (target, db user, profile); every pool on a target shares that target's
budget, so the target never sees more than max_connections_percent of its max_connections.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass, field

from tenantproxy.pool import Pool, TargetBudget
from tenantproxy.proxy.backends import (
    BackendConnection,
    BackendProfile,
    Target,
)
from tenantproxy.proxy.connector import MysqlConnector
from tenantproxy.wire.mysql.constants import CapabilityFlags

PoolKey = tuple[str, str, BackendProfile]


@dataclass
class TargetState:
    """A target and what the proxy knows of it. Only ``health.set_target_health`` changes
    ``is_healthy`` (and the fields that go with it)."""

    target: Target
    budget: TargetBudget
    is_healthy: bool = True
    active_leases: int = 0
    server_version: str | None = None  # learned from its handshake
    server_capabilities: CapabilityFlags | None = None  # likewise
    # When is_healthy last changed (time.monotonic), and how often it did, each way.
    health_changed_at: float = 0.0
    went_unhealthy_total: int = 0
    went_healthy_total: int = 0
    # Set by the health checker: asks it to check this target now, not at the next interval.
    request_check: Callable[[], None] | None = None


@dataclass(frozen=True)
class PoolSettings:
    max_connections_percent: int
    max_idle_connections_percent: int
    borrow_timeout_s: float
    idle_timeout_s: float
    min_idle: int
    max_backends_per_tenant: int | None = None


@dataclass
class PoolRegistry:
    """Creates pools on first use and lists them for maintenance and metrics."""

    settings: PoolSettings
    connector_factory: Callable[[Target, str, BackendProfile], MysqlConnector]
    _pools: dict[PoolKey, Pool[BackendConnection]] = field(default_factory=dict)

    def pool_for(
        self, state: TargetState, db_user: str, profile: BackendProfile
    ) -> Pool[BackendConnection]:
        key = (state.target.name, db_user, profile)
        pool = self._pools.get(key)
        if pool is None or pool.is_closed:
            pool = self._new_pool(state, db_user, profile)
            self._pools[key] = pool
        return pool

    def _new_pool(
        self, state: TargetState, db_user: str, profile: BackendProfile
    ) -> Pool[BackendConnection]:
        max_size = state.budget.max_connections
        if self.settings.max_backends_per_tenant is not None:
            max_size = min(max_size, self.settings.max_backends_per_tenant)
        max_idle = math.ceil(max_size * self.settings.max_idle_connections_percent / 100)
        return Pool(
            self.connector_factory(state.target, db_user, profile),
            name=f"{state.target.name}/{db_user}",
            budget=state.budget,
            max_size=max_size,
            min_idle=self.settings.min_idle,
            max_idle=max_idle,
            idle_timeout_s=self.settings.idle_timeout_s,
            borrow_timeout_s=self.settings.borrow_timeout_s,
            may_warm_up=lambda: state.is_healthy,
        )

    def pools(self) -> Iterator[Pool[BackendConnection]]:
        return iter(list(self._pools.values()))

    def backends_per_tenant(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(db user, target) → (backends open, backends leased), summed over profiles."""
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        for (target, db_user, _), pool in list(self._pools.items()):
            stats = pool.stats()
            size, leased = totals.get((db_user, target), (0, 0))
            totals[(db_user, target)] = (size + stats.size, leased + stats.leased)
        return totals

    def handed_over_per_target(self) -> dict[str, int]:
        """Backends taken over from another pool (COM_CHANGE_USER), per target, so far."""
        totals: dict[str, int] = {}
        for (target, _, _), pool in list(self._pools.items()):
            totals[target] = totals.get(target, 0) + pool.stats().adopted_total
        return totals

    def pools_of(self, target_name: str, db_user: str) -> Iterator[Pool[BackendConnection]]:
        """A tenant's pools on a target, one per profile."""
        return (
            pool
            for (target, user, _), pool in list(self._pools.items())
            if target == target_name and user == db_user
        )

    def pools_of_target(self, target_name: str) -> Iterator[Pool[BackendConnection]]:
        return (pool for key, pool in list(self._pools.items()) if key[0] == target_name)


class Router:
    """Picks the target of an endpoint: the writer, or the least-leased healthy replica."""

    def __init__(self, targets: list[TargetState]) -> None:
        self.targets = targets
        self._writers = [t for t in targets if t.target.role == "writer"]
        self._replicas = [t for t in targets if t.target.role == "replica"]
        self._turn = itertools.count()

    def server_version(self) -> str | None:
        """The version of the first target that told it (they run the same engine)."""
        return next((t.server_version for t in self.targets if t.server_version), None)

    def shared_capabilities(self) -> CapabilityFlags:
        """The capabilities every target offered in its handshake: none while a target has not
        been heard from, since it might lack one (a mixed cluster offers the intersection)."""
        offered = [state.server_capabilities for state in self.targets]
        shared = CapabilityFlags(0)
        for index, capabilities in enumerate(offered):
            if capabilities is None:
                return CapabilityFlags(0)
            shared = capabilities if index == 0 else shared & capabilities
        return shared

    def pick(self, endpoint_role: str, avoid: Set[str] = frozenset()) -> TargetState | None:
        """None when no healthy target can serve the endpoint; targets named in ``avoid``
        (tried already for this lease) are left out."""
        # With no replica at all, reads go to the writer, as an Aurora reader endpoint does.
        is_read_only = endpoint_role == "read_only" and self._replicas
        candidates = self._replicas if is_read_only else self._writers
        healthy = [t for t in candidates if t.is_healthy and t.target.name not in avoid]
        if not healthy:
            return None
        # Least outstanding leases; ties go round-robin so that idle replicas share new sessions.
        start = next(self._turn) % len(healthy)
        rotated = healthy[start:] + healthy[:start]
        return min(rotated, key=lambda t: t.active_leases)
