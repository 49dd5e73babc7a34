"""A generic asyncio pool of backends for one (target, db user): its public API.

Rules:
- A backend's state says which collection holds it (states.py); only ``_move`` changes it.
- Slots and where a freed slot or a backend given back goes: core.py. Waiters: waiting.py.
  The maintenance pass: maintenance.py.
- The fast path (an idle backend; a give-back without reset) never awaits and creates no task.
  Give-backs that do I/O (reset, close) run shielded from the caller's cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TypeVar

from tenantproxy.pool.budget import TargetBudget
from tenantproxy.pool.connector import Connector
from tenantproxy.pool.core import PoolCore
from tenantproxy.pool.lease import Lease, LeaseContext
from tenantproxy.pool.maintenance import maintain_pool
from tenantproxy.pool.states import Backend, BackendState

C = TypeVar("C")

logger = logging.getLogger(__name__)

_LEASED = BackendState.LEASED
_CLOSING = BackendState.CLOSING
_CLOSED = BackendState.CLOSED


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of one pool; ``size == idle + leased + connecting``."""

    size: int
    idle: int
    leased: int
    connecting: int
    waiting: int
    max_size: int
    leased_total: int
    timeouts_total: int
    connect_failures_total: int
    adopted_total: int  # backends taken over from other pools on the target (Connector.adopt)
    borrow_latency_us_last: int


