"""A client's login: from the proxy's handshake to the session's first backend.

The proxy answers the handshake itself (the session sent its HandshakeV10 on accept); then, in
order: TLS when the client asks for it (SSLRequest), the client's HandshakeResponse41, a
client slot (max_clients), the credentials checked against the tenant's secret or token
(authentication.py, with an AuthSwitchRequest when the client used another plugin), the
tenant's client cap, and a backend on the client's database (leasing.py). Only then does the
client get its OK, and the session relays. Each refusal is the MySQL error MariaDB would send.

``LoginFlow`` also checks the logins that come later the same way (COM_CHANGE_USER,
change_user.py): the credentials, the refusal a client is told, the backend profile it needs.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.authentication import (
    LoginVerdict,
    SwitchPlugin,
    check_credentials,
    requires_token,
)
from tenantproxy.proxy.backends import BackendProfile
from tenantproxy.proxy.leasing import LeaseRefused, give_back, lease_backend
from tenantproxy.proxy.login_trace import LoginTrace, traced
from tenantproxy.wire.mysql.codec import int3_at
from tenantproxy.wire.mysql.constants import CapabilityFlags, ServerStatus
from tenantproxy.wire.mysql.errors import PacketTooLarge, ProtocolError
from tenantproxy.wire.mysql.events import (
    NEED_DATA,
    AuthResponseReceived,
    LoginRequested,
    TlsRequested,
)
from tenantproxy.wire.mysql.server_connection import ServerConnection, ServerPhase

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenantproxy.config import EndpointConfig
    from tenantproxy.proxy.client_channel import ClientChannel, PendingBytes
    from tenantproxy.proxy.client_session import ClientSession
    from tenantproxy.proxy.leasing import HeldBackend
    from tenantproxy.proxy.mysql_errors import MysqlError
    from tenantproxy.proxy.server import ProxyContext
    from tenantproxy.secretstore import Secret

# The first packet (SSLRequest or HandshakeResponse41) is small; anything larger is garbage.
_MAX_FIRST_PACKET_BYTES = 64 * 1024


class LoginFlow:
    """Takes one client from the proxy's handshake to its first backend, and checks the
    client's later logins the same way."""

    __slots__ = (
        "_accepted_ns",
        "_client",
        "_context",
        "_deadline",
        "_endpoint",
        "_pending",
        "_server",
        "_session",
        "_trace",
    )

    def __init__(
        self,
        session: ClientSession,
        client: ClientChannel,
        server: ServerConnection,
        pending: PendingBytes,
        accepted_ns: int,
    ) -> None:
        self._session = session
        self._context: ProxyContext = session.context
        self._endpoint: EndpointConfig = session.endpoint
        self._client = client
        self._server = server
        self._pending = pending
        # MariaDB's connect_timeout: the client has this long to say its part of the login.
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._context.config.login_timeout_s
        # Only when tracing is on: a login's span starts at the accept (login_trace.py).
        self._accepted_ns = accepted_ns
        self._trace: LoginTrace | None = None

    async def run(self) -> None:
        try:
            await self._steps()
        except (TimeoutError, PacketTooLarge, ProtocolError, ssl.SSLError) as exc:
            if not self._session.is_closed:  # else the client left, or was made to
                self._refuse_handshake(exc)

    def _refuse_handshake(self, exc: Exception) -> None:
        session = self._session
        errors = self._context.client_errors
        if isinstance(exc, TimeoutError):
            self._context.metrics.count("ClientLoginTimeouts")
            errors.report(session.session_id, "login not finished by login_timeout_s")
            session.close_before_login(mysql_errors.BAD_HANDSHAKE)
        elif isinstance(exc, PacketTooLarge):
            errors.report(session.session_id, "handshake packet too large")
            session.send_error_and_close(mysql_errors.PACKET_TOO_LARGE)
        else:
            errors.report(session.session_id, f"bad handshake: {exc}")
            session.send_error_and_close(mysql_errors.BAD_HANDSHAKE)

    async def _steps(self) -> None:
        event = await self._next_event()
        if isinstance(event, TlsRequested):
            self._start_tls()
            event = await self._next_event()
        if not isinstance(event, LoginRequested):
            raise ProtocolError(f"expected a login, got {type(event).__name__}")
        if self._take_client_slot():
            await self._accept(event)

    def _take_client_slot(self) -> bool:
        """The login packet arrived: the session counts against max_clients from now on; False
        (ERROR 1040 sent, closed) when they are all taken."""
        context = self._context
        context.admission.proven(self._session.session_id)
        if context.client_slots_taken() > context.config.max_clients:
            self._session.send_error_and_close(mysql_errors.TOO_MANY_CONNECTIONS)
            return False
        return True

    # -- the client's bytes, up to its login packet --------------------------------------------

    async def _next_event(self) -> object:
        server = self._server
        while True:
            event = server.next_event()
            if event is not NEED_DATA:
                return event
            if self._session.is_closed:
                raise ProtocolError("client left during the handshake")
            if not self._feed_server():
                # The client has until the login deadline to say its part; waiting for a
                # backend afterwards is bounded by the borrow timeout instead.
                time_left_s = self._deadline - asyncio.get_running_loop().time()
                await self._pending.wait(max(0.0, time_left_s))

    def _feed_server(self) -> bool:
        """Gives pending plaintext to the ServerConnection; False when there is none."""
        pending = self._pending
        if not pending.data:
            return False
        if self._client.is_tls or self._server.phase is not ServerPhase.HANDSHAKE:
            self._server.receive_data(pending.take())
            return True
        # Before TLS starts, give exactly one packet: the bytes after an SSLRequest are the
        # client's TLS ClientHello, which must go to TLS, not to the MySQL parser.
        if len(pending.data) < 4:
            return False
        length = int3_at(pending.data)
        if length > _MAX_FIRST_PACKET_BYTES:
            raise ProtocolError(f"first packet of {length} bytes is not a handshake")
        if len(pending.data) < 4 + length:
            return False
        packet, pending.data = pending.data[: 4 + length], pending.data[4 + length :]
        self._server.receive_data(packet)
        return True

    def _start_tls(self) -> None:
        context = self._context.client_tls_context
        assert context is not None
        self._context.metrics.count("ClientConnectionsTLS")
        self._server.tls_started()
        self._pending.data = self._client.start_tls(context, self._pending.take())

    # -- the login -----------------------------------------------------------------------------

    async def _accept(self, login: LoginRequested) -> None:
        self._trace = LoginTrace.begin(
            self._context.tracing, login, self._accepted_ns, self._endpoint.name
        )
        try:
            await self._log_in_as(login)
        finally:
            if self._trace is not None:
                self._trace.login_ended(is_accepted=self._session.is_relaying)
                self._trace = None

    async def _log_in_as(self, login: LoginRequested) -> None:
        session, server, client = self._session, self._server, self._client
        secret = await self._context.secrets.find(login.username)
        is_tls_missing = not client.is_tls and (
            self._context.config.require_tls or requires_token(secret)
        )
        if is_tls_missing:
            self._context.metrics.count("ClientConnectionsNoTLS")
            session.send_error_and_close(mysql_errors.INSECURE_TRANSPORT)
            return
        with traced(self._trace, "token check"):
            verdict = await self.check_credentials(
                login.username,
                secret,
                login.auth_plugin_name,
                login.auth_response,
                switch_plugin=self._switch_plugin,
                confirm_fast_auth=lambda: client.write(server.send_auth_more_data(b"\x03")),
            )
        if not verdict.is_accepted:
            session.send_error_and_close(self.refusal(login.username, verdict))
            return
        if not await self._become(login.username):
            if not session.is_closed:
                session.send_error_and_close(mysql_errors.too_many_user_connections(login.username))
            return
        profile = self.profile_of(login.character_set, login.database)
        with traced(self._trace, "borrow wait"):
            held = await self._lease(login.username, profile, login.database)
        if held is not None:
            client.write(server.send_ok(status_flags=self.login_status(held)))
            if server.negotiated_capabilities & CapabilityFlags.CLIENT_COMPRESS:
                client.start_compression(self._context.metrics)
            session.start_relaying(held, login.database, self._trace)
            self._context.metrics.count("ClientConnectionsSetupSucceeded", tenant=session.username)

    async def _switch_plugin(self, plugin_name: str) -> tuple[bytes, bytes]:
        """AuthSwitchRequest during the login; returns the client's answer and the scramble."""
        self._client.write(self._server.send_auth_switch(plugin_name))
        event = await self._next_event()
        if not isinstance(event, AuthResponseReceived):
            raise ProtocolError(f"expected an auth response, got {type(event).__name__}")
        return event.data, self._server.scramble

    async def _become(self, db_user: str) -> bool:
        """The session is now the tenant's (COM_CHANGE_USER moves it in change_user.py); False
        when the tenant has all its clients already, or the client left meanwhile."""
        if not await self._context.admit_tenant_client(db_user):
            return False
        if self._session.is_closed:  # it left while the coordinator was asked
            self._context.release_tenant_client(db_user)
            return False
        self._session.username = db_user
        return True

    async def _lease(
        self, db_user: str, profile: BackendProfile, database: str | None
    ) -> HeldBackend | None:
        """A backend on the right schema; None when the client was told why not and closed,
        or left while it waited."""
        try:
            held = await lease_backend(self._context, self._endpoint, db_user, profile, database)
        except LeaseRefused as refused:
            self._session.send_error_and_close(refused.error)
            return None
        if self._session.is_closed:  # the client left while we waited
            give_back(self._context, held, is_reusable=not held.connection.is_broken)
            return None
        return held

    # -- what a later login (COM_CHANGE_USER) is checked with too ------------------------------

    async def check_credentials(
        self,
        username: str,
        secret: Secret | None,
        plugin_name: str,
        auth_response: bytes,
        *,
        switch_plugin: SwitchPlugin,
        confirm_fast_auth: Callable[[], None] | None = None,
    ) -> LoginVerdict:
        return await check_credentials(
            username,
            secret,
            plugin_name,
            auth_response,
            scramble=self._server.scramble,
            is_tls=self._client.is_tls,
            tokens=self._context.token_logins,
            switch_plugin=switch_plugin,
            confirm_fast_auth=confirm_fast_auth,
        )

    def refusal(self, username: str, verdict: LoginVerdict) -> MysqlError:
        """Logs and counts a refused login; returns what the client is told."""
        self._context.client_errors.report(
            self._session.session_id, f"login refused for {username!r}: {verdict.reason}"
        )
        self._context.metrics.count("ClientConnectionsSetupFailedAuth")
        return mysql_errors.access_denied(
            username, self._client.peer_host(), is_password_used=verdict.is_password_used
        )

    def profile_of(self, character_set: int, database: str | None) -> BackendProfile:
        return BackendProfile.of_client(
            self._server.negotiated_capabilities,
            character_set,
            database,
            is_multiplexed=self._session.is_multiplexed,
        )

    def login_status(self, held: HeldBackend) -> ServerStatus:
        """The status flags of a login's OK. A multiplexed backend's are the last client's;
        a fresh session's are its baseline's (autocommit as the server starts it)."""
        backend = held.connection
        if not self._session.is_multiplexed:
            return backend.status_flags
        is_autocommit = backend.baseline.get("autocommit", "ON").upper() in ("ON", "1")
        return ServerStatus.SERVER_STATUS_AUTOCOMMIT if is_autocommit else ServerStatus(0)
