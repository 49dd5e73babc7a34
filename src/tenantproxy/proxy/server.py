"""The proxy process: listeners per endpoint, the shared context, and a graceful shutdown.

SIGTERM: stop accepting, let sessions finish within shutdown_grace_s, then close the rest and
the pools.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenantproxy.config import EndpointConfig, ProxyConfig
from tenantproxy.errors import SettingError
from tenantproxy.observability.metrics import Metrics
from tenantproxy.observability.prometheus import collected, serve_metrics
from tenantproxy.pool import run_maintenance
from tenantproxy.proxy.admission import Admission
from tenantproxy.proxy.backends import MARIADB_RELAYED_CAPABILITIES, RELAYED_CAPABILITIES
from tenantproxy.proxy.client_errors import ClientErrorLog
from tenantproxy.proxy.client_session import ClientSession
from tenantproxy.proxy.exported_metrics import proxy_families
from tenantproxy.proxy.health import HealthChecker
from tenantproxy.proxy.kill import KillRequest, kill_served_here
from tenantproxy.proxy.link import Handler, Link, LinkClosed
from tenantproxy.proxy.routing import PoolRegistry, Router
from tenantproxy.proxy.secret_lookup import SecretLookup
from tenantproxy.proxy.workers import SINGLE, WorkerPlace
from tenantproxy.wire.mysql.constants import CapabilityFlags

if TYPE_CHECKING:
    from tenantproxy.observability.tracing import Tracing
    from tenantproxy.proxy.token_login import TokenLogins

# What the proxy offers clients: what it relays (RELAYED_CAPABILITIES) plus the login basics,
# and zlib compression of the client leg, which the proxy does itself (client_channel.py).
# MariaDB's extended capabilities come on top when all targets have them (offered_capabilities).
# Not offered: zstd compression, query attributes and optional metadata, which MariaDB lacks.
PROXY_CAPABILITIES = (
    (RELAYED_CAPABILITIES & ~MARIADB_RELAYED_CAPABILITIES)
    | CapabilityFlags.CLIENT_COMPRESS
    | CapabilityFlags.CLIENT_LONG_PASSWORD
    | CapabilityFlags.CLIENT_CONNECT_WITH_DB
    | CapabilityFlags.CLIENT_PROTOCOL_41
    | CapabilityFlags.CLIENT_INTERACTIVE
    | CapabilityFlags.CLIENT_TRANSACTIONS
    | CapabilityFlags.CLIENT_SECURE_CONNECTION
    | CapabilityFlags.CLIENT_PLUGIN_AUTH
    | CapabilityFlags.CLIENT_CONNECT_ATTRS
    | CapabilityFlags.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CapabilityFlags.CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS
)
_IDLE_SWEEP_INTERVAL_S = 5.0
# Announced until a target has told its own version ("5.5.5-" is how MariaDB marks itself).
_FALLBACK_SERVER_VERSION = "5.5.5-10.11.0-MariaDB-tenantproxy"


@dataclass
class ProxyContext:
    """What every session shares; built once by app.py."""

    config: ProxyConfig
    router: Router
    pools: PoolRegistry
    secrets: SecretLookup
    client_tls_context: ssl.SSLContext | None
    log: logging.Logger
    # Token login; None when the config has no iam_auth section.
    token_logins: TokenLogins | None = None
    # host:port names a token may be signed for; the endpoints' are added once bound.
    token_hosts: set[str] = field(default_factory=set)
    metrics: Metrics = field(default_factory=Metrics)
    # OpenTelemetry spans per sampled login; None: tracing is off and sessions do no tracing work.
    tracing: Tracing | None = None
    advertised_capabilities: CapabilityFlags = PROXY_CAPABILITIES
    sessions: dict[int, ClientSession] = field(default_factory=dict)
    # Logged-in client connections per tenant (DB user) in this process; the coordinator
    # holds the whole proxy's when there are several workers (coordination.py).
    tenant_clients: Counter[str] = field(default_factory=Counter)
    # Which worker process this is (workers.py), and its link to the coordinator (None: the
    # only process).
    place: WorkerPlace = SINGLE
    link: Link | None = None
    # Session ids, given to clients in the handshake, lie above any backend's thread id (kill.py).
    _session_ids: itertools.count[int] = field(init=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    client_errors: ClientErrorLog = field(init=False)
    # Sessions before their login packet, bounded apart from max_clients (admission.py).
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.client_errors = ClientErrorLog(self.log, self.metrics)
        self.admission = Admission(max_unproven=self.config.max_clients)
        self._session_ids = itertools.count(self.place.first_session_id(), self.place.count)

    def client_slots_taken(self) -> int:
        """Sessions counted against max_clients: all but those before their login packet."""
        return len(self.sessions) - len(self.admission)

    def server_version(self) -> str:
        return (
            self.config.server_version or self.router.server_version() or _FALLBACK_SERVER_VERSION
        )

    def offered_capabilities(self) -> CapabilityFlags:
        """What a new client's handshake offers: advertised_capabilities, plus the MariaDB
        extended capabilities that every target offered in its own handshake."""
        shared = self.router.shared_capabilities() & MARIADB_RELAYED_CAPABILITIES
        return self.advertised_capabilities | shared

    async def admit_tenant_client(self, db_user: str) -> bool:
        """Counts one more client of a tenant; False (and no count) past its cap, which the
        coordinator checks across workers."""
        cap = self.config.max_clients_per_tenant
        if cap is not None and self.link is not None:
            try:
                if not await self.link.call("admit_client", user=db_user):
                    return False
            except LinkClosed:  # the proxy is going down
                return False
        elif cap is not None and self.tenant_clients[db_user] >= cap:
            return False
        self.tenant_clients[db_user] += 1
        return True

    def release_tenant_client(self, db_user: str) -> None:
        self.tenant_clients[db_user] -= 1
        if self.tenant_clients[db_user] <= 0:
            del self.tenant_clients[db_user]
        if self.link is not None and self.config.max_clients_per_tenant is not None:
            self.link.tell("release_client", user=db_user)

    def next_session_id(self) -> int:
        session_id = next(self._session_ids)
        if session_id > self.place.last_session_id():  # after 2^30 sessions: from the base
            self._session_ids = itertools.count(self.place.first_session_id(), self.place.count)
            session_id = next(self._session_ids)
        while session_id in self.sessions:  # a long-lived session may still hold an old id
            session_id = next(self._session_ids)
        return session_id

    def is_served_elsewhere(self, session_id: int) -> bool:
        """A session id another worker handed out (a KILL names it)."""
        return self.link is not None and self.place.owner_of(session_id) != self.place.index

    def link_handlers(self) -> dict[str, Handler]:
        """What the coordinator may ask this worker."""

        async def kill(session_id: int, user: str, is_query_only: bool, force: str) -> bool:
            request = KillRequest(session_id, is_query_only, force)
            return await kill_served_here(self.sessions, request, user, self.log)

        def shed(target: str, user: str) -> bool:
            # A client of another worker waits for one of this tenant's backends.
            return any(pool.close_oldest_idle() for pool in self.pools.pools_of(target, user))

        return {
            "kill": kill,
            "metrics": lambda: collected(proxy_families(self)),
            "shed": shed,
        }

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Runs a coroutine in the background, keeping it referenced and logging its failure."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("background task failed", exc_info=task.exception())


class ProxyServer:
    """Listens on every endpoint and runs the background loops."""

    def __init__(self, context: ProxyContext, health: HealthChecker) -> None:
        self.context = context
        self._health = health
        self._listeners: list[asyncio.Server] = []
        self._stop = asyncio.Event()
        self.bound_addresses: dict[str, tuple[str, int]] = {}

    async def start(self) -> None:
        # Bound first, serving after the health check: a port in use fails before anything
        # else happens, and the first clients meet targets whose health is known.
        loop = asyncio.get_running_loop()
        for number, endpoint in enumerate(self.context.config.endpoints):
            try:
                listener = await loop.create_server(
                    self._session_factory(endpoint),
                    endpoint.host,
                    endpoint.port,
                    reuse_address=True,
                    # Workers listen on one port each, the kernel spreading connections.
                    reuse_port=not self.context.place.is_single,
                    backlog=4096,
                    start_serving=False,
                )
            except OSError as exc:
                cause = f"cannot listen on {endpoint.host}:{endpoint.port}: {exc.strerror}"
                raise SettingError(("endpoints", number, "port"), cause) from None
            self._listeners.append(listener)
            host, port = listener.sockets[0].getsockname()[:2]
            self.bound_addresses[endpoint.name] = (host, port)
            self.context.token_hosts.update({f"{host}:{port}", f"localhost:{port}"})
        await self._start_metrics()
        await self._health.check_all()
        for listener in self._listeners:
            await listener.start_serving()

    async def _start_metrics(self) -> None:
        port = self.context.config.metrics_port
        if port is None:
            return
        try:
            families = proxy_families(self.context)
            server, address = await serve_metrics("127.0.0.1", port, families)
        except OSError as exc:
            cause = f"cannot listen on 127.0.0.1:{port}: {exc.strerror}"
            raise SettingError(("metrics_port",), cause) from None
        self._listeners.append(server)
        self.bound_addresses["metrics"] = address

    def _session_factory(self, endpoint: EndpointConfig) -> Any:
        context = self.context

        def new_session() -> ClientSession:
            context.metrics.count("ClientConnectionsReceived")
            return ClientSession(context, endpoint)

        return new_session

    async def serve(self) -> None:
        """Runs until ``stop()``; then shuts down gracefully."""
        config = self.context.config
        background = [
            asyncio.create_task(self._health.run(config.health_check_interval_s, self._stop)),
            asyncio.create_task(
                run_maintenance(
                    self.context.pools.pools, config.health_check_interval_s, self._stop
                )
            ),
            asyncio.create_task(self._close_idle_clients()),
        ]
        await self._stop.wait()
        await self._shut_down(config.shutdown_grace_s)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if self.context.tracing is not None:
            self.context.tracing.shutdown()  # exports the spans still queued

    def stop(self) -> None:
        self._stop.set()

    async def _close_idle_clients(self) -> None:
        timeout_s = self.context.config.idle_client_timeout_s
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), min(_IDLE_SWEEP_INTERVAL_S, timeout_s))
            except TimeoutError:
                now = time.monotonic()
                for session in list(self.context.sessions.values()):
                    if not session.is_idle:
                        continue
                    idle_s = now - session.last_activity
                    if idle_s > timeout_s:
                        session.close_for_idleness()
                    elif idle_s > session.own_wait_timeout_s:
                        # As MariaDB ends a connection idle past its wait_timeout: no word.
                        session.close_now()

    async def _shut_down(self, grace_s: float) -> None:
        for listener in self._listeners:
            listener.close()
        sessions = list(self.context.sessions.values())
        self.context.log.info("shutting down: %d sessions, %.0f s grace", len(sessions), grace_s)
        if sessions:
            await asyncio.wait([s.closed for s in sessions], timeout=grace_s)
        for session in list(self.context.sessions.values()):
            session.close_now()
        await asyncio.gather(*(pool.close() for pool in self.context.pools.pools()))
        for listener in self._listeners:
            await listener.wait_closed()
