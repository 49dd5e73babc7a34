"""Lending and giving back: LIFO reuse, caps, FIFO waiters, broken backends, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tenantproxy.errors import BorrowTimeout, PoolClosed, PoolError
from tenantproxy.pool import Lease, Pool, PoolStats, TargetBudget
from tests.unit.pool.fakes import FakeConn, FakeConnector, settle
from tests.unit.pool.helpers import assert_consistent, make_pool


async def test_a_lease_opens_a_backend_and_giving_it_back_keeps_it_idle() -> None:
    connector = FakeConnector()
    pool = make_pool(connector)
    lease = await pool.lease()
    assert lease.connection is connector.opened[0]
    assert pool.stats().leased == 1
    await pool.give_back(lease, needs_reset=False)
    stats = pool.stats()
    assert (stats.size, stats.idle, stats.leased, stats.leased_total) == (1, 1, 0, 1)
    assert_consistent(pool)


async def test_idle_backends_are_reused_last_in_first_out() -> None:
    pool = make_pool()
    first, second = await pool.lease(), await pool.lease()
    await pool.give_back(first, needs_reset=False)
    await pool.give_back(second, needs_reset=False)
    again = await pool.lease()
    assert again.connection is second.connection
    again_too = await pool.lease()
    assert again_too.connection is first.connection
    assert_consistent(pool)


async def test_give_back_resets_the_backend_by_default() -> None:
    pool = make_pool()
    lease = await pool.lease()
    await pool.give_back(lease)
    assert lease.connection.resets == 1
    assert pool.stats().idle == 1


async def test_max_size_is_never_exceeded_by_200_concurrent_leases() -> None:
    connector = FakeConnector(yields_on_connect=True)
    pool = make_pool(connector, max_size=10)

    async def client() -> None:
        lease = await pool.lease()
        await asyncio.sleep(0)
        await pool.give_back(lease, needs_reset=False)

    await asyncio.gather(*(client() for _ in range(200)))
    assert connector.counter.peak <= 10
    assert pool.stats().leased_total == 200
    assert pool.stats().waiting == 0
    assert_consistent(pool)


async def test_borrow_times_out_with_borrow_timeout_when_pool_is_full() -> None:
    pool = make_pool(max_size=1, borrow_timeout_s=0.05)
    held = await pool.lease()
    with pytest.raises(BorrowTimeout):
        await pool.lease()
    stats = pool.stats()
    assert (stats.timeouts_total, stats.waiting, stats.leased) == (1, 0, 1)
    await pool.give_back(held, needs_reset=False)
    assert pool.stats().idle == 1


async def test_waiters_are_served_first_in_first_out() -> None:
    pool = make_pool(max_size=1)
    held = await pool.lease()
    order: list[int] = []

    async def waiter(number: int) -> None:
        lease = await pool.lease()
        order.append(number)
        await pool.give_back(lease, needs_reset=False)

    tasks = []
    for number in range(5):
        tasks.append(asyncio.create_task(waiter(number)))
        await settle()
    assert pool.stats().waiting == 5
    await pool.give_back(held, needs_reset=False)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert_consistent(pool)


async def test_give_back_hands_the_backend_straight_to_the_oldest_waiter() -> None:
    pool = make_pool(max_size=1)
    held = await pool.lease()
    waiting = asyncio.create_task(pool.lease())
    await settle()
    await pool.give_back(held, needs_reset=False)
    assert pool.stats().idle == 0  # never went through idle
    lease = await waiting
    assert lease.connection is held.connection
    assert pool.stats().leased == 1
    assert_consistent(pool)


async def test_newcomers_do_not_overtake_a_waiter_for_a_backend_given_back() -> None:
    pool = make_pool(max_size=1)
    held = await pool.lease()
    waiting = asyncio.create_task(pool.lease())
    await settle()
    await pool.give_back(held, needs_reset=False)
    late = asyncio.create_task(pool.lease())
    first = await waiting
    await settle()
    assert not late.done()
    await pool.give_back(first, needs_reset=False)
    await pool.give_back(await late, needs_reset=False)


async def test_broken_idle_backend_is_closed_on_lease_and_a_good_one_lent() -> None:
    connector = FakeConnector()
    pool = make_pool(connector)
    lease = await pool.lease()
    await pool.give_back(lease, needs_reset=False)
    lease.connection.is_broken = True
    fresh = await pool.lease()
    assert fresh.connection is not lease.connection
    assert lease.connection.is_closed
    assert pool.stats().size == 1
    assert_consistent(pool)


@pytest.mark.parametrize("flagged_by", ["caller", "connector"])
async def test_broken_backend_is_closed_on_give_back(flagged_by: str) -> None:
    pool = make_pool()
    lease = await pool.lease()
    if flagged_by == "caller":
        await pool.give_back(lease, is_broken=True)
    else:
        lease.connection.is_broken = True
        await pool.give_back(lease)
    assert lease.connection.is_closed
    assert pool.stats().size == 0
    assert pool.budget.in_use == 0


async def test_reset_failure_discards_the_backend() -> None:
    connector = FakeConnector(reset_failures_to_come=1)
    pool = make_pool(connector)
    lease = await pool.lease()
    await pool.give_back(lease)
    assert lease.connection.is_closed
    assert (pool.stats().size, pool.budget.in_use) == (0, 0)


async def test_discard_closes_a_leased_backend_without_reuse() -> None:
    pool = make_pool()
    lease = await pool.lease()
    await pool.discard(lease)
    assert lease.connection.is_closed
    assert pool.stats().size == 0


async def test_give_back_above_max_idle_closes_instead_of_keeping() -> None:
    pool = make_pool(max_size=4, max_idle=1)
    leases = [await pool.lease() for _ in range(3)]
    for lease in leases:
        await pool.give_back(lease, needs_reset=False)
    assert pool.stats().idle == 1
    assert [lease.connection.is_closed for lease in leases] == [False, True, True]
    assert_consistent(pool)


async def test_giving_back_twice_raises_pool_error() -> None:
    pool = make_pool()
    lease = await pool.lease()
    await pool.give_back(lease, needs_reset=False)
    with pytest.raises(PoolError, match="already given back"):
        await pool.give_back(lease, needs_reset=False)
    assert pool.stats().idle == 1


async def test_giving_back_to_another_pool_raises_pool_error() -> None:
    pool, other = make_pool(name="a"), make_pool(name="b")
    lease = await pool.lease()
    with pytest.raises(PoolError, match="belongs to pool 'a'"):
        await other.give_back(lease)
    assert not lease.is_given_back


async def test_connect_failure_raises_the_connectors_error_and_frees_the_slot() -> None:
    connector = FakeConnector(connect_failures_to_come=1)
    pool = make_pool(connector, max_size=1)
    with pytest.raises(ConnectionRefusedError):
        await pool.lease()
    stats = pool.stats()
    assert (stats.size, stats.connect_failures_total, pool.budget.in_use) == (0, 1, 0)
    lease = await pool.lease()
    assert lease.connection is connector.opened[0]


async def test_connect_failure_wakes_a_waiter_that_then_connects_itself() -> None:
    gate = asyncio.Event()
    connector = FakeConnector(connect_gate=gate, connect_failures_to_come=1)
    pool = make_pool(connector, max_size=1)
    first = asyncio.create_task(pool.lease())
    await settle()
    second = asyncio.create_task(pool.lease())
    await settle()
    assert pool.stats().waiting == 1
    gate.set()
    with pytest.raises(ConnectionRefusedError):
        await first
    lease = await second
    assert lease.connection is connector.opened[0]
    assert_consistent(pool)


async def test_cancelled_waiter_leaves_the_queue_without_taking_a_backend() -> None:
    pool = make_pool(max_size=1)
    held = await pool.lease()
    gone = asyncio.create_task(pool.lease())
    await settle()
    staying = asyncio.create_task(pool.lease())
    await settle()
    gone.cancel()
    await settle()
    assert pool.stats().waiting == 1
    await pool.give_back(held, needs_reset=False)
    assert (await staying).connection is held.connection
    assert gone.cancelled()


@pytest.mark.parametrize("has_next_waiter", [True, False])
async def test_backend_handed_to_a_cancelled_waiter_goes_to_the_next_waiter_or_idle(
    has_next_waiter: bool,
) -> None:
    pool = make_pool(max_size=1)
    held = await pool.lease()
    gone = asyncio.create_task(pool.lease())
    await settle()
    nxt = asyncio.create_task(pool.lease()) if has_next_waiter else None
    await settle()
    await pool.give_back(held, needs_reset=False)  # hands it to `gone`...
    gone.cancel()  # ...which is cancelled before it could wake up
    await settle()
    assert gone.cancelled()
    if nxt is not None:
        assert (await nxt).connection is held.connection
        assert pool.stats().leased == 1
    else:
        assert (pool.stats().idle, pool.stats().leased) == (1, 0)
    assert pool.stats().waiting == 0
    assert_consistent(pool)


async def test_slot_granted_to_a_cancelled_waiter_passes_to_the_next_waiter() -> None:
    connector = FakeConnector()
    budget = TargetBudget("t1", 1)
    pool = make_pool(connector, budget=budget, max_size=2)
    await pool.lease()
    gone = asyncio.create_task(pool.lease())
    await settle()
    nxt = asyncio.create_task(pool.lease())
    await settle()
    assert budget.waiting == 2
    budget.max_connections = 2  # grants the new slot to `gone` at once...
    gone.cancel()  # ...which is cancelled before it could connect
    lease = await nxt
    assert gone.cancelled()
    assert lease.connection is connector.opened[1]
    assert (budget.in_use, budget.waiting) == (2, 0)
    assert_consistent(pool)


async def test_cancelled_give_back_still_completes_the_reset_and_returns_the_backend() -> None:
    gate = asyncio.Event()
    connector = FakeConnector()
    pool = make_pool(connector)

    async def slow_reset(conn: FakeConn) -> None:
        await gate.wait()
        conn.resets += 1

    connector.reset = slow_reset  # type: ignore[method-assign]
    lease = await pool.lease()
    giving_back = asyncio.create_task(pool.give_back(lease))
    await settle()
    giving_back.cancel()
    await settle()
    gate.set()
    await settle()
    assert giving_back.cancelled()
    assert lease.connection.resets == 1
    assert pool.stats().idle == 1


async def test_lease_context_manager_gives_back_and_marks_broken_when_the_body_raises() -> None:
    pool = make_pool()
    async with pool.leased() as lease:
        assert isinstance(lease, Lease)
    assert pool.stats().idle == 1
    with pytest.raises(RuntimeError):
        async with pool.leased() as failing:
            raise RuntimeError("query failed")
    assert failing.connection.is_closed
    assert pool.stats().size == 0


async def test_close_waits_for_leases_within_the_grace_period() -> None:
    pool = make_pool()
    lease = await pool.lease()
    closing = asyncio.create_task(pool.close(grace_s=60))
    await settle()
    assert not closing.done()
    assert pool.is_closed
    with pytest.raises(PoolClosed):
        await pool.lease()
    await pool.give_back(lease, needs_reset=False)
    await closing
    assert lease.connection.is_closed
    assert (pool.stats().size, pool.budget.in_use) == (0, 0)


async def test_close_without_grace_closes_leased_backends_and_fails_waiters() -> None:
    pool = make_pool(max_size=1)
    lease = await pool.lease()
    waiting = asyncio.create_task(pool.lease())
    await settle()
    await pool.close()
    with pytest.raises(PoolClosed):
        await waiting
    assert lease.connection.is_closed
    await pool.give_back(lease)  # a no-op now, not an error
    assert (pool.stats().size, pool.stats().waiting, pool.budget.in_use) == (0, 0, 0)
    await pool.close()  # idempotent


async def test_stats_is_a_frozen_snapshot() -> None:
    pool = make_pool()
    stats = pool.stats()
    assert isinstance(stats, PoolStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.size = 3  # type: ignore[misc]


async def test_borrow_latency_is_measured_with_the_pools_clock() -> None:
    gate = asyncio.Event()
    connector = FakeConnector(connect_gate=gate)
    clock_now = [10.0]
    pool: Pool[FakeConn] = Pool(
        connector,
        name="p",
        budget=TargetBudget("t", 10),
        max_size=1,
        clock=lambda: clock_now[0],
    )
    leasing = asyncio.create_task(pool.lease())
    await settle()
    clock_now[0] += 0.002
    gate.set()
    lease = await leasing
    assert pool.stats().borrow_latency_us_last == pytest.approx(2000, abs=1)
    assert lease.leased_at == 10.002


async def test_a_lease_is_not_held_back_by_a_waiter_already_served() -> None:
    budget = TargetBudget("t1", 1)
    pool = make_pool(budget=budget, max_size=3, borrow_timeout_s=5)
    held = await pool.lease()
    waiting = asyncio.create_task(pool.lease())
    await settle()
    budget.max_connections = 3  # serves `waiting`, which has not woken up yet...
    newcomer = await pool.lease()  # ...and must not make this one wait for nothing
    for lease in (held, await waiting, newcomer):
        await pool.give_back(lease, needs_reset=False)
    assert (pool.stats().idle, budget.in_use) == (3, 3)
    assert_consistent(pool)
