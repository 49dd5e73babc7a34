"""The target budget: shared by every pool on a target, never exceeded, reclaims idle backends."""

from __future__ import annotations

import asyncio
import random

import pytest

from tenantproxy.errors import BorrowTimeout
from tenantproxy.pool import TargetBudget
from tests.unit.pool.fakes import FakeClock, FakeConnector, OpenCounter, settle
from tests.unit.pool.helpers import assert_consistent, make_pool


async def test_budget_shared_by_several_pools_is_never_exceeded() -> None:
    server = OpenCounter()
    budget = TargetBudget("t1", 12)
    pools = [
        make_pool(
            FakeConnector(server, yields_on_connect=True),
            budget=budget,
            max_size=10,
            name=f"t1/user{i}",
        )
        for i in range(3)
    ]
    rng = random.Random(7)

    async def client(pool_index: int) -> None:
        pool = pools[pool_index]
        lease = await pool.lease()
        await asyncio.sleep(0)
        await pool.give_back(lease, needs_reset=False)

    await asyncio.gather(*(client(rng.randrange(3)) for _ in range(300)))
    assert server.peak <= 12
    assert sum(p.stats().leased_total for p in pools) == 300
    assert budget.waiting == 0
    assert_consistent(*pools)


async def test_full_budget_reclaims_the_oldest_idle_backend_of_another_pool() -> None:
    clock = FakeClock()
    budget = TargetBudget("t1", 2)
    owner_connector = FakeConnector()
    owner = make_pool(owner_connector, budget=budget, clock=clock, name="t1/owner")
    other = make_pool(budget=budget, clock=clock, name="t1/other")
    older, newer = await owner.lease(), await owner.lease()
    await owner.give_back(older, needs_reset=False)
    clock.advance(1)
    await owner.give_back(newer, needs_reset=False)
    lease = await other.lease()
    assert older.connection.is_closed and not newer.connection.is_closed
    assert (owner.stats().idle, other.stats().leased, budget.in_use) == (1, 1, 2)
    assert lease.connection is not None
    assert_consistent(owner, other)


async def test_full_budget_hands_another_pools_idle_backend_over_when_the_connector_adopts_it() -> (
    None
):
    clock = FakeClock()
    budget = TargetBudget("t1", 1)
    owner_connector, taker_connector = FakeConnector(), FakeConnector(adopts=True)
    owner = make_pool(owner_connector, budget=budget, clock=clock, name="t1/owner")
    taker = make_pool(taker_connector, budget=budget, clock=clock, name="t1/taker")
    first = await owner.lease()
    await owner.give_back(first, needs_reset=False)
    lease = await taker.lease()
    assert lease.connection is first.connection and not lease.connection.is_closed
    assert taker_connector.adopted == [first.connection] and taker_connector.opened == []
    assert (owner.stats().size, taker.stats().leased, budget.in_use) == (0, 1, 1)
    assert taker.stats().adopted_total == 1
    await taker.give_back(lease, needs_reset=False)
    assert (taker.stats().idle, budget.in_use) == (1, 1)
    assert_consistent(owner, taker)


async def test_full_budget_without_idle_backends_makes_the_lease_wait_for_a_slot() -> None:
    budget = TargetBudget("t1", 1)
    owner = make_pool(budget=budget, name="t1/owner")
    other_connector = FakeConnector()
    other = make_pool(other_connector, budget=budget, name="t1/other")
    held = await owner.lease()
    waiting = asyncio.create_task(other.lease())
    await settle()
    assert (other.stats().waiting, budget.waiting) == (1, 1)
    # The owner has no waiter of its own: its backend is closed to make room for the other pool.
    await owner.give_back(held, needs_reset=False)
    lease = await waiting
    assert held.connection.is_closed
    assert lease.connection is other_connector.opened[0]
    assert (owner.stats().size, budget.in_use, budget.waiting) == (0, 1, 0)
    assert_consistent(owner, other)


async def test_budget_waiter_times_out_with_borrow_timeout() -> None:
    budget = TargetBudget("t1", 1)
    owner = make_pool(budget=budget, name="t1/owner")
    other = make_pool(budget=budget, name="t1/other", borrow_timeout_s=0.05)
    held = await owner.lease()
    with pytest.raises(BorrowTimeout):
        await other.lease()
    assert (budget.waiting, other.stats().timeouts_total) == (0, 1)
    await owner.give_back(held, needs_reset=False)
    assert owner.stats().idle == 1  # nobody waits any more: kept


async def test_raising_max_connections_wakes_budget_waiters() -> None:
    budget = TargetBudget("t1", 0)
    pool = make_pool(budget=budget)
    waiting = asyncio.create_task(pool.lease())
    await settle()
    assert budget.waiting == 1
    budget.max_connections = 5
    lease = await waiting
    assert lease.connection is not None
    assert budget.in_use == 1


async def test_lowering_max_connections_frees_slots_as_backends_close() -> None:
    budget = TargetBudget("t1", 2)
    pool = make_pool(budget=budget, max_size=2)
    first, second = await pool.lease(), await pool.lease()
    waiting = asyncio.create_task(pool.lease())
    await settle()
    budget.max_connections = 1
    await pool.give_back(first, is_broken=True)  # over the cap: the slot is not handed on
    await settle()
    assert not waiting.done()
    assert budget.in_use == 1
    await pool.give_back(second, needs_reset=False)  # a backend, not a slot: handed over
    await pool.give_back(await waiting, needs_reset=False)
    assert_consistent(pool)


async def test_closed_pool_gives_its_slots_back_to_the_budget() -> None:
    budget = TargetBudget("t1", 3)
    pool = make_pool(budget=budget)
    leases = [await pool.lease() for _ in range(3)]
    for lease in leases[:2]:
        await pool.give_back(lease, needs_reset=False)
    await pool.close()
    assert budget.in_use == 0
    other = make_pool(budget=budget, name="t1/other")
    assert (await other.lease()).connection is not None


async def test_waiter_for_a_full_pool_gets_a_budget_slot_after_the_cap_was_lowered() -> None:
    budget = TargetBudget("t1", 2)
    pool = make_pool(budget=budget, max_size=2)
    first, second = await pool.lease(), await pool.lease()
    waiting = asyncio.create_task(pool.lease())
    await settle()
    budget.max_connections = 1
    await pool.give_back(first, is_broken=True)  # room in the pool now, but no budget slot
    assert (budget.in_use, budget.waiting) == (1, 1)
    budget.max_connections = 2
    lease = await waiting
    assert not second.is_given_back
    assert_consistent(pool)
    await pool.give_back(lease, needs_reset=False)
