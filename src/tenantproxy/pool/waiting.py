"""The callers of one pool waiting for a lease, oldest first.

Rules:
- A waiter is a future bounded by a timer (``call_at``), never by a task.
- A waiter waits for a backend of its pool (handed over LEASED) or, when the pool has room but
  the target has none, also in the budget's queue for a slot (given a CONNECTING backend).
- Entries of waiters that gave up stay in the deque and are skipped: their future is done. The
  deque is cleared once no one waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from tenantproxy.pool.budget import TargetBudget
    from tenantproxy.pool.core import PoolCore
    from tenantproxy.pool.states import Backend

C = TypeVar("C")


class Waiter:
    """A caller waiting for a backend (handed over LEASED) or slots (a CONNECTING backend)."""

    __slots__ = ("future", "is_budget_waiter", "pool")

    def __init__(self, future: asyncio.Future[Backend[Any]], pool: PoolCore[Any]) -> None:
        self.future = future
        self.pool = pool
        self.is_budget_waiter = False


class WaitQueue(Generic[C]):
    """The FIFO waiters of one pool."""

    __slots__ = ("_budget", "_count", "_entries", "_gave_up", "_pool", "_timed_out")

    def __init__(
        self,
        pool: PoolCore[C],
        budget: TargetBudget,
        *,
        timed_out: Callable[[], BaseException],
        gave_up: Callable[[Backend[C]], None],
    ) -> None:
        """``timed_out`` makes a timed-out waiter's error; ``gave_up`` takes back what a waiter
        was given but was cancelled before it could use."""
        self._pool = pool
        self._budget = budget
        self._timed_out = timed_out
        self._gave_up = gave_up
        self._entries: deque[Waiter] = deque()
        self._count = 0

    @property
    def count(self) -> int:
        """How many callers wait now (entries of those that gave up are not counted)."""
        return self._count

    async def wait(self, deadline: float, *, for_budget: bool) -> Backend[C]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Backend[C]] = loop.create_future()
        waiter = Waiter(future, self._pool)
        self._entries.append(waiter)
        self._count += 1
        if for_budget:
            self._budget.wait(waiter)
        timer = loop.call_at(deadline, self._expire, future)
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelled after being served but before waking: pass what we got on.
            if future.done() and not future.cancelled() and future.exception() is None:
                self._gave_up(future.result())
            raise
        finally:
            timer.cancel()
            self._budget.forget(waiter)
            self._count -= 1
            if not self._count:
                self._entries.clear()  # drop the stale entries of waiters that gave up

    def _expire(self, future: asyncio.Future[Backend[C]]) -> None:
        if not future.done():
            future.set_exception(self._timed_out())

    def pop_live(self) -> Waiter | None:
        """The oldest waiter still waiting, taken out of the queue; None if there is none."""
        entries = self._entries
        while entries:
            waiter = entries.popleft()
            if not waiter.future.done():
                return waiter
        return None

    def queue_all_for_budget(self) -> None:
        """The pool has room again but the target has none: every waiter now needs a budget
        slot, so those not yet in the budget's queue join it."""
        for waiter in self._entries:
            if not waiter.future.done() and not waiter.is_budget_waiter:
                self._budget.wait(waiter)

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """Every waiter gets its own ``error()``; the queue is emptied."""
        for waiter in self._entries:
            if not waiter.future.done():
                waiter.future.set_exception(error())
        self._entries.clear()
