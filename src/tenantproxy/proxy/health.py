"""Health checks of the targets, and learning each target's max_connections.

Every health_check_interval_s the proxy logs in to each target with the monitor account and
pings it. A target that fails is skipped by the router until a check succeeds again; sessions
already relaying keep their backends. The first successful check reads @@max_connections and
sets the target's budget to max_connections_percent of it (RDS Proxy's rule).

Passive health: a lease whose new backend cannot reach its target (refused, timed out, reset
during the login) marks the target unhealthy at once (``set_target_health``), without waiting
for the next check; only a check that passes brings it back. A check that passes while such a
failure happened is not believed: it may have pinged the target just before it died.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import ssl
import time
from collections.abc import Callable

from tenantproxy.errors import BackendError
from tenantproxy.proxy.backends import (
    BackendConnection,
    BackendCredentials,
    BackendProfile,
)
from tenantproxy.proxy.connector import open_backend
from tenantproxy.proxy.routing import TargetState
from tenantproxy.wire.mysql import commands
from tenantproxy.wire.mysql.constants import UTF8MB4_GENERAL_CI, CapabilityFlags
from tenantproxy.wire.mysql.errors import ProtocolError

# The monitor needs none of the relayed capabilities.
_MONITOR_PROFILE = BackendProfile(CapabilityFlags(0), UTF8MB4_GENERAL_CI)


def set_target_health(
    state: TargetState, is_healthy: bool, *, cause: str, log: logging.Logger
) -> bool:
    """Moves a target to healthy or unhealthy: the one place that does, so that each change is
    logged once (a WARNING with its cause, not one per failed login) and counted. True when
    the target's health changed."""
    if state.is_healthy == is_healthy:
        return False
    state.is_healthy = is_healthy
    state.health_changed_at = time.monotonic()
    if is_healthy:
        state.went_healthy_total += 1
    else:
        state.went_unhealthy_total += 1
    now = "healthy" if is_healthy else "unhealthy"
    log.warning("target %s is now %s: %s", state.target.name, now, cause)
    return True


class HealthChecker:
    def __init__(
        self,
        targets: list[TargetState],
        monitor: BackendCredentials | None,
        *,
        tls_context: ssl.SSLContext | None,
        max_connections_percent: int,
        log: logging.Logger,
        share: Callable[[int], int] = lambda budget: budget,
    ) -> None:
        self._targets = targets
        # This process's part of a target's budget (workers.py: the workers split it).
        self._share = share
        self._monitor = monitor
        self._tls_context = tls_context
        self._max_connections_percent = max_connections_percent
        self._log = log
        self._has_read_max_connections: set[str] = set()
        self._checks_asked: dict[str, asyncio.Task[None]] = {}
        for state in targets:
            state.request_check = functools.partial(self._check_soon, state)

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(state) for state in self._targets))

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                await self.check_all()

    async def check(self, state: TargetState) -> None:
        started_at = time.monotonic()
        try:
            is_healthy = await self._probe(state)
            cause = "the health check passed"
        except (BackendError, ProtocolError, OSError, TimeoutError) as exc:
            self._log.debug("health check of %s failed: %s", state.target.name, exc)
            is_healthy, cause = False, f"the health check failed: {exc}"
        if is_healthy and state.health_changed_at > started_at:
            return  # a failed connect during this check outweighs its success
        set_target_health(state, is_healthy, cause=cause, log=self._log)

    def _check_soon(self, state: TargetState) -> None:
        """One extra check of a target now (a lease found one of its idle backends dead); at
        most one at a time per target."""
        name = state.target.name
        if name in self._checks_asked:
            return
        task = asyncio.get_running_loop().create_task(self.check(state))
        self._checks_asked[name] = task
        task.add_done_callback(lambda _: self._checks_asked.pop(name, None))

    async def _probe(self, state: TargetState) -> bool:
        target = state.target
        if self._monitor is None:
            # Without a monitor account, a target that answers TCP counts as alive.
            _, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port), 5)
            writer.close()
            return True
        backend = await open_backend(
            target,
            self._monitor,
            _MONITOR_PROFILE,
            tls_context=self._tls_context,
            max_packet_bytes=1024 * 1024,
        )
        state.server_version = backend.server_version
        state.server_capabilities = backend.server_capabilities
        try:
            await asyncio.wait_for(backend.run_simple_command(commands.com_ping()), 5)
            if target.name not in self._has_read_max_connections:
                await self._learn_max_connections(state, backend)
        finally:
            backend.close()
        return True

    async def _learn_max_connections(self, state: TargetState, backend: BackendConnection) -> None:
        value = await backend.select_value("SELECT @@max_connections")
        if value is None:
            return
        allowed = max(1, math.floor(int(value) * self._max_connections_percent / 100))
        state.budget.max_connections = self._share(allowed)
        self._has_read_max_connections.add(state.target.name)
        self._log.info(
            "target %s: max_connections=%s, the proxy uses at most %d (this process %d)",
            state.target.name,
            value.decode(),
            allowed,
            state.budget.max_connections,
        )
        if state.budget.max_connections == 0:
            self._log.warning(
                "target %s: its budget is smaller than the workers; this one opens no backend"
                " there (docs/decisions/0007-workers.md)",
                state.target.name,
            )
