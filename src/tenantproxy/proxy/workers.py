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


def cpus_available() -> int:
    """The CPUs this process may run on (its affinity mask, which a container or taskset
    narrows), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    for number, endpoint in enumerate(config.endpoints):
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((endpoint.host, endpoint.port))
        except OSError as exc:
            sock.close()
            for other in reserved:
                other.close()
            cause = f"cannot listen on {endpoint.host}:{endpoint.port}: {exc.strerror}"
            raise SettingError(("endpoints", number, "port"), cause) from None
        reserved.append(sock)
        endpoints.append(endpoint.model_copy(update={"port": sock.getsockname()[1]}))
    return config.model_copy(update={"endpoints": endpoints}), reserved


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
) -> int:
    """Forks ``count`` workers and coordinates them until they have all exited."""
    config, reserved = reserve_ports(config)
    links: list[tuple[int, socket.socket]] = []
    for index in range(count):
        parent_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: nothing of the parent's but the config and its link
            parent_end.close()
            for sock in reserved:
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
