"""Pool maintenance: the pass on one pool (``maintain_pool``) and the loop over all pools.

A pass closes broken idle backends and those idle past idle_timeout_s (down to min_idle), then
warms the pool up to min_idle within its and the budget's caps, unless ``may_warm_up`` says no.
One loop serves every pool, so it costs one task in all. The pass works on the pool's internals,
the way ``Pool`` itself does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tenantproxy.pool.states import Backend, BackendState

if TYPE_CHECKING:
    from tenantproxy.pool.core import PoolCore
    from tenantproxy.pool.pool import Pool

logger = logging.getLogger(__name__)

_LEASED = BackendState.LEASED
_CLOSING = BackendState.CLOSING


async def run_maintenance(
    pools: Callable[[], Iterable[Pool[Any]]], interval_s: float, stop: asyncio.Event
) -> None:
    """Calls ``maintain()`` on each pool ``pools()`` lists, every interval_s, until ``stop``."""
    while not stop.is_set():
        for pool in list(pools()):
            if stop.is_set():
                return
            if pool.is_closed:
                continue
            try:
                await pool.maintain()
            except Exception:
                # One pool's trouble must not stop the others' maintenance.
                logger.exception("maintenance of pool %r failed", pool.name)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await stop.wait()


async def maintain_pool(pool: PoolCore[Any]) -> None:
    """One pass over ``pool``: close what is broken or idle too long, then warm up."""
    if pool._is_closed:
        return
    await pool._close_all(_broken_or_expired_idle(pool))
    await _warm_up(pool)


def _broken_or_expired_idle(pool: PoolCore[Any]) -> list[Backend[Any]]:
    """Moves to CLOSING, and returns, the broken idle backends and the oldest idle ones past
    idle_timeout_s (down to min_idle)."""
    stale = [b for b in pool._idle if pool._connector.is_broken(b.connection)]
    for backend in stale:
        pool._move(backend, _CLOSING)
    now = pool._clock()
    idle = pool._idle
    while len(idle) > pool._min_idle and now - idle[0].idle_since >= pool._idle_timeout_s:
        stale.append(pool._evict_oldest_idle())
    return stale


async def _warm_up(pool: PoolCore[Any]) -> None:
    """Opens backends up to min_idle, if no one waits and the pool and the budget have room,
    and the owner does not know the target to be down (each failed connect would be logged)."""
    if not pool._may_warm_up():
        return
    reserved: list[Backend[Any]] = []
    need = pool._min_idle - len(pool._idle) - pool._n_warming
    while need > 0 and not pool._waiting.count and pool._has_room() and pool._budget.try_take():
        reserved.append(pool._new_backend())
        need -= 1
    pool._n_warming += len(reserved)
    try:
        await pool._gather([_warm(pool, b) for b in reserved])
    finally:
        pool._n_warming -= len(reserved)


async def _warm(pool: PoolCore[Any], backend: Backend[Any]) -> None:
    """Connects a reserved backend and hands it on like a give-back: to a waiter, else idle."""
    try:
        connection = await pool._connector.connect()
    except BaseException as exc:
        pool._abandon(backend)
        if not isinstance(exc, Exception):
            raise
        pool._connect_failures_total += 1
        logger.warning("pool %r: warm-up connect failed: %s", pool.name, exc)
        return
    backend.connection = connection
    if pool._is_closed:
        await pool._close(backend)
        return
    pool._move(backend, _LEASED)
    if pool._recycle(backend):
        await pool._close(backend)
