"""max_backends_per_tenant across worker processes: a slot from the coordinator for every
backend a worker opens (or takes over for another tenant), given back when it closes.

Within one process the cap is the pool's maximum (routing.PoolRegistry). With several workers
each pool still has that maximum, and before a connect the worker also asks the coordinator
(coordination.py), which counts each (target, tenant)'s backends over all workers. A request
past the cap waits there, first come first served, and the coordinator asks the workers that
hold the tenant's backends to close an idle one, so that a backend idle in one worker does not
leave a client of another waiting until its borrow timeout. One round trip per backend opened,
which pooling makes rare; none per transaction.

The worker side remembers which (target, tenant) each open connection counts for, so that a
slot goes back exactly once, whichever way the connection ends.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenantproxy.errors import BackendError
from tenantproxy.proxy.link import Link, LinkClosed


class TenantBackendSlots:
    """A worker's end: takes and gives back slots of the coordinator's per-tenant count."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._tickets = itertools.count(1)
        self._holders: dict[int, tuple[Any, str, str]] = {}  # id(connection) → it, target, user

    async def take(self, target: str, user: str) -> None:
        """Waits for a slot. Cancelled (the borrow timed out, the client left), the request is
        withdrawn; a slot granted meanwhile goes back."""
        ticket = next(self._tickets)
        call = asyncio.ensure_future(
            self._link.call("take_backend", target=target, user=user, ticket=ticket)
        )
        try:
            is_granted = await asyncio.shield(call)
        except asyncio.CancelledError:
            self._link.tell("drop_ticket", ticket=ticket)
            call.add_done_callback(lambda done: self._late_grant(done, target, user))
            raise
        except LinkClosed:
            is_granted = False
        if not is_granted:  # the coordinator is gone: the proxy is stopping
            raise BackendError("no backend slot: the proxy is stopping")

    def _late_grant(self, call: asyncio.Future[Any], target: str, user: str) -> None:
        if not call.cancelled() and call.exception() is None and call.result():
            self._link.tell("release_backend", target=target, user=user)

    async def take_now(self, target: str, user: str) -> bool:
        """A slot if one is free at once (taking over another tenant's idle backend is only
        worth it then); False otherwise."""
        try:
            return bool(await self._link.call("take_backend_now", target=target, user=user))
        except LinkClosed:
            return False

    def give_back_unused(self, target: str, user: str) -> None:
        """A slot taken for a connect that failed, or a takeover that did not happen."""
        self._link.tell("release_backend", target=target, user=user)

    def hold(self, connection: Any, target: str, user: str) -> None:
        """The connection now counts for (target, user)."""
        self._holders[id(connection)] = (connection, target, user)

    def release(self, connection: Any) -> None:
        """The connection closes: its slot goes back (once; unknown connections hold none)."""
        held = self._holders.pop(id(connection), None)
        if held is not None:
            self._link.tell("release_backend", target=held[1], user=held[2])

    def move(self, connection: Any, target: str, user: str) -> None:
        """A connection taken over for ``user``, whose slot it already has (``take_now``): the
        slot of the tenant it served goes back."""
        self.release(connection)
        self.hold(connection, target, user)


Shed = Callable[[int, str, str], Awaitable[bool]]


@dataclass
class _Request:
    worker: int
    ticket: int
    granted: asyncio.Future[bool]


class TenantBackendCounts:
    """The coordinator's end: each (target, tenant)'s backends per worker, and the requests
    that wait for one, oldest first."""

    def __init__(self, cap: int, workers: int, shed: Shed) -> None:
        self._cap = cap
        self._workers = workers
        # Asks worker i to close one idle backend of (target, user); True when it had one.
        self._shed = shed
        self._held: dict[tuple[str, str], list[int]] = {}
        self._queues: dict[tuple[str, str], deque[_Request]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def held(self, target: str, user: str) -> int:
        return sum(self._held.get((target, user), ()))

    async def take(self, worker: int, target: str, user: str, ticket: int) -> bool:
        """True once the worker may open a backend for (target, user); False when withdrawn."""
        key = (target, user)
        if self.take_now(worker, target, user):
            return True
        request = _Request(worker, ticket, asyncio.get_running_loop().create_future())
        self._queues.setdefault(key, deque()).append(request)
        task = asyncio.get_running_loop().create_task(self._ask_to_shed(worker, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await request.granted

    def take_now(self, worker: int, target: str, user: str) -> bool:
        key = (target, user)
        if self._queues.get(key) or self.held(target, user) >= self._cap:
            return False
        self._count(worker, key, 1)
        return True

    def drop(self, worker: int, ticket: int) -> None:
        """The worker gave up waiting (its client's borrow timed out, or it left)."""
        for queue in self._queues.values():
            for request in queue:
                if request.worker == worker and request.ticket == ticket:
                    queue.remove(request)
                    request.granted.set_result(False)
                    return

    def release(self, worker: int, target: str, user: str) -> None:
        key = (target, user)
        self._count(worker, key, -1)
        self._grant(key)

    def forget(self, worker: int) -> None:
        """A worker that is gone: its backends closed with it, its requests with them."""
        for held in self._held.values():
            held[worker] = 0
        for queue in self._queues.values():
            for request in [r for r in queue if r.worker == worker]:
                queue.remove(request)
                request.granted.set_result(False)
        for key in list(self._queues):
            self._grant(key)

    def _count(self, worker: int, key: tuple[str, str], delta: int) -> None:
        held = self._held.setdefault(key, [0] * self._workers)
        held[worker] = max(0, held[worker] + delta)

    def _grant(self, key: tuple[str, str]) -> None:
        queue = self._queues.get(key)
        while queue and self.held(*key) < self._cap:
            request = queue.popleft()
            self._count(request.worker, key, 1)
            request.granted.set_result(True)
        if not queue:
            self._queues.pop(key, None)

    async def _ask_to_shed(self, requester: int, key: tuple[str, str]) -> None:
        """Asks the workers holding the tenant's backends, most first (the requester last: its
        other pools of the tenant, with another profile, may have one idle), to close an
        idle one, until one does or the request is served."""
        held = self._held.get(key, [0] * self._workers)
        order = sorted(
            (w for w in range(self._workers) if held[w] > 0),
            key=lambda w: (w == requester, -held[w]),
        )
        for worker in order:
            if not self._queues.get(key):
                return
            if await self._shed(worker, *key):
                return
