"""Health checks of the targets, and learning each target's max_connections.

Every health_check_interval_s the proxy logs in to each target with the monitor account and
pings it. A target that fails is skipped by the router until a check succeeds again; sessions
already relaying keep their backends. The first successful check reads @@max_connections and
sets the target's budget to max_connections_percent of it (RDS Proxy's rule).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl

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


class HealthChecker:
    def __init__(
        self,
        targets: list[TargetState],
        monitor: BackendCredentials | None,
        *,
        tls_context: ssl.SSLContext | None,
        max_connections_percent: int,
        log: logging.Logger,
    ) -> None:
        self._targets = targets
        self._monitor = monitor
        self._tls_context = tls_context
        self._max_connections_percent = max_connections_percent
        self._log = log
        self._has_read_max_connections: set[str] = set()

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(state) for state in self._targets))

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                await self.check_all()

    async def check(self, state: TargetState) -> None:
        try:
            is_healthy = await self._probe(state)
        except (BackendError, ProtocolError, OSError, TimeoutError) as exc:
            self._log.debug("health check of %s failed: %s", state.target.name, exc)
            is_healthy = False
        if is_healthy != state.is_healthy:
            self._log.warning(
                "target %s is now %s", state.target.name, "healthy" if is_healthy else "unhealthy"
            )
        state.is_healthy = is_healthy

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
        state.budget.max_connections = allowed
        self._has_read_max_connections.add(state.target.name)
        self._log.info(
            "target %s: max_connections=%s, the proxy uses at most %d",
            state.target.name,
            value.decode(),
            allowed,
        )
