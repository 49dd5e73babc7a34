"""``workers = N``: one proxy served by N processes, each with its own SO_REUSEPORT listener
per endpoint (docs/decisions/0007-workers.md).

The parent process binds each endpoint's port first, without listening, so that port 0 becomes
one free port for every worker and no other program can take it while the proxy runs. It then
forks the workers, before any event loop or thread exists, and becomes their coordinator
(coordination.py): it counts each tenant's clients across workers, routes a KILL to the worker
that serves the session, serves the one /metrics endpoint, and on SIGTERM asks every worker to
drain. A worker that dies stops the whole proxy: its supervisor (systemd, the stack) restarts
it, with the limits intact, rather than a half-proxy that runs on.

What the workers do not ask each other: each target's budget (max_connections_percent) is split
into fixed shares (``WorkerPlace.share``), whose sum is the budget.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from tenantproxy.config import ProxyConfig
from tenantproxy.errors import SettingError
from tenantproxy.proxy.kill import SESSION_ID_BASE, SESSION_ID_LIMIT


@dataclass(frozen=True)
class WorkerPlace:
    """Which of the proxy's worker processes this is; ``SINGLE`` when there is one."""

    index: int = 0
    count: int = 1

    @property
    def is_single(self) -> bool:
        return self.count == 1

    def share(self, total: int) -> int:
        """This worker's part of a limit split in fixed shares: the parts differ by at most one
        and add up to ``total``."""
        return total // self.count + (1 if self.index < total % self.count else 0)

    def first_session_id(self) -> int:
        """Session ids interleave: worker i hands out BASE + i, BASE + i + N, ... so the id a
        client names in a KILL says which worker serves it (``owner_of``)."""
        return SESSION_ID_BASE + self.index

    def last_session_id(self) -> int:
        """The highest id this worker may hand out (below SESSION_ID_LIMIT)."""
        span = SESSION_ID_LIMIT - 1 - self.first_session_id()
        return self.first_session_id() + span - span % self.count

    def owner_of(self, session_id: int) -> int:
        return (session_id - SESSION_ID_BASE) % self.count


SINGLE = WorkerPlace()


def reserve_ports(config: ProxyConfig) -> tuple[ProxyConfig, list[socket.socket]]:
    """Binds each endpoint's port (SO_REUSEPORT, not listening) in the parent: the config that
    comes back names the bound ports, which the workers then listen on too."""
    reserved: list[socket.socket] = []
    endpoints = []
    try:
        for number, endpoint in enumerate(config.endpoints):
            loc = ("endpoints", number, "port")
            sock = bind(endpoint.host, endpoint.port, loc, is_shared=True)
            reserved.append(sock)
            endpoints.append(endpoint.model_copy(update={"port": sock.getsockname()[1]}))
    except SettingError:
        for sock in reserved:
            sock.close()
        raise
    return config.model_copy(update={"endpoints": endpoints}), reserved


def bind(host: str, port: int, loc: tuple[str | int, ...], *, is_shared: bool) -> socket.socket:
    """A TCP socket bound to host:port (SO_REUSEPORT when ``is_shared``); SettingError at
    ``loc`` when the port cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if is_shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        # Worded as uvloop words it for a single process (libuv's lower-case messages).
        reason = (exc.strerror or str(exc)).lower()
        raise SettingError(loc, f"cannot listen on {host}:{port}: {reason}") from None
    return sock


# A worker: runs one proxy process on its place and its end of the coordinator's socket;
# returns the process's exit status.
WorkerMain = Callable[[ProxyConfig, WorkerPlace, socket.socket], int]
# The coordinator: runs in the parent over the workers' (pid, socket); returns the exit status.
CoordinatorMain = Callable[[ProxyConfig, list[tuple[int, socket.socket]]], int]


def run_workers(
    config: ProxyConfig,
    count: int,
    worker_main: WorkerMain,
    coordinator_main: CoordinatorMain,
    log: logging.Logger,
    parent_only: list[socket.socket],
) -> int:
    """Forks ``count`` workers and coordinates them until they have all exited. The sockets
    in ``parent_only`` (the coordinator's own listeners) are closed in the workers."""
    config, reserved = reserve_ports(config)
    links: list[tuple[int, socket.socket]] = []
    for index in range(count):
        parent_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: nothing of the parent's but the config and its link
            parent_end.close()
            for sock in [*reserved, *parent_only]:
                sock.close()
            for _, other in links:
                other.close()
            _exit_as_worker(worker_main, config, WorkerPlace(index, count), worker_end, log)
        worker_end.close()
        links.append((pid, parent_end))
    try:
        return coordinator_main(config, links)
    finally:
        for sock in reserved:
            sock.close()


def _exit_as_worker(
    worker_main: WorkerMain,
    config: ProxyConfig,
    place: WorkerPlace,
    link: socket.socket,
    log: logging.Logger,
) -> None:
    """Runs the worker and ends its process, never returning into the parent's code."""
    status = 1
    try:
        # The terminal's Ctrl-C reaches every process of the group; the coordinator turns it
        # into the SIGTERM it sends each worker, so a worker ignores its own copy.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        status = worker_main(config, place, link)
    except BaseException:
        log.exception("worker %d failed", place.index)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
