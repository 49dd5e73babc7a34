"""Builders and invariant checks shared by the pool tests."""

from __future__ import annotations

from typing import Any

from tenantproxy.pool import Pool, TargetBudget
from tests.unit.pool.fakes import FakeClock, FakeConn, FakeConnector


def make_pool(
    connector: FakeConnector | None = None,
    *,
    budget: TargetBudget | None = None,
    max_size: int = 4,
    name: str = "t1/user1",
    clock: FakeClock | None = None,
    **options: Any,
) -> Pool[FakeConn]:
    return Pool(
        connector or FakeConnector(),
        name=name,
        budget=budget or TargetBudget("t1", 100),
        max_size=max_size,
        clock=clock or FakeClock(),
        **options,
    )


def assert_consistent(*pools: Pool[Any]) -> None:
    """No backend is in two collections, no cap is exceeded, the budget counts every backend."""
    for pool in pools:
        stats = pool.stats()
        assert stats.size == stats.idle + stats.leased + stats.connecting, stats
        assert stats.size <= stats.max_size, stats
    budgets = {id(pool.budget): pool.budget for pool in pools}
    for budget in budgets.values():
        on_budget = [p for p in pools if p.budget is budget]
        assert budget.in_use == sum(p.stats().size for p in on_budget), budget
        assert budget.in_use <= budget.max_connections, budget
