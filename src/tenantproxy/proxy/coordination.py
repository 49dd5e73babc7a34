"""The coordinator: the parent process of ``workers = N`` (workers.py), one link per worker.

What it holds for the whole proxy, and why here:
- each tenant's logged-in clients, per worker (max_clients_per_tenant): a login asks before it
  is accepted, so the cap holds however SO_REUSEPORT spreads the tenant's connections;
- each (target, tenant)'s backends, per worker (max_backends_per_tenant, tenant_backends.py);
- which worker serves a session id (a KILL names it; workers.WorkerPlace.owner_of);
- the one /metrics endpoint: each scrape asks every worker for its metrics and sums them;
- the ready line, once every worker listens, and SIGTERM, passed on to every worker.

A worker that goes (its link closes) takes its counts with it. Outside a shutdown that stops
the proxy: the others are asked to drain and the exit status says it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenantproxy.config import ProxyConfig
from tenantproxy.errors import SettingError
from tenantproxy.observability.prometheus import (
    Family,
    Sample,
    collected,
    merged,
    serve_exposition,
)
from tenantproxy.proxy.exported_metrics import MERGED
from tenantproxy.proxy.link import Handler, Link, LinkClosed
from tenantproxy.proxy.tenant_backends import TenantBackendCounts
from tenantproxy.proxy.workers import WorkerPlace

Addresses = dict[str, tuple[str, int]]
# A worker too busy to answer a scrape within this is left out of it (Prometheus's own scrape
# timeout is 10 s by default).
_METRICS_TIMEOUT_S = 5.0


@dataclass
class _Worker:
    index: int
    pid: int
    link: Link = field(init=False)  # set right after: its first messages may come at once
    is_ready: asyncio.Event = field(default_factory=asyncio.Event)
    addresses: Addresses = field(default_factory=dict)
    tenant_clients: Counter[str] = field(default_factory=Counter)
    failure: tuple[tuple[Any, ...], str] | None = None  # a SettingError's (loc, cause)


class Coordinator:
    def __init__(
        self, config: ProxyConfig, log: logging.Logger, metrics: socket.socket | None = None
    ) -> None:
        self._config = config
        # The metrics_port, bound by the parent before the workers started.
        self._metrics_socket = metrics
        self._log = log
        self._workers: list[_Worker] = []
        self._stop = asyncio.Event()
        self._is_stopping = False
        self._own_addresses: Addresses = {}
        self._metrics_server: asyncio.Server | None = None
        cap = config.max_backends_per_tenant
        self._backends = None
        if cap is not None:
            self._backends = TenantBackendCounts(cap, config.worker_count, self._ask_to_shed)

    async def run(
        self, workers: list[tuple[int, socket.socket]], announce: Callable[[Addresses], None]
    ) -> int:
        """Until every worker has exited; the exit status (0: all drained after a SIGTERM)."""
        # Every worker is known before any link reads: a worker that fails at once (a setting
        # it cannot use) may say so before the coordinator has its link.
        self._workers = [_Worker(index, pid) for index, (pid, _) in enumerate(workers)]
        for worker, (_, sock) in zip(self._workers, workers, strict=True):
            worker.link = await Link.over(sock, self._handlers(worker.index), self._log)
        reading = [asyncio.create_task(w.link.run()) for w in self._workers]
        for worker, task in zip(self._workers, reading, strict=True):
            task.add_done_callback(functools.partial(self._lost, worker.index))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        try:
            if await self._all_ready(reading):
                await self._serve_metrics()
                announce(self._addresses())
                await self._until_stop_or_loss(reading)
        finally:
            if self._metrics_server is not None:
                self._metrics_server.close()
            self._stop_workers()
            await asyncio.gather(*reading, return_exceptions=True)
        statuses = [self._reap(worker) for worker in self._workers]
        self._raise_startup_failure()
        return 0 if self._is_stopping and not any(statuses) else 1

    # -- life ---------------------------------------------------------------------------------

    async def _all_ready(self, reading: list[asyncio.Task[None]]) -> bool:
        """True once every worker listens; False when one exits first (or a SIGTERM comes)."""
        ready = asyncio.create_task(self._every_worker_ready())
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait([ready, stop, *reading], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        ready.cancel()
        self._is_stopping = self._stop.is_set()
        return all(w.is_ready.is_set() for w in self._workers)

    async def _every_worker_ready(self) -> None:
        for worker in self._workers:
            await worker.is_ready.wait()

    async def _until_stop_or_loss(self, reading: list[asyncio.Task[None]]) -> None:
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait([stop, *reading], return_when=asyncio.FIRST_COMPLETED)
        if stop.done():
            self._is_stopping = True
        else:
            stop.cancel()
            lost = [w.index for w, r in zip(self._workers, reading, strict=True) if r.done()]
            self._log.error("worker %s exited: stopping the proxy", lost)

    def _stop_workers(self) -> None:
        """SIGTERM to each worker still there: each drains (shutdown_grace_s) and exits."""
        for worker in self._workers:
            if not worker.link.is_closed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)

    @staticmethod
    def _reap(worker: _Worker) -> int:
        # Its link closed: the process has exited, or is about to.
        _, status = os.waitpid(worker.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def _raise_startup_failure(self) -> None:
        """A worker that could not start for a setting: the one-line error a single process
        would give (app.run_proxy)."""
        for worker in self._workers:
            if worker.failure is not None:
                raise SettingError(*worker.failure)

    def _addresses(self) -> Addresses:
        """The endpoints (the same in every worker) and the coordinator's own listeners."""
        return {**self._workers[0].addresses, **self._own_addresses}

    # -- the one /metrics --------------------------------------------------------------------

    async def _serve_metrics(self) -> None:
        if self._metrics_socket is None:
            return
        server, address = await serve_exposition(self._metrics_socket, self._metrics_text)
        self._metrics_server = server
        self._own_addresses["metrics"] = address

    async def _metrics_text(self) -> bytes:
        """Every worker's metrics, summed (exported_metrics.MERGED says where not), with the
        coordinator's own process beside them: process_cpu_seconds_total is the whole proxy's."""
        live = [w for w in self._workers if not w.link.is_closed]
        answers = await asyncio.gather(
            *(asyncio.wait_for(w.link.call("metrics"), _METRICS_TIMEOUT_S) for w in live),
            return_exceptions=True,
        )
        parts = [a for a in answers if isinstance(a, list)]
        own = Family(
            "workers",
            "worker processes whose metrics this scrape sums",
            "gauge",
            lambda: [Sample("", len(parts))],
        )
        return merged([*parts, collected([own])], MERGED)

    # -- what the workers ask -----------------------------------------------------------------

    def _handlers(self, index: int) -> dict[str, Handler]:
        def ready(addresses: dict[str, list[Any]]) -> None:
            worker = self._workers[index]
            worker.addresses = {name: (host, port) for name, (host, port) in addresses.items()}
            worker.is_ready.set()

        def failed(loc: list[Any], cause: str) -> None:
            self._workers[index].failure = (tuple(loc), cause)

        handlers: dict[str, Handler] = {
            "ready": ready,
            "failed": failed,
            "admit_client": lambda user: self._admit_client(index, user),
            "release_client": lambda user: self._release_client(index, user),
            "kill": lambda **request: self._kill(request),
        }
        backends = self._backends
        if backends is not None:
            handlers |= {
                "take_backend": functools.partial(backends.take, index),
                "take_backend_now": functools.partial(backends.take_now, index),
                "drop_ticket": functools.partial(backends.drop, index),
                "release_backend": functools.partial(backends.release, index),
            }
        return handlers

    def _lost(self, index: int, _: object) -> None:
        """A worker's link closed: what it held is gone with it."""
        self._workers[index].tenant_clients.clear()
        if self._backends is not None:
            self._backends.forget(index)

    async def _ask_to_shed(self, index: int, target: str, user: str) -> bool:
        try:
            return bool(await self._workers[index].link.call("shed", target=target, user=user))
        except LinkClosed:
            return False

    def _admit_client(self, index: int, user: str) -> bool:
        cap = self._config.max_clients_per_tenant
        total = sum(w.tenant_clients[user] for w in self._workers if not w.link.is_closed)
        if cap is not None and total >= cap:
            return False
        self._workers[index].tenant_clients[user] += 1
        return True

    def _release_client(self, index: int, user: str) -> None:
        clients = self._workers[index].tenant_clients
        clients[user] -= 1
        if clients[user] <= 0:
            del clients[user]

    async def _kill(self, request: dict[str, Any]) -> bool:
        """A KILL of a session id another worker served: that worker's answer (False: it has
        no such session of the killer's tenant)."""
        owner = WorkerPlace(0, len(self._workers)).owner_of(request["session_id"])
        try:
            return bool(await self._workers[owner].link.call("kill", **request))
        except LinkClosed:
            return False
