"""What every part of a pool works on: its backends by state, the slots they hold, and where a
freed slot or a backend given back goes. ``Pool`` (pool.py) builds its public API on it.

Rules:
- A backend's state says which collection holds it (states.py); only ``_move`` changes it.
- Every open backend holds one slot of the pool (``max_size``, closing ones included) and one of
  the target's ``TargetBudget``. A freed slot is handed on (``_pass_slot``): to this pool's oldest
  waiter, else to the budget, which gives it to the oldest waiter of the target or frees it.
- A backend given back goes straight to the oldest live waiter, else to the idle deque (LIFO: the
  right end is reused first, the left end is the oldest and is the first to be closed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from tenantproxy.errors import BorrowTimeout, PoolClosed
from tenantproxy.pool.budget import TargetBudget
from tenantproxy.pool.connector import Connector
from tenantproxy.pool.states import ALLOWED_TRANSITIONS, Backend, BackendState
from tenantproxy.pool.waiting import Waiter, WaitQueue

C = TypeVar("C")

logger = logging.getLogger(__name__)

_CONNECTING = BackendState.CONNECTING
_IDLE = BackendState.IDLE
_LEASED = BackendState.LEASED
_CLOSING = BackendState.CLOSING
_CLOSED = BackendState.CLOSED


class PoolCore(Generic[C]):
    """The state of one pool of backends and the moves that keep it consistent."""

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
        may_warm_up: Callable[[], bool] = lambda: True,
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
        # False while the owner knows the target to be down: warming up could only fail.
        self._may_warm_up = may_warm_up
        self._idle: deque[Backend[C]] = deque()
        self._leased: set[Backend[C]] = set()
        self._connecting: set[Backend[C]] = set()
        self._closing: set[Backend[C]] = set()
        self._size = 0
        self._waiting: WaitQueue[C] = WaitQueue(
            self, budget, timed_out=self._count_timeout, gave_up=self._regrant
        )
        self._n_warming = 0
        self._is_closed = False
        self._drained: asyncio.Event | None = None  # set by _move once closing and drained
        self._closed: asyncio.Event | None = None  # set when close() has finished
        self._background: set[asyncio.Task[None]] = set()
        self._leased_total = 0
        self._timeouts_total = 0
        self._connect_failures_total = 0
        self._adopted_total = 0
        self._borrow_latency_us_last = 0
        budget.register(self)

    # -- errors -------------------------------------------------------------------------------

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(f"pool {self.name!r} is closed")

    def _count_timeout(self) -> BorrowTimeout:
        """A caller waiting for a lease ran out of time: counted, and the error it gets."""
        self._timeouts_total += 1
        return BorrowTimeout(f"pool {self.name!r}: no backend within {self._borrow_timeout_s} s")

    # -- slots and hand-off -------------------------------------------------------------------

    def _has_room(self) -> bool:
        return self._size + len(self._closing) < self._max_size

    def _new_backend(self) -> Backend[C]:
        """A CONNECTING backend; the caller has a pool slot and a budget slot for it."""
        backend: Backend[C] = Backend()
        self._connecting.add(backend)
        self._size += 1
        return backend

    def take_budget_slot(self, waiter: Waiter) -> bool:
        """Called by the budget: gives ``waiter`` a budget slot if this pool can use it now."""
        if waiter.future.done() or self._is_closed or not self._has_room():
            return False
        waiter.future.set_result(self._new_backend())
        return True

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
            self._waiting.queue_all_for_budget()
        else:
            waiter = self._waiting.pop_live()
            if waiter is None:
                self._budget.return_slot()
            else:
                waiter.future.set_result(self._new_backend())

    def _recycle(self, backend: Backend[C]) -> bool:
        """A healthy LEASED backend comes back; True when the caller must close it instead."""
        if self._is_closed:
            return True
        waiter = self._waiting.pop_live()
        if waiter is not None:
            waiter.future.set_result(backend)  # stays LEASED, now for the waiter
            return False
        if len(self._idle) >= self._max_idle or self._budget.waiting:
            return True  # over max_idle, or another pool on the target needs the slot
        backend.idle_since = self._clock()
        self._move(backend, _IDLE)
        return False

    def _regrant(self, backend: Backend[C]) -> None:
        """Passes on what a waiter was given and can no longer use."""
        if backend.state is _CONNECTING:
            self._abandon(backend)
        elif self._recycle(backend):
            self._move(backend, _CLOSING)
            self._spawn(self._close(backend))

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

    async def _close_all(self, backends: list[Backend[C]]) -> None:
        for backend in backends:
            if backend.state is not _CLOSING:
                self._move(backend, _CLOSING)  # now, so that no one else can take them
        await self._gather([self._close(b) for b in backends])

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _shielded(self, coroutine: Coroutine[Any, Any, None]) -> None:
        await asyncio.shield(self._spawn(coroutine))

    @staticmethod
    async def _gather(coroutines: list[Coroutine[Any, Any, None]]) -> None:
        if len(coroutines) == 1:
            await coroutines[0]
        elif coroutines:
            await asyncio.gather(*coroutines)
