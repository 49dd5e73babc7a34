"""The synchronous paths the multiplexing relay takes per transaction: take an idle backend and
give back a clean one without awaiting."""

from __future__ import annotations

import asyncio

from tests.unit.pool.fakes import settle
from tests.unit.pool.helpers import assert_consistent, make_pool


async def test_lease_idle_lends_the_most_recent_idle_backend_at_once() -> None:
    pool = make_pool()
    first, second = await pool.lease(), await pool.lease()
    pool.give_back_clean(first)
    pool.give_back_clean(second)
    taken = pool.lease_idle()
    assert taken is not None and taken.connection is second.connection
    assert (pool.stats().idle, pool.stats().leased) == (1, 1)
    assert_consistent(pool)


async def test_lease_idle_is_none_without_an_idle_backend_or_when_it_broke() -> None:
    pool = make_pool()
    assert pool.lease_idle() is None
    lease = await pool.lease()
    pool.give_back_clean(lease)
    lease.connection.is_broken = True
    assert pool.lease_idle() is None
    assert (await pool.lease()).connection is not lease.connection  # lease() closes it
    assert_consistent(pool)


async def test_give_back_clean_does_no_reset_and_hands_over_to_the_oldest_waiter() -> None:
    pool = make_pool(max_size=1)
    lease = await pool.lease()
    waiter = asyncio.create_task(pool.lease())
    await settle()
    pool.give_back_clean(lease)
    handed = await waiter
    assert handed.connection is lease.connection and handed.connection.resets == 0
    assert_consistent(pool)


async def test_give_back_clean_closes_a_broken_backend_in_the_background() -> None:
    pool = make_pool()
    lease = await pool.lease()
    lease.connection.is_broken = True
    pool.give_back_clean(lease)
    await settle()
    assert lease.connection.is_closed and pool.stats().size == 0
    assert_consistent(pool)


async def test_give_back_clean_past_max_idle_closes_the_backend() -> None:
    pool = make_pool(max_idle=1)
    first, second = await pool.lease(), await pool.lease()
    pool.give_back_clean(first)
    pool.give_back_clean(second)
    await settle()
    assert pool.stats().idle == 1 and second.connection.is_closed
    assert_consistent(pool)


async def test_has_waiters_while_a_lease_queues_and_a_newcomer_finds_no_idle_backend() -> None:
    pool = make_pool(max_size=1)
    lease = await pool.lease()
    assert not pool.has_waiters
    waiter = asyncio.create_task(pool.lease())
    await settle()
    assert pool.has_waiters
    pool.give_back_clean(lease)
    assert pool.lease_idle() is None  # the backend given back went to the waiter
    await waiter
    assert not pool.has_waiters
    assert_consistent(pool)
