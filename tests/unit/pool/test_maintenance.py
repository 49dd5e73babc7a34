"""Maintenance: idle timeout down to min_idle, warm-up to min_idle, and the loop."""

from __future__ import annotations

import asyncio
from typing import Any

from tenantproxy.pool import Pool, TargetBudget, run_maintenance
from tests.unit.pool.fakes import FakeClock, FakeConnector
from tests.unit.pool.helpers import assert_consistent, make_pool


async def fill_idle(pool: Pool[Any], count: int, clock: FakeClock) -> list[Any]:
    leases = [await pool.lease() for _ in range(count)]
    for lease in leases:
        await pool.give_back(lease, needs_reset=False)
        clock.advance(1)
    return leases


async def test_idle_timeout_closes_the_oldest_idle_backends_down_to_min_idle() -> None:
    clock = FakeClock()
    pool = make_pool(clock=clock, max_size=5, min_idle=1, idle_timeout_s=300)
    leases = await fill_idle(pool, 4, clock)
    clock.advance(300)
    await pool.maintain()
    assert [lease.connection.is_closed for lease in leases] == [True, True, True, False]
    assert pool.stats().idle == 1
    assert pool.budget.in_use == 1
    assert_consistent(pool)


async def test_idle_timeout_spares_backends_used_recently() -> None:
    clock = FakeClock()
    pool = make_pool(clock=clock, max_size=5, idle_timeout_s=300)
    leases = await fill_idle(pool, 3, clock)
    clock.advance(298)  # the first went idle 301 s ago, the last 299 s ago
    await pool.maintain()
    assert [lease.connection.is_closed for lease in leases] == [True, True, False]


async def test_maintain_closes_idle_backends_that_broke() -> None:
    clock = FakeClock()
    pool = make_pool(clock=clock)
    leases = await fill_idle(pool, 2, clock)
    leases[0].connection.is_broken = True
    await pool.maintain()
    assert leases[0].connection.is_closed
    assert pool.stats().idle == 1


async def test_min_idle_warm_up_opens_backends_ahead_of_demand() -> None:
    connector = FakeConnector()
    pool = make_pool(connector, max_size=5, min_idle=3)
    await pool.maintain()
    assert pool.stats().idle == 3
    assert len(connector.opened) == 3
    await pool.maintain()
    assert len(connector.opened) == 3  # already warm
    assert_consistent(pool)


async def test_min_idle_warm_up_stays_within_the_budget() -> None:
    budget = TargetBudget("t1", 2)
    pool = make_pool(budget=budget, max_size=5, min_idle=3)
    await pool.maintain()
    assert (pool.stats().idle, budget.in_use) == (2, 2)


async def test_warm_up_connect_failures_are_counted_and_free_their_slots() -> None:
    connector = FakeConnector(connect_failures_to_come=2)
    pool = make_pool(connector, max_size=5, min_idle=3)
    await pool.maintain()
    stats = pool.stats()
    assert (stats.idle, stats.connect_failures_total, pool.budget.in_use) == (1, 2, 1)


async def test_run_maintenance_maintains_every_pool_until_stopped() -> None:
    stop = asyncio.Event()
    pools = [make_pool(min_idle=1, name=f"t1/user{i}") for i in range(2)]
    passes = 0

    def listed() -> list[Pool[Any]]:
        nonlocal passes
        passes += 1
        if passes == 2:
            stop.set()
        return pools

    await run_maintenance(listed, interval_s=0, stop=stop)
    assert passes == 2
    assert [p.stats().idle for p in pools] == [1, 1]


async def test_run_maintenance_survives_a_failing_pool() -> None:
    stop = asyncio.Event()
    good = make_pool(min_idle=1, name="good")

    class Exploding:
        name = "bad"
        is_closed = False

        async def maintain(self) -> None:
            raise RuntimeError("boom")

    passes = 0

    def listed() -> list[Any]:
        nonlocal passes
        passes += 1
        if passes == 2:
            stop.set()
        return [Exploding(), good]

    await run_maintenance(listed, interval_s=0, stop=stop)
    assert good.stats().idle == 1


async def test_warm_up_waits_while_the_owner_knows_the_target_to_be_down() -> None:
    connector = FakeConnector()
    is_target_up = False
    pool = make_pool(connector, max_size=5, min_idle=2, may_warm_up=lambda: is_target_up)
    await pool.maintain()
    assert (len(connector.opened), pool.stats().connect_failures_total) == (0, 0)
    is_target_up = True
    await pool.maintain()
    assert pool.stats().idle == 2
