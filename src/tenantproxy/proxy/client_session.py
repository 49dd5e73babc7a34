"""One client connection's life in the proxy: handshake, login, lease, relay, goodbye.

Phases (ALLOWED_TRANSITIONS below): the proxy answers the handshake itself, checks the client
against its tenant's secret (authentication.py), leases a warm backend (leasing.py), then relays
bytes both ways without decoding rows (relay.py). COM_CHANGE_USER and KILL of a proxy session id
(kill.py) are answered here.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import time
from typing import TYPE_CHECKING, Any, cast

from tenantproxy.errors import BackendError
from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.authentication import (
    LoginVerdict,
    SwitchPlugin,
    check_credentials,
    requires_token,
)
from tenantproxy.proxy.backends import BackendProfile
from tenantproxy.proxy.client_channel import ClientChannel
from tenantproxy.proxy.kill import KillRequest, answered_without_a_kill, kill_on_target
from tenantproxy.proxy.leasing import (
    HeldBackend,
    LeaseRefused,
    give_back,
    lease_backend,
    select_schema,
)
from tenantproxy.proxy.link import LinkClosed
from tenantproxy.proxy.login_trace import LoginTrace, traced
from tenantproxy.proxy.multiplexer import Multiplexer
from tenantproxy.proxy.mysql_errors import MysqlError
from tenantproxy.proxy.relay import Relay
from tenantproxy.secretstore import Secret
from tenantproxy.wire.mysql import auth_plugins
from tenantproxy.wire.mysql.codec import int3_at
from tenantproxy.wire.mysql.constants import CapabilityFlags, ServerStatus
from tenantproxy.wire.mysql.errors import PacketTooLarge, ProtocolError
from tenantproxy.wire.mysql.events import (
    NEED_DATA,
    AuthResponseReceived,
    LoginRequested,
    TlsRequested,
)
from tenantproxy.wire.mysql.framing import PacketDecoder, PacketSplitter, encode_packet
from tenantproxy.wire.mysql.handshake import AuthSwitchRequest, ComChangeUser
from tenantproxy.wire.mysql.responses import ErrPacket, OkPacket
from tenantproxy.wire.mysql.server_connection import ServerConnection, ServerPhase

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from tenantproxy.config import EndpointConfig
    from tenantproxy.proxy.server import ProxyContext


class SessionPhase(enum.Enum):
    HANDSHAKE = "handshake"  # before the login is accepted
    RELAYING = "relaying"  # bytes flow between client and backend
    # The proxy answers a command itself (COM_CHANGE_USER, a KILL run on another target); the
    # client's later bytes wait in _pending until it is done.
    ANSWERING = "answering"
    CLOSED = "closed"


ALLOWED_TRANSITIONS: dict[SessionPhase, set[SessionPhase]] = {
    SessionPhase.HANDSHAKE: {SessionPhase.RELAYING, SessionPhase.CLOSED},
    SessionPhase.RELAYING: {SessionPhase.ANSWERING, SessionPhase.CLOSED},
    SessionPhase.ANSWERING: {SessionPhase.RELAYING, SessionPhase.CLOSED},
    SessionPhase.CLOSED: set(),
}

# The first packet (SSLRequest or HandshakeResponse41) is small; anything larger is garbage.
_MAX_FIRST_PACKET_BYTES = 64 * 1024


class ClientSession(asyncio.Protocol):
    """The proxy side of one client connection."""

    def __init__(self, context: ProxyContext, endpoint: EndpointConfig) -> None:
        self._context = context
        self._endpoint = endpoint
        self.session_id = context.next_session_id()
        self.phase = SessionPhase.HANDSHAKE
        self.username: str | None = None
        self.last_activity = time.monotonic()
        self.closed = asyncio.get_running_loop().create_future()
        self._client: ClientChannel | None = None
        self._server: ServerConnection | None = None
        self._pending = b""  # plaintext read but not yet handled
        self._inbox = asyncio.Event()
        self._splitter = PacketSplitter(context.config.max_packet_bytes)
        # Session mode: the backend held from login to logout. Transaction mode: the
        # multiplexer holds one only while the client needs it.
        self._held: HeldBackend | None = None
        self._relay: Relay | None = None
        self._is_multiplexed = context.config.pool_mode_of(endpoint) == "transaction"
        self._multiplexer: Multiplexer | None = None
        # Transaction mode, during COM_CHANGE_USER: the profile and schema the session had.
        self._kept: tuple[BackendProfile, str | None] | None = None
        self._change_user_decoder: PacketDecoder | None = None
        self._change_user_sequence_id = 1
        # Only when tracing is on: a login's span starts at the accept (login_trace.py).
        self._accepted_ns = time.time_ns() if context.tracing is not None else 0
        self._trace: LoginTrace | None = None

    def __repr__(self) -> str:
        return f"<ClientSession {self.session_id} {self.username or '-'} {self.phase.value}>"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._client = client = ClientChannel(cast(asyncio.Transport, transport))
        config = self._context.config
        if self._context.client_slots_taken() >= config.max_clients:
            # MySQL's answer when max_connections is reached, sent instead of the handshake.
            client.write(
                encode_packet(ErrPacket(*mysql_errors.TOO_MANY_CONNECTIONS).encode(), 0)[0]
            )
            client.close()
            self.phase = SessionPhase.CLOSED
            return
        self._server = ServerConnection(
            connection_id=self.session_id,
            server_version=self._context.server_version(),
            capabilities=self._context.offered_capabilities(),
            is_tls_offered=self._context.client_tls_context is not None,
            max_packet_bytes=config.max_packet_bytes,
        )
        self._context.sessions[self.session_id] = self
        self._context.admission.accept(self)
        # MariaDB's connect_timeout: the client has this long to say its part of the login.
        self._login_deadline = asyncio.get_running_loop().time() + config.login_timeout_s
        client.write(self._server.initial_handshake())
        self._context.spawn(self._guarded(self._log_in()))

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self.phase is SessionPhase.HANDSHAKE:
            self._context.admission.heard_from(self.session_id)
        try:
            self._receive(data)
        except Exception as exc:  # a defect a client's bytes reached: that client goes
            self._close_after_unexpected(exc)

    def _receive(self, data: bytes) -> None:
        client = self._client
        assert client is not None
        try:
            data = client.decrypt(data)
        except ssl.SSLError as exc:
            self._context.client_errors.report(self.session_id, f"broken TLS: {exc}")
            client.abort()
            self._end_session()
            return
        except ProtocolError:  # a compressed packet that is not what its header says
            self.fail(mysql_errors.MALFORMED_PACKET)
            return
        if self._relay is not None and self.phase is SessionPhase.RELAYING:
            self._relay.from_client(data)
        elif data:
            self._pending += data
            self._inbox.set()
        if client.is_closed_by_peer:  # TLS close_notify: the end, as a TCP FIN would be
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inbox.set()
        self._end_session()

    def pause_writing(self) -> None:
        if self._relay is not None:
            self._relay.pause_backend()

    def resume_writing(self) -> None:
        if self._relay is not None:
            self._relay.resume_backend()

    # -- what the relay hands back (relay.SessionHooks) --------------------------------------

    def quit(self) -> None:
        self._close()

    def fail(self, error: MysqlError) -> None:
        self._context.client_errors.report(self.session_id, f"ERROR {error.code}: {error.message}")
        self._send_error_and_close(error, sequence_id=1)

    def backend_lost(self) -> None:
        # The database dropped the connection: the client cannot go on with this session.
        # When nothing of the answer reached it yet, it is told why, as RDS Proxy does.
        self._context.log.info("session %d: backend connection lost", self.session_id)
        if self._multiplexer is not None and self._multiplexer.outlive_backend():
            return
        relay = self._relay
        if relay is not None and not relay.is_idle and not relay.has_answered:
            self._send_error_and_close(mysql_errors.backend_lost(), sequence_id=1)
            return
        self._close()

    def change_user(self, payload: bytes, later: bytes) -> None:
        self._hold_backend()
        self._move_to(SessionPhase.ANSWERING)
        self._pending = later
        self._context.spawn(self._guarded(self._change_user(payload)))

    def kill(self, request: KillRequest, later: bytes) -> bool:
        """KILL of a proxy session id (the id a handshake gave). The answer comes from this
        session's own backend, in order: the server's own answer to the KILL rewritten for the
        victim's backend, or an OK once the proxy has done the KILL itself. False when the KILL
        runs on another target first; ``later`` then waits until it is done."""
        relay = self._relay
        assert relay is not None
        victim = self._context.sessions.get(request.session_id)
        if victim is None and self._context.is_served_elsewhere(request.session_id):
            self._wait_for_kill(self._kill_in_another_worker(request), later)
            return False
        if victim is None or victim.username != self.username:
            # No such session for this tenant: the server's "Unknown thread id" for the same id.
            relay.forward_command(request.for_backend(request.session_id))
            return True
        victim_backend = victim.held_backend
        if victim_backend is None:  # logging in, or between backends: nothing runs there
            if not request.is_query_only:
                victim.close_now()
            relay.forward_command(answered_without_a_kill())
            return True
        own = self.held_backend
        if own is not None and victim_backend.target is own.target:
            relay.forward_command(request.for_backend(victim_backend.connection.connection_id))
            return True
        self._wait_for_kill(self._kill_elsewhere(request, victim_backend), later)
        return False

    def _wait_for_kill(self, kill: Coroutine[Any, Any, bytes], later: bytes) -> None:
        """Runs a KILL done away from this session's backend; the command it returns then
        answers the client from that backend, and ``later`` waits until it is sent."""
        if self._multiplexer is not None:  # the answer comes from this backend: it stays
            self._multiplexer.is_held_by_session = True
        self._move_to(SessionPhase.ANSWERING)
        self._pending = later
        self._context.spawn(self._answer_kill(kill))

    async def _answer_kill(self, kill: Coroutine[Any, Any, bytes]) -> None:
        answer = await kill
        if self.phase is SessionPhase.CLOSED or self._relay is None:
            return
        if self._multiplexer is not None:
            self._multiplexer.is_held_by_session = False
        self._relay.forward_command(answer)
        self._resume_relaying()

    async def _kill_elsewhere(self, request: KillRequest, victim_backend: HeldBackend) -> bytes:
        try:
            await kill_on_target(victim_backend, request)
        except BackendError as exc:  # the victim's backend or its target is gone already
            self._context.log.info("session %d: KILL on another target: %s", self.session_id, exc)
        return answered_without_a_kill()

    async def _kill_in_another_worker(self, request: KillRequest) -> bytes:
        """The worker that served the id does the KILL (coordination.py); when it has no such
        session of this tenant, the server's own "Unknown thread id" answers."""
        link = self._context.link
        assert link is not None
        try:
            is_done = await link.call(
                "kill",
                session_id=request.session_id,
                user=self.username,
                is_query_only=request.is_query_only,
                force=request.force,
            )
        except LinkClosed:  # the proxy is going down
            is_done = False
        return answered_without_a_kill() if is_done else request.for_backend(request.session_id)

    def refuse(self, command: int) -> None:
        """A replication command (relay.REFUSED_BY_THE_PROXY): MariaDB's answer to a tenant."""
        self._write_packet(ErrPacket(*mysql_errors.refused_command(command)).encode(), 1)

    # -- writing to the client -------------------------------------------------------------

    def _write_packet(self, payload: bytes, sequence_id: int) -> None:
        assert self._client is not None
        self._client.write(encode_packet(payload, sequence_id)[0])

    def _ok_payload(self) -> bytes:
        assert self._server is not None
        status = self._login_status(self._held) if self._held else None
        ok = OkPacket() if status is None else OkPacket(status_flags=status)
        return ok.encode(self._server.negotiated_capabilities)

    def _login_status(self, held: HeldBackend) -> ServerStatus:
        """The status flags of a login's OK. A multiplexed backend's are the last client's;
        a fresh session's are its baseline's (autocommit as the server starts it)."""
        backend = held.connection
        if not self._is_multiplexed:
            return backend.status_flags
        is_autocommit = backend.baseline.get("autocommit", "ON").upper() in ("ON", "1")
        return ServerStatus.SERVER_STATUS_AUTOCOMMIT if is_autocommit else ServerStatus(0)

    def _profile_of(self, character_set: int, database: str | None) -> BackendProfile:
        assert self._server is not None
        return BackendProfile.of_client(
            self._server.negotiated_capabilities,
            character_set,
            database,
            is_multiplexed=self._is_multiplexed,
        )

    def _send_error_and_close(self, error: MysqlError, sequence_id: int | None = None) -> None:
        """Sends ERR and closes. Without a sequence id, the ServerConnection numbers it; once it
        has given up on a broken handshake, 2 follows the client's HandshakeResponse41 (1)."""
        assert self._client is not None
        server = self._server
        if sequence_id is None and server is not None and server.phase is not ServerPhase.CLOSED:
            self._client.write(server.send_error(*error))
        else:
            payload = ErrPacket(error.code, error.sql_state, error.message).encode()
            self._write_packet(payload, 2 if sequence_id is None else sequence_id)
        self._close()

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._end_session()

    # -- login -----------------------------------------------------------------------------

    async def _guarded(self, steps: Coroutine[Any, Any, None]) -> None:
        """Runs the session's own background steps; a defect they hit closes this client with
        one log line instead of a traceback."""
        try:
            await steps
        except Exception as exc:
            self._close_after_unexpected(exc)

    def _close_after_unexpected(self, exc: Exception) -> None:
        self._context.client_errors.unexpected(self.session_id, exc)
        if self._client is not None:
            self._client.abort()
        self._end_session()

    async def _log_in(self) -> None:
        try:
            await self._log_in_steps()
        except (TimeoutError, PacketTooLarge, ProtocolError, ssl.SSLError) as exc:
            if self.phase is not SessionPhase.CLOSED:  # else the client left, or was made to
                self._refuse_handshake(exc)

    def _refuse_handshake(self, exc: Exception) -> None:
        errors = self._context.client_errors
        if isinstance(exc, TimeoutError):
            self._context.metrics.count("ClientLoginTimeouts")
            errors.report(self.session_id, "login not finished by login_timeout_s")
            self._close_before_login(mysql_errors.BAD_HANDSHAKE)
        elif isinstance(exc, PacketTooLarge):
            errors.report(self.session_id, "handshake packet too large")
            self._send_error_and_close(mysql_errors.PACKET_TOO_LARGE)
        else:
            errors.report(self.session_id, f"bad handshake: {exc}")
            self._send_error_and_close(mysql_errors.BAD_HANDSHAKE)

    def _close_before_login(self, error: MysqlError) -> None:
        """The error when it can be said; inside a TLS handshake that never finished nothing can
        (the ERR would have to be encrypted), so the connection is cut."""
        assert self._client is not None
        if self._client.is_tls_handshaking:
            self._client.abort()
            self._end_session()
        else:
            self._send_error_and_close(error)

    def close_to_make_room(self) -> None:
        """admission.py: the unproven are all there and this one has been silent longest."""
        self._context.metrics.count("ClientLoginsEvicted")
        self._context.client_errors.report(self.session_id, "closed before its login to make room")
        self._close_before_login(mysql_errors.TOO_MANY_CONNECTIONS)

    def _take_client_slot(self) -> bool:
        """The login packet arrived: the session counts against max_clients from now on; False
        (ERROR 1040 sent, closed) when they are all taken."""
        self._context.admission.proven(self.session_id)
        if self._context.client_slots_taken() > self._context.config.max_clients:
            self._send_error_and_close(mysql_errors.TOO_MANY_CONNECTIONS)
            return False
        return True

    async def _log_in_steps(self) -> None:
        event = await self._next_login_event()
        if isinstance(event, TlsRequested):
            self._start_tls()
            event = await self._next_login_event()
        if not isinstance(event, LoginRequested):
            raise ProtocolError(f"expected a login, got {type(event).__name__}")
        if self._take_client_slot():
            await self._accept_login(event)

    async def _next_login_event(self) -> object:
        server = self._server
        assert server is not None
        while True:
            event = server.next_event()
            if event is not NEED_DATA:
                return event
            if self.phase is SessionPhase.CLOSED:
                raise ProtocolError("client left during the handshake")
            if not self._feed_server():
                # The client has until the login deadline to say its part; waiting for a
                # backend afterwards is bounded by the borrow timeout instead.
                self._inbox.clear()
                time_left_s = self._login_deadline - asyncio.get_running_loop().time()
                await asyncio.wait_for(self._inbox.wait(), max(0.0, time_left_s))

    def _feed_server(self) -> bool:
        """Gives pending plaintext to the ServerConnection; False when there is none."""
        assert self._server is not None and self._client is not None
        if not self._pending:
            return False
        if self._client.is_tls or self._server.phase is not ServerPhase.HANDSHAKE:
            self._server.receive_data(self._pending)
            self._pending = b""
            return True
        # Before TLS starts, give exactly one packet: the bytes after an SSLRequest are the
        # client's TLS ClientHello, which must go to TLS, not to the MySQL parser.
        if len(self._pending) < 4:
            return False
        length = int3_at(self._pending)
        if length > _MAX_FIRST_PACKET_BYTES:
            raise ProtocolError(f"first packet of {length} bytes is not a handshake")
        if len(self._pending) < 4 + length:
            return False
        packet, self._pending = self._pending[: 4 + length], self._pending[4 + length :]
        self._server.receive_data(packet)
        return True

    def _start_tls(self) -> None:
        context = self._context.client_tls_context
        assert context is not None and self._server is not None and self._client is not None
        self._context.metrics.count("ClientConnectionsTLS")
        self._server.tls_started()
        early, self._pending = self._pending, b""
        self._pending = self._client.start_tls(context, early)

    async def _accept_login(self, login: LoginRequested) -> None:
        self._trace = LoginTrace.begin(
            self._context.tracing, login, self._accepted_ns, self._endpoint.name
        )
        try:
            await self._log_in_as(login)
        finally:
            if self._trace is not None:
                self._trace.login_ended(is_accepted=self.phase is SessionPhase.RELAYING)
                self._trace = None

    async def _log_in_as(self, login: LoginRequested) -> None:
        server, client = self._server, self._client
        assert server is not None and client is not None
        secret = await self._context.secrets.find(login.username)
        is_tls_missing = not client.is_tls and (
            self._context.config.require_tls or requires_token(secret)
        )
        if is_tls_missing:
            self._context.metrics.count("ClientConnectionsNoTLS")
            self._send_error_and_close(mysql_errors.INSECURE_TRANSPORT)
            return
        with traced(self._trace, "token check"):
            verdict = await self._check_credentials(
                login.username,
                secret,
                login.auth_plugin_name,
                login.auth_response,
                switch_plugin=self._switch_plugin_at_login,
                confirm_fast_auth=lambda: client.write(server.send_auth_more_data(b"\x03")),
            )
        if not verdict.is_accepted:
            self._refuse_login(login.username, verdict, sequence_id=None)
            return
        if not await self._become(login.username):
            if self.phase is not SessionPhase.CLOSED:
                self._send_error_and_close(mysql_errors.too_many_user_connections(login.username))
            return
        profile = self._profile_of(login.character_set, login.database)
        with traced(self._trace, "borrow wait"):
            is_leased = await self._lease_backend(login.username, profile, login.database)
        if is_leased:
            assert self._held is not None
            client.write(server.send_ok(status_flags=self._login_status(self._held)))
            if server.negotiated_capabilities & CapabilityFlags.CLIENT_COMPRESS:
                client.start_compression(self._context.metrics)
            self._start_relaying(login.database)
            self._context.metrics.count("ClientConnectionsSetupSucceeded", tenant=self.username)

    async def _check_credentials(
        self,
        username: str,
        secret: Secret | None,
        plugin_name: str,
        auth_response: bytes,
        *,
        switch_plugin: SwitchPlugin,
        confirm_fast_auth: Callable[[], None] | None = None,
    ) -> LoginVerdict:
        assert self._server is not None and self._client is not None
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

    def _refuse_login(self, username: str, verdict: LoginVerdict, sequence_id: int | None) -> None:
        self._send_error_and_close(self._login_refusal(username, verdict), sequence_id)

    def _login_refusal(self, username: str, verdict: LoginVerdict) -> MysqlError:
        """Logs and counts a refused login; returns what the client is told."""
        assert self._client is not None
        self._context.client_errors.report(
            self.session_id, f"login refused for {username!r}: {verdict.reason}"
        )
        self._context.metrics.count("ClientConnectionsSetupFailedAuth")
        return mysql_errors.access_denied(
            username, self._client.peer_host(), is_password_used=verdict.is_password_used
        )

    async def _switch_plugin_at_login(self, plugin_name: str) -> tuple[bytes, bytes]:
        """AuthSwitchRequest during the login; returns the client's answer and the scramble."""
        assert self._server is not None and self._client is not None
        self._client.write(self._server.send_auth_switch(plugin_name))
        event = await self._next_login_event()
        if not isinstance(event, AuthResponseReceived):
            raise ProtocolError(f"expected an auth response, got {type(event).__name__}")
        return event.data, self._server.scramble

    async def _become(self, db_user: str) -> bool:
        """The session is now the tenant's (at login; COM_CHANGE_USER moves in _move_to_user);
        False when the tenant has all its clients already, or the client left meanwhile."""
        if not await self._context.admit_tenant_client(db_user):
            return False
        if self.phase is SessionPhase.CLOSED:  # it left while the coordinator was asked
            self._context.release_tenant_client(db_user)
            return False
        self.username = db_user
        return True

    # -- the backend -----------------------------------------------------------------------

    async def _lease_backend(
        self, db_user: str, profile: BackendProfile, database: str | None
    ) -> bool:
        """Leases a backend on the right schema; on failure tells the client and closes."""
        try:
            held = await lease_backend(self._context, self._endpoint, db_user, profile, database)
        except LeaseRefused as refused:
            self._send_error_and_close(refused.error)
            return False
        self._held = held
        if self.phase is SessionPhase.CLOSED:  # the client left while we waited
            self._give_back_backend()
            return False
        return True

    def _start_relaying(self, database: str | None) -> None:
        """Relays from now on, to the backend the login (or COM_CHANGE_USER) leased; in
        transaction mode it goes back at once, and ``database`` is the session's schema."""
        held, client, server = self._held, self._client, self._server
        assert held is not None and client is not None and server is not None
        multiplexer = None
        if self._is_multiplexed:
            assert self.username is not None and held.connection.profile is not None
            multiplexer = Multiplexer(
                self._context,
                self._endpoint,
                self.username,
                held.connection.profile,
                is_client_tracking=bool(
                    server.negotiated_capabilities & CapabilityFlags.CLIENT_SESSION_TRACK
                ),
                on_failure=self._fail_command,
            )
        self._relay = relay = Relay(client, self._splitter, self, self._context.log, multiplexer)
        if self._trace is not None:
            self._trace.watch_first_query(relay)
        self._multiplexer = multiplexer
        if multiplexer is None:
            relay.attach(held.connection)
        else:
            self._held = None
            multiplexer.start(held, relay, database)
        self._resume_relaying()

    def _fail_command(self, error: MysqlError) -> None:
        """No backend for the client's command (transaction mode): it is told, and closed."""
        if self.phase is not SessionPhase.CLOSED:
            self.fail(error)

    def _hold_backend(self) -> None:
        """The session answers a command itself (COM_CHANGE_USER): in transaction mode it
        holds the backend itself, taken from the multiplexer, as in session mode."""
        multiplexer = self._multiplexer
        if multiplexer is not None:
            self._held = multiplexer.hand_over()
            self._kept = (multiplexer.profile, multiplexer.state.wanted.schema)
            self._multiplexer = None

    def _resume_relaying(self) -> None:
        """Back to relaying after the proxy answered a command; the bytes that waited go on."""
        assert self._relay is not None
        self._move_to(SessionPhase.RELAYING)
        if self._pending:
            early, self._pending = self._pending, b""
            self._relay.from_client(early)

    def _give_back_backend(self) -> None:
        multiplexer, self._multiplexer = self._multiplexer, None
        if multiplexer is not None:
            multiplexer.end()
        held, relay = self._held, self._relay
        self._held = self._relay = None
        if held is not None:
            is_reusable = relay.detach() if relay is not None else not held.connection.is_broken
            give_back(self._context, held, is_reusable=is_reusable)

    # -- COM_CHANGE_USER -------------------------------------------------------------------

    async def _change_user(self, payload: bytes) -> None:
        """COM_CHANGE_USER as MariaDB does it: the session's state goes first (the held backend
        is reset where it is, so its user locks are gone before the answer), then the client
        logs in again. On refusal the session keeps its user and database and goes on."""
        server = self._server
        assert server is not None
        try:
            request = ComChangeUser.decode(payload, server.negotiated_capabilities)
        except ProtocolError:
            self._send_error_and_close(mysql_errors.MALFORMED_PACKET, sequence_id=1)
            return
        # The change owns the backend until it answers: a client that leaves meanwhile does
        # not give it back while a command runs on it.
        held, self._held = self._held, None
        relay, self._relay = self._relay, None
        if held is None and self._kept is not None:
            # Transaction mode between transactions: a backend to reset and go on with.
            relay = None
            held = await self._lease_kept_backend(*self._kept)
            if held is None:
                return
        held = await self._reset_in_place(held, relay)
        try:
            error, held = await self._log_in_again(request, held)
        except ProtocolError:
            self._give_back_unless_none(held)
            self._send_error_and_close(mysql_errors.MALFORMED_PACKET)
            return
        except TimeoutError:  # no answer to the AuthSwitchRequest within login_timeout_s
            self._give_back_unless_none(held)
            self._context.log.info("session %d: COM_CHANGE_USER timed out", self.session_id)
            self._send_error_and_close(mysql_errors.BAD_HANDSHAKE, self._change_user_sequence_id)
            return
        if self.phase is SessionPhase.CLOSED:
            self._give_back_unless_none(held)
            return
        if held is None or held.connection.is_broken:
            self._give_back_unless_none(held)
            lost = error or mysql_errors.backend_unavailable(self._endpoint.name)
            self._send_error_and_close(lost, sequence_id=self._change_user_sequence_id)
            return
        self._held = held
        answer = self._ok_payload() if error is None else ErrPacket(*error).encode()
        self._write_packet(answer, self._change_user_sequence_id)
        kept_schema = held.connection.current_schema if self._kept is None else self._kept[1]
        self._kept = None
        self._start_relaying(request.database if error is None else kept_schema)

    async def _lease_kept_backend(
        self, profile: BackendProfile, schema: str | None
    ) -> HeldBackend | None:
        assert self.username is not None
        try:
            return await lease_backend(
                self._context, self._endpoint, self.username, profile, schema
            )
        except LeaseRefused as refused:
            self._send_error_and_close(refused.error, sequence_id=1)
            return None

    async def _reset_in_place(
        self, held: HeldBackend | None, relay: Relay | None
    ) -> HeldBackend | None:
        """The held backend, reset; None when it could not be (it is then given back broken)."""
        if held is None:
            return None
        is_idle = relay.detach() if relay is not None else not held.connection.is_broken
        try:
            if not is_idle:
                raise BackendError("a response was still on its way")
            await held.connection.reset_session(self._context.config.init_query)
        except BackendError as exc:
            self._context.log.info("session %d: backend not reset: %s", self.session_id, exc)
            give_back(self._context, held, is_reusable=False)
            return None
        return held

    async def _log_in_again(
        self, request: ComChangeUser, held: HeldBackend | None
    ) -> tuple[MysqlError | None, HeldBackend | None]:
        """Checks the new login and moves to its user; returns the refusal, if any, and the
        backend the session goes on with."""
        assert self._client is not None
        self._change_user_decoder = PacketDecoder(
            self._context.config.max_packet_bytes, expected_sequence_id=2
        )
        self._change_user_sequence_id = 1  # COM_CHANGE_USER was packet 0
        try:
            secret = await self._context.secrets.find(request.username)
            if requires_token(secret) and not self._client.is_tls:
                self._context.metrics.count("ClientConnectionsNoTLS")
                return mysql_errors.INSECURE_TRANSPORT, held
            verdict = await self._check_credentials(
                request.username,
                secret,
                request.auth_plugin_name,
                request.auth_response,
                switch_plugin=self._switch_plugin_in_change_user,
            )
        finally:
            self._change_user_decoder = None
        if not verdict.is_accepted:
            return self._login_refusal(request.username, verdict), held
        return await self._move_to_user(request, held)

    async def _move_to_user(
        self, request: ComChangeUser, held: HeldBackend | None
    ) -> tuple[MysqlError | None, HeldBackend | None]:
        """A backend of the new user on its database, leased before the old one is let go, so
        that a refusal (the tenant's caps, a database it may not use) leaves the session as it
        was."""
        assert self._server is not None
        new_user = request.username
        is_new_user = new_user != self.username
        if is_new_user and not await self._context.admit_tenant_client(new_user):
            return mysql_errors.too_many_user_connections(new_user), held
        profile = self._profile_of(request.character_set, request.database)
        try:
            if held is not None and not is_new_user and held.connection.profile == profile:
                await select_schema(held.connection, request.database)
                new_held = held
            else:
                new_held = await lease_backend(
                    self._context, self._endpoint, new_user, profile, request.database
                )
        except LeaseRefused as refused:
            if is_new_user:
                self._context.release_tenant_client(new_user)
            return refused.error, held
        if self.phase is SessionPhase.CLOSED:  # the client left; its old user was let go
            if is_new_user:
                self._context.release_tenant_client(new_user)
            if new_held is not held:
                self._give_back_unless_none(new_held)
            return None, held
        if is_new_user:
            if self.username is not None:
                self._context.release_tenant_client(self.username)
            self.username = new_user
        if new_held is not held:
            self._give_back_unless_none(held)
        return None, new_held

    def _give_back_unless_none(self, held: HeldBackend | None) -> None:
        if held is not None:
            give_back(self._context, held, is_reusable=not held.connection.is_broken)

    async def _switch_plugin_in_change_user(self, plugin_name: str) -> tuple[bytes, bytes]:
        """AuthSwitchRequest inside COM_CHANGE_USER, framed here: the command phase counts."""
        scramble = auth_plugins.new_scramble()
        request = AuthSwitchRequest(plugin_name, scramble + b"\x00").encode()
        self._write_packet(request, self._change_user_sequence_id)
        decoder = self._change_user_decoder
        assert decoder is not None
        while (answer := decoder.next_packet()) is None:
            if self._pending:
                decoder.feed(self._pending)
                self._pending = b""
                continue
            if self.phase is SessionPhase.CLOSED:
                raise ProtocolError("client left during COM_CHANGE_USER")
            self._inbox.clear()
            # As long as a login may take: a client that never answers must not hold the
            # session (and its backend) open.
            await asyncio.wait_for(self._inbox.wait(), self._context.config.login_timeout_s)
        self._change_user_sequence_id = (answer[0] + 1) % 256
        return answer[1], scramble

    # -- the end ---------------------------------------------------------------------------

    def close_now(self) -> None:
        """Closes the client's connection without a word (shutdown, a KILL of this session)."""
        self._close()

    @property
    def held_backend(self) -> HeldBackend | None:
        if self._multiplexer is not None:
            return self._multiplexer.held
        return self._held

    @property
    def multiplexer(self) -> Multiplexer | None:
        return self._multiplexer

    def close_for_idleness(self) -> None:
        self._send_error_and_close(mysql_errors.IDLE_TIMEOUT, sequence_id=0)

    @property
    def is_idle(self) -> bool:
        return self._relay is None or self._relay.is_idle

    def _move_to(self, phase: SessionPhase) -> None:
        if phase not in ALLOWED_TRANSITIONS[self.phase]:
            raise AssertionError(f"session cannot go from {self.phase} to {phase}")
        self.phase = phase

    def _end_session(self) -> None:
        if self.phase is SessionPhase.CLOSED:
            return
        self._move_to(SessionPhase.CLOSED)
        self._inbox.set()  # a login waiting for the client's bytes sees the end at once
        self._context.admission.proven(self.session_id)
        self._give_back_backend()
        if self.username is not None:
            self._context.release_tenant_client(self.username)
        self._context.sessions.pop(self.session_id, None)
        self._context.metrics.count("ClientConnectionsClosed")
        if not self.closed.done():
            self.closed.set_result(None)
