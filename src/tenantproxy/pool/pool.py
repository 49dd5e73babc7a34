"""A generic asyncio pool of backends for one (target, db user).

Rules:
- A backend's state says which collection holds it (states.py); only ``_move`` changes it.
- Every open backend holds one slot of the pool (``max_size``, closing ones included) and one of
  the target's ``TargetBudget``. A freed slot is handed on (``_pass_slot``): to this pool's oldest
  waiter, else to the budget, which gives it to the oldest waiter of the target or frees it.
- A released backend goes straight to the oldest live waiter, else to the idle deque (LIFO: the
  right end is reused first, the left end is the oldest and is the first to be closed).
- Waiters are FIFO futures bounded by a timer (``call_at``), never by a task. Entries of waiters
  that gave up stay in the deques and are skipped: their future is done.
- The fast path (an idle backend; a release without reset) never awaits and creates no task.
  Releases that do I/O (reset, close) run shielded from the releaser's cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tenantproxy.errors import BorrowTimeout, PoolClosed
from tenantproxy.pool.budget import TargetBudget, Waiter
from tenantproxy.pool.connector import Connector
from tenantproxy.pool.lease import Lease, LeaseContext
from tenantproxy.pool.states import ALLOWED_TRANSITIONS, Backend, BackendState

C = TypeVar("C")

logger = logging.getLogger(__name__)

_CONNECTING = BackendState.CONNECTING
_IDLE = BackendState.IDLE
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
    acquired_total: int
    timeouts_total: int
    connect_failures_total: int
    borrow_latency_us_last: int


class Pool(Generic[C]):
    """Backends of one (target, db user), lent per transaction."""

    def __init__(
        self,
        connector: Connector[C],
        *,
        name: str,
        budget: TargetBudget,
        max_size: int,
        min_idle: int = 0,
        max_idle: int | None = None,
        idle_timeout_s: float = 300.0,
        borrow_timeout_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 0 or min_idle < 0 or (max_idle is not None and max_idle < 0):
            raise ValueError(f"pool {name!r}: sizes must be >= 0")
        self.name = name
        self._connector = connector
        self._budget = budget
        self._max_size = max_size
        self._max_idle = max_size if max_idle is None else min(max_idle, max_size)
        self._min_idle = min(min_idle, self._max_idle)  # warm-up must not fight max_idle
        self._idle_timeout_s = idle_timeout_s
        self._borrow_timeout_s = borrow_timeout_s
        self._clock = clock
        self._idle: deque[Backend[C]] = deque()
        self._leased: set[Backend[C]] = set()
        self._connecting: set[Backend[C]] = set()
        self._closing: set[Backend[C]] = set()
        self._size = 0
        self._waiters: deque[Waiter] = deque()
        self._n_waiting = 0
        self._n_warming = 0
        self._is_closed = False
        self._drained: asyncio.Event | None = None  # set by _move once closing and drained
        self._closed: asyncio.Event | None = None  # set when close() has finished
        self._background: set[asyncio.Task[None]] = set()
        self._acquired_total = 0
        self._timeouts_total = 0
        self._connect_failures_total = 0
        self._borrow_latency_us_last = 0
        budget.register(self)

    def __repr__(self) -> str:
        return f"<Pool {self.name!r} size={self._size}/{self._max_size} idle={len(self._idle)}>"

    @property
    def is_closed(self) -> bool:
        return self._is_closed

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def budget(self) -> TargetBudget:
        return self._budget

    def stats(self) -> PoolStats:
        return PoolStats(
            size=self._size,
            idle=len(self._idle),
            leased=len(self._leased),
            connecting=len(self._connecting),
            waiting=self._n_waiting,
            max_size=self._max_size,
            acquired_total=self._acquired_total,
            timeouts_total=self._timeouts_total,
            connect_failures_total=self._connect_failures_total,
            borrow_latency_us_last=self._borrow_latency_us_last,
        )

    # -- lending ------------------------------------------------------------------------------

    async def acquire(self) -> Lease[C]:
        """A backend: the most recent idle one, a new one, or the next one released (FIFO).

        Raises BorrowTimeout after borrow_timeout_s, PoolClosed when closing, or the
        connector's exception when the connect made for this acquire fails.
        """
        if self._is_closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
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
        if backend.state is _LEASED:  # handed over by a release
            return self._lend(backend, start)
        return await self._connect_for(backend, deadline, start)

    def lease(self) -> AbstractAsyncContextManager[Lease[C]]:
        """``async with pool.lease() as lease:``; released as broken if the body raises."""
        return LeaseContext(self)

    async def release(
        self, lease: Lease[C], *, needs_reset: bool = True, is_broken: bool = False
    ) -> None:
        """Gives a lease back: to the oldest waiter, to idle, or closed (broken, over max_idle)."""
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
        await self.release(lease, is_broken=True)

    def _lend(self, backend: Backend[C], start: float) -> Lease[C]:
        now = self._clock()
        self._acquired_total += 1
        self._borrow_latency_us_last = int((now - start) * 1_000_000)
        return Lease(backend, self, now)

    async def _reserve(self, deadline: float) -> Backend[C]:
        """A LEASED backend handed over, or a CONNECTING one holding a pool and a budget slot."""
        if self._is_closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        if not self._has_room():
            return await self._wait(deadline, for_budget=False)
        # With room here, any live waiter waits for the budget, and try_take lets no one by it.
        if self._budget.try_take():
            return self._new_backend()
        victim = None if self._budget.waiting else self._budget.find_victim(self)
        if victim is None:
            return await self._wait(deadline, for_budget=True)
        backend = self._new_backend()
        evicted = victim._evict_oldest_idle()
        try:
            await victim._close(evicted, pass_slot=False)  # its budget slot becomes ours
        except BaseException:
            self._abandon(backend)
            raise
        return backend

    async def _connect_for(self, backend: Backend[C], deadline: float, start: float) -> Lease[C]:
        if self._is_closed:
            self._abandon(backend)
            raise PoolClosed(f"pool {self.name!r} is closed")
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                connection = await self._connector.connect()
        except BaseException as exc:
            self._abandon(backend)  # frees the slots first: a waiter may try its own connect
            if isinstance(exc, Exception):
                self._connect_failures_total += 1
            if timeout.expired():
                self._timeouts_total += 1
                raise self._borrow_timeout() from exc
            raise
        backend.connection = connection
        if self._is_closed:
            await self._close(backend)
            raise PoolClosed(f"pool {self.name!r} is closed")
        self._move(backend, _LEASED)
        return self._lend(backend, start)

    # -- waiting ------------------------------------------------------------------------------

    async def _wait(self, deadline: float, *, for_budget: bool) -> Backend[C]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Backend[C]] = loop.create_future()
        waiter = Waiter(future, self)
        self._waiters.append(waiter)
        self._n_waiting += 1
        if for_budget:
            self._budget.wait(waiter)
        timer = loop.call_at(deadline, self._expire, future)
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelled after being served but before waking: pass what we got on.
            if future.done() and not future.cancelled() and future.exception() is None:
                self._regrant(future.result())
            raise
        finally:
            timer.cancel()
            self._budget.forget(waiter)
            self._n_waiting -= 1
            if not self._n_waiting:
                self._waiters.clear()  # drop the stale entries of waiters that gave up

    def _expire(self, future: asyncio.Future[Backend[C]]) -> None:
        if not future.done():
            self._timeouts_total += 1
            future.set_exception(self._borrow_timeout())

    def _borrow_timeout(self) -> BorrowTimeout:
        return BorrowTimeout(f"pool {self.name!r}: no backend within {self._borrow_timeout_s} s")

    def _pop_live_waiter(self) -> Waiter | None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.future.done():
                return waiter
        return None

    def take_budget_slot(self, waiter: Waiter) -> bool:
        """Called by the budget: gives ``waiter`` a budget slot if this pool can use it now."""
        if waiter.future.done() or self._is_closed or not self._has_room():
            return False
        waiter.future.set_result(self._new_backend())
        return True

    def _regrant(self, backend: Backend[C]) -> None:
        """Passes on what a waiter was given and can no longer use."""
        if backend.state is _CONNECTING:
            self._abandon(backend)
        elif self._recycle(backend):
            self._move(backend, _CLOSING)
            self._spawn(self._close(backend))

    # -- slots and moves ----------------------------------------------------------------------

    def _has_room(self) -> bool:
        return self._size + len(self._closing) < self._max_size

    def _new_backend(self) -> Backend[C]:
        """A CONNECTING backend; the caller has a pool slot and a budget slot for it."""
        backend: Backend[C] = Backend()
        self._connecting.add(backend)
        self._size += 1
        return backend

    def _abandon(self, backend: Backend[C]) -> None:
        """A CONNECTING backend that will not connect: hand its slots on."""
        self._move(backend, _CLOSED)
        self._pass_slot()

    def _pass_slot(self) -> None:
        """A backend of this pool is gone: its pool and budget slots go to the next in line."""
        if self._is_closed:
            self._budget.return_slot()
        elif self._budget.is_over_cap():
            # The budget slot must go (max_connections was lowered): our waiters now have
            # room here and need a budget slot, so they queue for one.
            self._budget.return_slot()
            for queued in self._waiters:
                if not queued.future.done() and not queued.is_budget_waiter:
                    self._budget.wait(queued)
        else:
            waiter = self._pop_live_waiter()
            if waiter is None:
                self._budget.return_slot()
            else:
                waiter.future.set_result(self._new_backend())

    def _recycle(self, backend: Backend[C]) -> bool:
        """A healthy LEASED backend comes back; True when the caller must close it instead."""
        if self._is_closed:
            return True
        waiter = self._pop_live_waiter()
        if waiter is not None:
            waiter.future.set_result(backend)  # stays LEASED, now for the waiter
            return False
        if len(self._idle) >= self._max_idle or self._budget.waiting:
            return True  # over max_idle, or another pool on the target needs the slot
        backend.idle_since = self._clock()
        self._move(backend, _IDLE)
        return False

    def _move(self, backend: Backend[C], new: BackendState) -> None:
        """The one place a backend changes state, and so collection."""
        old = backend.state
        if new not in ALLOWED_TRANSITIONS[old]:
            raise RuntimeError(f"pool {self.name!r}: backend {old.name} -> {new.name}")
        if old is _IDLE:
            idle = self._idle
            if idle[-1] is backend:
                idle.pop()
            elif idle[0] is backend:
                idle.popleft()
            else:
                idle.remove(backend)
        elif old is _LEASED:
            self._leased.remove(backend)
        elif old is _CONNECTING:
            self._connecting.remove(backend)
        else:
            self._closing.remove(backend)
        backend.state = new
        if new is _LEASED:
            self._leased.add(backend)
        elif new is _IDLE:
            self._idle.append(backend)
        elif new is _CLOSING:
            self._closing.add(backend)
            self._size -= 1
        elif old is _CONNECTING:  # CONNECTING -> CLOSED
            self._size -= 1
        if self._drained is not None and not self._leased and not self._connecting:
            self._drained.set()

    # -- closing backends ---------------------------------------------------------------------

    def oldest_idle_since(self) -> float | None:
        """For the budget: when the oldest idle backend went idle, or None."""
        return self._idle[0].idle_since if self._idle else None

    def _evict_oldest_idle(self) -> Backend[C]:
        backend = self._idle[0]
        self._move(backend, _CLOSING)
        return backend

    async def _close(self, backend: Backend[C], *, pass_slot: bool = True) -> None:
        if backend.state is not _CLOSING:
            self._move(backend, _CLOSING)
        try:
            await self._connector.close(backend.connection)
        except Exception:
            logger.warning("pool %r: connector.close raised", self.name, exc_info=True)
        finally:
            self._move(backend, _CLOSED)
            if pass_slot:
                self._pass_slot()

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

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _shielded(self, coroutine: Coroutine[Any, Any, None]) -> None:
        await asyncio.shield(self._spawn(coroutine))

    # -- maintenance and shutdown -------------------------------------------------------------

    async def maintain(self) -> None:
        """One pass: close broken idle backends and those idle past idle_timeout_s (down to
        min_idle), then open new ones up to min_idle within the pool's and the budget's caps."""
        if self._is_closed:
            return
        stale = [b for b in self._idle if self._connector.is_broken(b.connection)]
        for backend in stale:
            self._move(backend, _CLOSING)
        now = self._clock()
        idle = self._idle
        while len(idle) > self._min_idle and now - idle[0].idle_since >= self._idle_timeout_s:
            stale.append(self._evict_oldest_idle())
        await self._close_all(stale)
        await self._warm_up()

    async def _warm_up(self) -> None:
        reserved: list[Backend[C]] = []
        need = self._min_idle - len(self._idle) - self._n_warming
        while need > 0 and not self._n_waiting and self._has_room() and self._budget.try_take():
            reserved.append(self._new_backend())
            need -= 1
        self._n_warming += len(reserved)
        try:
            await self._gather([self._warm(b) for b in reserved])
        finally:
            self._n_warming -= len(reserved)

    async def _warm(self, backend: Backend[C]) -> None:
        try:
            connection = await self._connector.connect()
        except BaseException as exc:
            self._abandon(backend)
            if not isinstance(exc, Exception):
                raise
            self._connect_failures_total += 1
            logger.warning("pool %r: warm-up connect failed: %s", self.name, exc)
            return
        backend.connection = connection
        if self._is_closed:
            await self._close(backend)
            return
        self._move(backend, _LEASED)
        if self._recycle(backend):
            await self._close(backend)

    async def close(self, grace_s: float = 0) -> None:
        """Stops lending, waits up to grace_s for leases to come back, then closes everything."""
        if self._closed is not None:
            await self._closed.wait()
            return
        self._closed = asyncio.Event()
        self._is_closed = True
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(PoolClosed(f"pool {self.name!r} is closed"))
        self._waiters.clear()
        await self._close_all(list(self._idle))
        if grace_s > 0 and (self._leased or self._connecting):
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self._drained.wait()
        # Leases still out are closed under their holders; their release is then a no-op.
        await self._close_all(list(self._leased))
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._budget.unregister(self)
        self._closed.set()

    async def _close_all(self, backends: list[Backend[C]]) -> None:
        for backend in backends:
            if backend.state is not _CLOSING:
                self._move(backend, _CLOSING)  # now, so that no one else can take them
        await self._gather([self._close(b) for b in backends])

    @staticmethod
    async def _gather(coroutines: list[Coroutine[Any, Any, None]]) -> None:
        if len(coroutines) == 1:
            await coroutines[0]
        elif coroutines:
            await asyncio.gather(*coroutines)