class Pool(PoolCore[C]):
    """Backends of one (target, db user), lent per transaction; built as ``PoolCore`` is."""

    def __repr__(self) -> str:
        return f"<Pool {self.name!r} size={self._size}/{self._max_size} idle={len(self._idle)}>"

    @property
    def is_closed(self) -> bool:
        return self._is_closed

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def connector(self) -> Connector[C]:
        """Opens backends of this pool's (target, user); also for one-off connections outside
        the pool and its budget (a KILL sent to another target)."""
        return self._connector

    @property
    def budget(self) -> TargetBudget:
        return self._budget

    @property
    def has_waiters(self) -> bool:
        """Whether callers queue for a lease now: a client that could give one back should
        (a backend given back goes to the oldest of them; lease_idle finds none meanwhile)."""
        return self._waiting.count > 0

    def stats(self) -> PoolStats:
        return PoolStats(
            size=self._size,
            idle=len(self._idle),
            leased=len(self._leased),
            connecting=len(self._connecting),
            waiting=self._waiting.count,
            max_size=self._max_size,
            leased_total=self._leased_total,
            timeouts_total=self._timeouts_total,
            connect_failures_total=self._connect_failures_total,
            adopted_total=self._adopted_total,
            borrow_latency_us_last=self._borrow_latency_us_last,
        )

    # -- lending ------------------------------------------------------------------------------

    async def lease(self) -> Lease[C]:
        """A backend: the most recent idle one, a new one, or the next one given back (FIFO).

        Raises BorrowTimeout after borrow_timeout_s, PoolClosed when closing, or the
        connector's exception when the connect made for this lease fails.
        """
        if self._is_closed:
            raise self._closed_error()
        start = self._clock()
        idle = self._idle
        while idle:
            backend = idle[-1]
            if self._connector.is_broken(backend.connection):
                await self._close(backend)
                continue
            self._move(backend, _LEASED)
            return self._lend(backend, start)
        deadline = asyncio.get_running_loop().time() + self._borrow_timeout_s
        backend = await self._reserve(deadline)
        if backend.state is _LEASED:  # handed over by a give-back
            return self._lend(backend, start)
        return await self._connect_for(backend, deadline, start)

    def lease_idle(self) -> Lease[C] | None:
        """The most recent idle backend, at once: no await, no task (the multiplexing relay
        takes one per transaction). None when there is none, or it broke: then lease()."""
        if self._is_closed or not self._idle:
            return None
        backend = self._idle[-1]
        if self._connector.is_broken(backend.connection):
            return None
        self._move(backend, _LEASED)
        return self._lend(backend, self._clock())

    def give_back_clean(self, lease: Lease[C]) -> None:
        """Gives back a backend whose session needs no reset, at once: to the oldest waiter or
        to idle. Only closing one (broken, over max_idle) takes a task."""
        backend = lease._take_back(self)
        if backend.state is not _LEASED:
            return  # close() closed it after its grace period
        if self._connector.is_broken(backend.connection) or self._recycle(backend):
            self._move(backend, _CLOSING)
            self._spawn(self._close(backend))

    def close_oldest_idle(self) -> bool:
        """Closes the idle backend that has waited longest (its slots passed on once closed);
        False when none is idle. For an owner that needs a backend of this pool's user
        elsewhere (another worker process, under a per-user cap across processes)."""
        if self._is_closed or not self._idle:
            return False
        self._spawn(self._close(self._evict_oldest_idle()))
        return True

    def leased(self) -> AbstractAsyncContextManager[Lease[C]]:
        """``async with pool.leased() as lease:``; given back as broken if the body raises."""
        return LeaseContext(self)

    async def give_back(
        self, lease: Lease[C], *, needs_reset: bool = True, is_broken: bool = False
    ) -> None:
        """The lease comes back: to the oldest waiter, to idle, or closed (broken, or over
        max_idle)."""
        backend = lease._take_back(self)
        if backend.state is not _LEASED:
            return  # close() closed it after its grace period
        if is_broken or self._connector.is_broken(backend.connection):
            must_close = True
        elif needs_reset:
            await self._shielded(self._reset_and_recycle(backend))
            return
        else:
            must_close = self._recycle(backend)
        if must_close:
            self._move(backend, _CLOSING)  # now, so that close() cannot close it a second time
            await self._shielded(self._close(backend))

    async def discard(self, lease: Lease[C]) -> None:
        """Closes a leased backend instead of reusing it."""
        await self.give_back(lease, is_broken=True)

    def _lend(self, backend: Backend[C], start: float) -> Lease[C]:
        now = self._clock()
        self._leased_total += 1
        self._borrow_latency_us_last = int((now - start) * 1_000_000)
        return Lease(backend, self, now)

    async def _reserve(self, deadline: float) -> Backend[C]:
        """A LEASED backend handed over, or a CONNECTING one holding a pool and a budget slot."""
        if self._is_closed:
            raise self._closed_error()
        if not self._has_room():
            return await self._waiting.wait(deadline, for_budget=False)
        # With room here, any live waiter waits for the budget, and try_take lets no one by it.
        if self._budget.try_take():
            return self._new_backend()
        victim = None if self._budget.waiting else self._budget.find_victim(self)
        if victim is None:
            return await self._waiting.wait(deadline, for_budget=True)
        backend = self._new_backend()
        evicted = victim._evict_oldest_idle()
        try:
            if await self._adopt(victim, evicted):
                backend.connection = evicted.connection
            else:
                await victim._close(evicted, pass_slot=False)  # its budget slot becomes ours
        except BaseException:
            self._abandon(backend)
            raise
        return backend

    async def _adopt(self, victim: PoolCore[C], evicted: Backend[C]) -> bool:
        """Another pool's idle backend, taken over (its budget slot with it) if the connector
        can make it ours: cheaper for the target than closing it and connecting anew."""
        try:
            is_adopted = await self._connector.adopt(evicted.connection)
        except Exception:
            logger.debug("pool %r: adopt failed", self.name, exc_info=True)
            is_adopted = False
        if is_adopted:
            victim._move(evicted, _CLOSED)  # gone from there; the connection lives on here
            self._adopted_total += 1
        return is_adopted

    async def _connect_for(self, backend: Backend[C], deadline: float, start: float) -> Lease[C]:
        if self._is_closed:
            self._abandon(backend)
            raise self._closed_error()
        if hasattr(backend, "connection"):  # adopted from another pool: already connected
            self._move(backend, _LEASED)
            return self._lend(backend, start)
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                connection = await self._connector.connect()
        except BaseException as exc:
            self._abandon(backend)  # frees the slots first: a waiter may try its own connect
            if isinstance(exc, Exception):
                self._connect_failures_total += 1
            if timeout.expired():
                raise self._count_timeout() from exc
            raise
        backend.connection = connection
        if self._is_closed:
            await self._close(backend)
            raise self._closed_error()
        self._move(backend, _LEASED)
        return self._lend(backend, start)

    async def _reset_and_recycle(self, backend: Backend[C]) -> None:
        try:
            await self._connector.reset(backend.connection)
        except Exception:
            logger.debug("pool %r: reset failed; discarding the backend", self.name, exc_info=True)
            if backend.state is _LEASED:
                await self._close(backend)
            return
        if backend.state is _LEASED and self._recycle(backend):
            await self._close(backend)

    # -- maintenance and shutdown -------------------------------------------------------------

    async def maintain(self) -> None:
        """One pass: close broken idle backends and those idle past idle_timeout_s (down to
        min_idle), then open new ones up to min_idle within the pool's and the budget's caps."""
        await maintain_pool(self)

    async def close(self, grace_s: float = 0) -> None:
        """Stops lending, waits up to grace_s for leases to come back, then closes everything."""
        if self._closed is not None:
            await self._closed.wait()
            return
        self._closed = asyncio.Event()
        self._is_closed = True
        self._waiting.fail_all(self._closed_error)
        await self._close_all(list(self._idle))
        if grace_s > 0 and (self._leased or self._connecting):
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self._drained.wait()
        # Leases still out are closed under their holders; their give-back is then a no-op.
        await self._close_all(list(self._leased))
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._budget.unregister(self)
        self._closed.set()
