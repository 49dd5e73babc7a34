"""Opening backends, and the connector the generic pool uses to open, reset and close them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable

from tenantproxy.errors import BackendAuthError, BackendError, TargetUnreachable
from tenantproxy.proxy.backends import (
    BASE_CAPABILITIES,
    BackendConnection,
    BackendCredentials,
    BackendLoginRejected,
    BackendProfile,
    Target,
)
from tenantproxy.proxy.tenant_backends import TenantBackendSlots
from tenantproxy.wire.mysql import commands
from tenantproxy.wire.mysql.client_connection import ClientConnection
from tenantproxy.wire.mysql.errors import ProtocolError

_CONNECT_TIMEOUT_S = 10.0
_CLOSE_TIMEOUT_S = 2.0
_ACCESS_DENIED = 1045
# TCP keepalive on every backend socket, so that a target that dies without a FIN or RST (power
# lost, a cable pulled, a frozen VM) is noticed on an idle backend: the first probe after 30 s of
# silence, then every 10 s; after 3 unanswered probes (60 s in all) the kernel drops the
# connection and the backend is broken. Linux's defaults (7,200 s, 75 s, 9) would take 2 h 11 min.
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3


async def open_backend(
    target: Target,
    credentials: BackendCredentials,
    profile: BackendProfile,
    *,
    tls_context: ssl.SSLContext | None,
    max_packet_bytes: int,
    init_query: str | None = None,
) -> BackendConnection:
    """Connects and logs in to a target; runs init_query on the new connection."""
    login = ClientConnection(
        username=credentials.username,
        password=credentials.password.encode(),
        database=credentials.database,
        capabilities=BASE_CAPABILITIES | profile.capabilities,
        character_set=profile.character_set,
        connect_attrs={"program_name": "tenantproxy"},
        use_tls=tls_context is not None,
        max_packet_bytes=max_packet_bytes,
    )
    backend = await _connect(target, lambda: BackendConnection(target, max_packet_bytes, login))
    backend.profile = profile
    try:
        await _log_in(backend, credentials.database, tls_context)
        _check_relayed_capabilities(backend, profile)
        if init_query:
            await backend.run_simple_command(commands.com_query(init_query))
        if profile.is_multiplexed:
            await backend.arm_session_tracking()
    except BaseException:
        backend.mark_broken()
        raise
    return backend


async def _connect(target: Target, protocol: Callable[[], BackendConnection]) -> BackendConnection:
    loop = asyncio.get_running_loop()
    try:
        _, backend = await asyncio.wait_for(
            loop.create_connection(protocol, target.host, target.port), _CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        cause = str(exc) or type(exc).__name__
        raise TargetUnreachable(
            f"cannot connect to {target.name} ({target.address}): {cause}"
        ) from None
    _enable_keepalive(backend)
    return backend


async def _log_in(
    backend: BackendConnection, database: str | None, tls_context: ssl.SSLContext | None
) -> None:
    """The server's own refusal (an ERR) goes up as it is; a login that the connection did not
    survive (reset, closed, timed out, TLS or protocol broken) means the target is unreachable."""
    target = backend.target
    try:
        await backend.log_in(database, tls_context)
    except BackendAuthError:
        raise
    except (BackendError, ProtocolError, OSError) as exc:
        cause = str(exc) or type(exc).__name__
        raise TargetUnreachable(
            f"{target.name} ({target.address}): login failed: {cause}"
        ) from None


def _enable_keepalive(backend: BackendConnection) -> None:
    transport = backend.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        # Closed already: a server that refused at once (ERROR 1040 as its greeting). The
        # login that follows says why.
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


def _check_relayed_capabilities(backend: BackendConnection, profile: BackendProfile) -> None:
    """The backend must have negotiated every relayed capability its client did, or its answers
    would not be what the client parses (a target that lost one since the proxy offered it)."""
    missing = profile.capabilities & ~backend.negotiated_capabilities
    if missing:
        raise BackendError(
            f"{backend.target.name} lacks capabilities the client negotiated: {missing.name}"
        )


class MysqlConnector:
    """What the generic pool needs to open, reset and close backends of one (target, user)."""

    def __init__(
        self,
        target: Target,
        credentials: Callable[[], Awaitable[BackendCredentials]],
        profile: BackendProfile,
        *,
        forget_credentials: Callable[[], None],
        tls_context: ssl.SSLContext | None,
        max_packet_bytes: int,
        init_query: str | None,
        db_user: str = "",
        tenant_slots: TenantBackendSlots | None = None,
    ) -> None:
        self.target = target
        self._db_user = db_user
        # Several workers with max_backends_per_tenant: a slot per backend (tenant_backends.py).
        self._tenant_slots = tenant_slots
        self._credentials = credentials
        self._forget_credentials = forget_credentials
        self._profile = profile
        self._tls_context = tls_context
        self._max_packet_bytes = max_packet_bytes
        self._init_query = init_query

    async def connect(self) -> BackendConnection:
        slots = self._tenant_slots
        if slots is None:
            return await self.connect_outside_pool()
        await slots.take(self.target.name, self._db_user)
        try:
            connection = await self.connect_outside_pool()
        except BaseException:
            slots.give_back_unused(self.target.name, self._db_user)
            raise
        slots.hold(connection, self.target.name, self._db_user)
        return connection

    async def connect_outside_pool(self) -> BackendConnection:
        """A backend that no cap counts (a one-off KILL on another target, closed at once)."""
        try:
            return await self._open(await self._credentials())
        except BackendLoginRejected as exc:
            if exc.error.error_code != _ACCESS_DENIED:
                raise
        # The password may have been rotated since it was read: read the secret once more.
        self._forget_credentials()
        return await self._open(await self._credentials())

    async def _open(self, credentials: BackendCredentials) -> BackendConnection:
        if not self._profile.has_database:
            credentials = BackendCredentials(credentials.username, credentials.password, None)
        return await open_backend(
            self.target,
            credentials,
            self._profile,
            tls_context=self._tls_context,
            max_packet_bytes=self._max_packet_bytes,
            init_query=self._init_query,
        )

    async def adopt(self, conn: BackendConnection) -> bool:
        """Takes over an idle backend of another user's pool on this target by logging it in
        again with COM_CHANGE_USER, instead of closing it and opening a new one. False when its
        profile differs (capabilities are fixed at connect) or the server refuses."""
        if conn.profile != self._profile or conn.is_broken:
            return False
        slots = self._tenant_slots
        if slots is not None and not await slots.take_now(self.target.name, self._db_user):
            return False  # the tenant has its backends: the pool waits for one instead
        is_adopted = False
        try:
            is_adopted = await self._log_in_again(conn)
        finally:
            if slots is not None and is_adopted:
                slots.move(conn, self.target.name, self._db_user)
            elif slots is not None:
                slots.give_back_unused(self.target.name, self._db_user)
        return is_adopted

    async def _log_in_again(self, conn: BackendConnection) -> bool:
        credentials = await self._credentials()
        database = credentials.database if self._profile.has_database else None
        try:
            await conn.change_user(
                BackendCredentials(credentials.username, credentials.password, database),
                self._profile.character_set,
            )
            if self._init_query:
                await conn.run_simple_command(commands.com_query(self._init_query))
            if self._profile.is_multiplexed:
                await conn.arm_session_tracking()
        except BackendError:
            return False
        return True

    async def reset(self, conn: BackendConnection) -> None:
        """Makes a backend clean for its next client; raises if it cannot be (the pool then
        closes it)."""
        await conn.reset_session(self._init_query)
        if not self._profile.has_database and conn.current_schema is not None:
            # The client chose a database; nothing can unselect it, so this backend goes.
            raise BackendError(f"{self.target.name}: a database-less backend has a database")

    async def close(self, conn: BackendConnection) -> None:
        if self._tenant_slots is not None:
            self._tenant_slots.release(conn)
        conn.close()
        await conn.wait_closed(_CLOSE_TIMEOUT_S)

    def is_broken(self, conn: BackendConnection) -> bool:
        return conn.is_broken
