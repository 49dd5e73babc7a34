"""The connection cap of one target, shared by all the pools on it.

Rules:
- ``in_use`` counts the target's open backends (connecting, idle, leased or closing) across pools.
- A slot taken is never dropped while someone waits: ``return_slot`` hands it to the oldest live
  budget waiter whose pool has room, else frees it.
- Newcomers never overtake waiters (``try_take`` refuses while anyone waits).
- When full, a lease may reclaim the oldest idle backend of another pool (``find_victim``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenantproxy.pool.core import PoolCore
    from tenantproxy.pool.waiting import Waiter


class TargetBudget:
    """The connection cap of one target (database server), shared by all pools on it.

    RDS Proxy's max_connections_percent of the target's max_connections.
    """

    def __init__(self, name: str, max_connections: int) -> None:
        if max_connections < 0:
            raise ValueError(f"budget {name!r}: max_connections must be >= 0")
        self.name = name
        self._max_connections = max_connections
        self._in_use = 0
        self._pools: dict[PoolCore[Any], None] = {}  # insertion-ordered set
        self._waiters: deque[Waiter] = deque()
        self._n_waiting = 0

    def __repr__(self) -> str:
        return (
            f"<TargetBudget {self.name!r} in_use={self._in_use}/{self._max_connections}"
            f" waiting={self._n_waiting}>"
        )

    @property
    def max_connections(self) -> int:
        return self._max_connections

    @max_connections.setter
    def max_connections(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"budget {self.name!r}: max_connections must be >= 0")
        self._max_connections = value
        while self._in_use < self._max_connections and self._grant_one():
            self._in_use += 1

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot of this target (not for a backend of their pool)."""
        return self._n_waiting

    # The methods below are for the pools on this target.

    def register(self, pool: PoolCore[Any]) -> None:
        self._pools[pool] = None

    def unregister(self, pool: PoolCore[Any]) -> None:
        self._pools.pop(pool, None)

    def try_take(self) -> bool:
        if self._n_waiting or self._in_use >= self._max_connections:
            return False
        self._in_use += 1
        return True

    def is_over_cap(self) -> bool:
        return self._in_use > self._max_connections

    def wait(self, waiter: Waiter) -> None:
        waiter.is_budget_waiter = True
        self._waiters.append(waiter)
        self._n_waiting += 1

    def forget(self, waiter: Waiter) -> None:
        if waiter.is_budget_waiter:
            waiter.is_budget_waiter = False
            self._n_waiting -= 1
            if not self._n_waiting:
                self._waiters.clear()  # drop the stale entries of waiters served elsewhere

    def return_slot(self) -> None:
        """A pool gives back one slot: the oldest budget waiter gets it, else it is freed."""
        if self._in_use <= self._max_connections and self._grant_one():
            return
        self._in_use -= 1

    def find_victim(self, exclude: PoolCore[Any]) -> PoolCore[Any] | None:
        """The pool, other than ``exclude``, whose oldest idle backend is the oldest of all."""
        victim: PoolCore[Any] | None = None
        oldest = float("inf")
        for pool in self._pools:
            if pool is exclude:
                continue
            since = pool.oldest_idle_since()
            if since is not None and since < oldest:
                victim, oldest = pool, since
        return victim

    def _grant_one(self) -> bool:
        """Hands one slot to the oldest live waiter whose pool can use it now."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.is_budget_waiter:
                continue  # served by its pool, or gone
            self.forget(waiter)
            if waiter.pool.take_budget_slot(waiter):
                return True
        return False
