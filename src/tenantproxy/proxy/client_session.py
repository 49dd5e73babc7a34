"""One client connection's life in the proxy: handshake, login, lease, relay, goodbye.

Phases (ALLOWED_TRANSITIONS below): the proxy answers the handshake itself, checks the client
against its tenant's secret, leases a warm backend, then relays bytes both ways without decoding
rows. It reads only packet headers and command bytes from the client, and the response tracker
reads only the first bytes of the server's packets.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from tenantproxy.errors import BackendError, BorrowTimeout, PoolClosed
from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.authentication import (
    LoginVerdict,
    SwitchPlugin,
    requires_token,
    verify_login,
    verify_token_login,
)
from tenantproxy.proxy.backends import (
    BackendCommandFailed,
    BackendConnection,
    BackendLoginRejected,
    BackendProfile,
)
from tenantproxy.proxy.mysql_errors import MysqlError
from tenantproxy.proxy.tls import TlsChannel
from tenantproxy.secretstore import Secret
from tenantproxy.wire.mysql import auth_plugins, commands
from tenantproxy.wire.mysql.constants import Command
from tenantproxy.wire.mysql.errors import PacketTooLarge, ProtocolError
from tenantproxy.wire.mysql.events import (
    NEED_DATA,
    AuthResponseReceived,
    LoginRequested,
    TlsRequested,
)
from tenantproxy.wire.mysql.framing import PacketDecoder, PacketSplitter, WirePacket, encode_packet
from tenantproxy.wire.mysql.handshake import AuthSwitchRequest, ComChangeUser
from tenantproxy.wire.mysql.responses import ErrPacket, OkPacket
from tenantproxy.wire.mysql.server_connection import ServerConnection, ServerPhase

if TYPE_CHECKING:
    from tenantproxy.config import EndpointConfig
    from tenantproxy.pool import Lease, Pool
    from tenantproxy.proxy.routing import TargetState
    from tenantproxy.proxy.server import ProxyContext


class SessionPhase(enum.Enum):
    HANDSHAKE = "handshake"  # before the login is accepted
    RELAYING = "relaying"  # bytes flow between client and backend
    CHANGING_USER = "changing_user"  # COM_CHANGE_USER: the proxy talks to the client itself
    CLOSED = "closed"


ALLOWED_TRANSITIONS: dict[SessionPhase, set[SessionPhase]] = {
    SessionPhase.HANDSHAKE: {SessionPhase.RELAYING, SessionPhase.CLOSED},
    SessionPhase.RELAYING: {SessionPhase.CHANGING_USER, SessionPhase.CLOSED},
    SessionPhase.CHANGING_USER: {SessionPhase.RELAYING, SessionPhase.CLOSED},
    SessionPhase.CLOSED: set(),
}

# The first packet (SSLRequest or HandshakeResponse41) is small; anything larger is garbage.
_MAX_FIRST_PACKET_BYTES = 64 * 1024
# MariaDB's connect_timeout default: a client must finish its login within it.
_HANDSHAKE_TIMEOUT_S = 10.0
# Commands the proxy answers itself instead of relaying them.
_ANSWERED_BY_THE_PROXY = frozenset(
    (Command.COM_QUIT, Command.COM_CHANGE_USER, Command.COM_PROCESS_KILL)
)
# Backends tried before the client is told that none answers.
_LIVENESS_ATTEMPTS = 3


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
        self._transport: asyncio.Transport | None = None
        self._peer_host = "unknown"
        self._tls: TlsChannel | None = None
        self._server: ServerConnection | None = None
        self._pending = b""  # plaintext not yet given to the ServerConnection
        self._inbox = asyncio.Event()
        self._splitter = PacketSplitter(context.config.max_packet_bytes)
        self._lease: Lease[BackendConnection] | None = None
        self._lease_pool: Pool[BackendConnection] | None = None
        self._lease_target: TargetState | None = None
        self._backend: BackendConnection | None = None
        self._profile: BackendProfile | None = None
        self._change_user_decoder: PacketDecoder | None = None
        self._change_user_sequence_id = 1

    def __repr__(self) -> str:
        return f"<ClientSession {self.session_id} {self.username or '-'} {self.phase.value}>"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._transport = cast(asyncio.Transport, transport)
        transport = self._transport
        peer = transport.get_extra_info("peername")
        self._peer_host = peer[0] if peer else "localhost"
        config = self._context.config
        self._server = ServerConnection(
            connection_id=self.session_id,
            server_version=self._context.server_version(),
            capabilities=self._context.advertised_capabilities,
            is_tls_offered=self._context.client_tls_context is not None,
            max_packet_bytes=config.max_packet_bytes,
        )
        if len(self._context.sessions) >= config.max_clients:
            # MySQL's answer when max_connections is reached, sent instead of the handshake.
            error = mysql_errors.TOO_MANY_CONNECTIONS
            transport.write(encode_packet(ErrPacket(*error).encode(), 0)[0])
            transport.close()
            self.phase = SessionPhase.CLOSED
            return
        self._context.sessions[self.session_id] = self
        transport.write(self._server.initial_handshake())
        self._context.spawn(self._log_in())

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self._tls is not None:
            try:
                data = self._tls.receive_encrypted(data)
            except ssl.SSLError:
                self._abort()
                return
            self._flush_tls()
            if not data:
                return
        if self.phase is SessionPhase.RELAYING:
            self._relay_from_client(data)
        else:
            self._pending += data
            self._inbox.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inbox.set()
        self._end_session()

    def pause_writing(self) -> None:
        # The client reads slower than its backend sends: stop reading from the backend.
        if self._backend is not None and self._backend.transport is not None:
            self._backend.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._backend is not None and self._backend.transport is not None:
            self._backend.transport.resume_reading()

    # -- writing to the client -------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._tls is not None:
            data = self._tls.encrypt(data)
        transport.write(data)

    def _flush_tls(self) -> None:
        assert self._tls is not None and self._transport is not None
        outgoing = self._tls.pending_encrypted()
        if outgoing:
            self._transport.write(outgoing)

    def _send_error_and_close(self, error: MysqlError, sequence_id: int | None = None) -> None:
        """Sends ERR and closes. Without a sequence id, the ServerConnection numbers it; once it
        has given up on a broken handshake, 2 follows the client's HandshakeResponse41 (1)."""
        payload = ErrPacket(error.code, error.sql_state, error.message).encode()
        server = self._server
        if sequence_id is None and server is not None and server.phase is not ServerPhase.CLOSED:
            self._write(server.send_error(*error))
        else:
            self._write(encode_packet(payload, 2 if sequence_id is None else sequence_id)[0])
        self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._end_session()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._end_session()

    # -- login -----------------------------------------------------------------------------

    async def _log_in(self) -> None:
        try:
            await self._log_in_steps()
        except TimeoutError:
            self._context.log.info("session %d: handshake timed out", self.session_id)
            self._send_error_and_close(mysql_errors.BAD_HANDSHAKE)
        except PacketTooLarge:
            self._send_error_and_close(mysql_errors.PACKET_TOO_LARGE)
        except (ProtocolError, ssl.SSLError) as exc:
            self._context.log.info("session %d: bad handshake: %s", self.session_id, exc)
            self._send_error_and_close(mysql_errors.BAD_HANDSHAKE)

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
                # The client has connect_timeout to say its part; waiting for a backend
                # afterwards is bounded by the borrow timeout instead.
                self._inbox.clear()
                await asyncio.wait_for(self._inbox.wait(), _HANDSHAKE_TIMEOUT_S)

    def _feed_server(self) -> bool:
        """Gives pending plaintext to the ServerConnection; False when there is none."""
        assert self._server is not None
        if not self._pending:
            return False
        if self._tls is None:
            # Before TLS starts, give exactly one packet: the bytes after an SSLRequest are the
            # client's TLS ClientHello, which must go to TLS, not to the MySQL parser.
            if len(self._pending) < 4:
                return False
            length = int.from_bytes(self._pending[:3], "little")
            if length > _MAX_FIRST_PACKET_BYTES:
                raise ProtocolError(f"first packet of {length} bytes is not a handshake")
            if len(self._pending) < 4 + length:
                return False
            packet, self._pending = self._pending[: 4 + length], self._pending[4 + length :]
            self._server.receive_data(packet)
        else:
            self._server.receive_data(self._pending)
            self._pending = b""
        return True

    async def _log_in_steps(self) -> None:
        event = await self._next_login_event()
        if isinstance(event, TlsRequested):
            self._start_tls()
            event = await self._next_login_event()
        if not isinstance(event, LoginRequested):
            raise ProtocolError(f"expected a login, got {type(event).__name__}")
        await self._accept_login(event)

    def _start_tls(self) -> None:
        context = self._context.client_tls_context
        assert context is not None and self._server is not None
        self._tls = TlsChannel(context)
        self._context.metrics.count("ClientConnectionsTLS")
        self._server.tls_started()
        early, self._pending = self._pending, b""
        self._pending = self._tls.receive_encrypted(early) if early else b""
        self._flush_tls()

    async def _accept_login(self, login: LoginRequested) -> None:
        server = self._server
        assert server is not None
        if self._context.config.require_tls and self._tls is None:
            self._context.metrics.count("ClientConnectionsNoTLS")
            self._send_error_and_close(mysql_errors.INSECURE_TRANSPORT)
            return
        secret = await self._context.secrets.find(login.username)
        if requires_token(secret) and self._tls is None:
            self._context.metrics.count("ClientConnectionsNoTLS")
            self._send_error_and_close(mysql_errors.INSECURE_TRANSPORT)
            return
        verdict = await self._check_credentials(
            login.username,
            secret,
            login.auth_plugin_name,
            login.auth_response,
            switch_plugin=self._switch_plugin_at_login,
            confirm_fast_auth=lambda: self._write(server.send_auth_more_data(b"\x03")),
        )
        if not verdict.is_accepted:
            self._context.log.info(
                "session %d: login refused for %r: %s",
                self.session_id,
                login.username,
                verdict.reason,
            )
            self._context.metrics.count("ClientConnectionsSetupFailedAuth")
            error = mysql_errors.access_denied(
                login.username, self._peer_host, is_password_used=verdict.is_password_used
            )
            self._send_error_and_close(error)
            return
        self.username = login.username
        self._profile = BackendProfile.of_client(
            server.negotiated_capabilities, login.character_set, login.database
        )
        if await self._lease_backend(login.username, login.database):
            assert self._backend is not None
            self._write(server.send_ok(status_flags=self._backend.status_flags))
            self._move_to(SessionPhase.RELAYING)
            self._context.metrics.count("ClientConnectionsSetupSucceeded")
            if self._pending:
                early, self._pending = self._pending, b""
                self._relay_from_client(early)

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
        """The tenant's password, or a db-auth token when its secret requires one."""
        assert self._server is not None
        is_tls = self._tls is not None
        if requires_token(secret):
            return await verify_token_login(
                username,
                plugin_name,
                auth_response,
                is_tls=is_tls,
                switch_plugin=switch_plugin,
                tokens=self._context.token_logins,
            )
        return await verify_login(
            plugin_name,
            auth_response,
            secret,
            scramble=self._server.scramble,
            is_tls=is_tls,
            switch_plugin=switch_plugin,
            confirm_fast_auth=confirm_fast_auth,
        )

    async def _switch_plugin_at_login(self, plugin_name: str) -> tuple[bytes, bytes]:
        """AuthSwitchRequest during the login; returns the client's answer and the scramble."""
        assert self._server is not None
        self._write(self._server.send_auth_switch(plugin_name))
        event = await self._next_login_event()
        if not isinstance(event, AuthResponseReceived):
            raise ProtocolError(f"expected an auth response, got {type(event).__name__}")
        return event.data, self._server.scramble

    # -- leasing ---------------------------------------------------------------------------

    async def _lease_backend(self, db_user: str, database: str | None) -> bool:
        """Leases a backend on the right schema; on failure tells the client and closes."""
        assert self._profile is not None
        state = self._context.router.pick(self._endpoint.role)
        if state is None:
            self._send_error_and_close(mysql_errors.backend_unavailable(self._endpoint.name))
            return False
        pool = self._context.pools.pool_for(state, db_user, self._profile)
        lease = await self._acquire_live_backend(pool, state)
        if lease is None:
            return False
        if not await self._select_schema(pool, lease, state, database):
            return False
        if self.phase is SessionPhase.CLOSED:  # the client left while we waited
            await pool.release(lease)
            return False
        self._attach(lease, pool, state)
        return True

    async def _acquire_live_backend(
        self, pool: Pool[BackendConnection], state: TargetState
    ) -> Lease[BackendConnection] | None:
        """A leased backend that answers; None after telling the client why there is none."""
        for _ in range(_LIVENESS_ATTEMPTS):
            try:
                self._context.metrics.count("DatabaseConnectionRequests")
                asked_at = time.perf_counter()
                lease = await pool.acquire()
                self._context.metrics.observe_borrow_latency_us(
                    (time.perf_counter() - asked_at) * 1e6
                )
            except BorrowTimeout:
                self._context.metrics.count("DatabaseConnectionsBorrowTimeouts")
                self._send_error_and_close(mysql_errors.BORROW_TIMEOUT)
                return None
            except BackendLoginRejected as exc:
                self._send_error_and_close(MysqlError(*_fields(exc.error)))
                return None
            except (BackendError, PoolClosed) as exc:
                self._context.log.warning("session %d: no backend: %s", self.session_id, exc)
                self._send_error_and_close(mysql_errors.backend_unavailable(state.target.name))
                return None
            if await self._is_alive(lease.connection):
                return lease
            await pool.release(lease, is_broken=True)
        self._send_error_and_close(mysql_errors.backend_unavailable(state.target.name))
        return None

    async def _is_alive(self, backend: BackendConnection) -> bool:
        """Pings a backend that sat idle long enough for the server to have dropped it
        (wait_timeout, a KILL, a restart): PgBouncer's server_check_delay."""
        if backend.is_broken:
            return False
        idle_s = time.monotonic() - backend.last_released_at
        if idle_s < self._context.config.backend_check_after_idle_s:
            return True
        try:
            await backend.run_simple_command(commands.com_ping())
        except BackendError:
            return False
        return True

    async def _select_schema(
        self,
        pool: Pool[BackendConnection],
        lease: Lease[BackendConnection],
        state: TargetState,
        database: str | None,
    ) -> bool:
        """COM_INIT_DB when the backend sits on another schema; the server's own refusal
        (1044 for another tenant's database) goes to the client as it is."""
        backend = lease.connection
        if database is None or database == backend.current_schema:
            return True
        try:
            await backend.run_simple_command(commands.com_init_db(database))
        except BackendCommandFailed as exc:
            await pool.release(lease, needs_reset=False)
            self._send_error_and_close(MysqlError(*_fields(exc.error)))
            return False
        except BackendError:
            await pool.release(lease, is_broken=True)
            self._send_error_and_close(mysql_errors.backend_unavailable(state.target.name))
            return False
        backend.current_schema = database
        return True

    def _attach(
        self, lease: Lease[BackendConnection], pool: Pool[BackendConnection], state: TargetState
    ) -> None:
        backend = lease.connection
        self._lease, self._lease_pool, self._lease_target = lease, pool, state
        self._backend = backend
        state.active_leases += 1
        backend.relay_sink = self._relay_from_backend
        backend.on_lost = self._backend_lost
        backend.on_pause_writing = self._pause_client_reading
        backend.on_resume_writing = self._resume_client_reading

    def _detach(self) -> tuple[Pool[BackendConnection], Lease[BackendConnection], bool] | None:
        """Takes the backend back from the relay; returns (pool, lease, is_reusable)."""
        lease, pool, backend, state = (
            self._lease,
            self._lease_pool,
            self._backend,
            self._lease_target,
        )
        if lease is None or pool is None or backend is None or state is None:
            return None
        backend.relay_sink = None
        backend.last_released_at = time.monotonic()
        backend.on_lost = None
        backend.on_pause_writing = backend.on_resume_writing = None
        if backend.transport is not None:
            backend.transport.resume_reading()
        state.active_leases -= 1
        self._lease = self._lease_pool = self._backend = self._lease_target = None
        tracker = backend.tracker
        is_reusable = not backend.is_broken and tracker is not None and tracker.is_idle
        return pool, lease, is_reusable

    def _release_backend(self) -> None:
        detached = self._detach()
        if detached is None:
            return
        pool, lease, is_reusable = detached
        self._context.spawn(pool.release(lease, needs_reset=True, is_broken=not is_reusable))

    def _pause_client_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def _resume_client_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    # -- relaying --------------------------------------------------------------------------

    def _relay_from_client(self, data: bytes) -> None:
        backend = self._backend
        assert backend is not None and backend.tracker is not None and backend.transport is not None
        if self._is_one_plain_command(data, backend):
            # The usual case: the chunk is exactly one small command the proxy does not answer.
            backend.tracker.command_sent(data[4:20])
            backend.transport.write(data)
            return
        try:
            packets = self._splitter.feed(data)
        except PacketTooLarge:
            self._send_error_and_close(mysql_errors.PACKET_TOO_LARGE)
            return
        except ProtocolError:
            self._send_error_and_close(mysql_errors.MALFORMED_PACKET)
            return
        tracker = backend.tracker
        forward: list[bytes] = []
        for index, packet in enumerate(packets):
            if not packet.is_continuation:
                if tracker.is_awaiting_local_infile:
                    tracker.local_infile_packet_sent(len(packet.payload))
                elif not self._forward_command(packet, packets[index + 1 :], forward):
                    break
            forward.append(packet.raw)
        if forward:
            backend.transport.write(forward[0] if len(forward) == 1 else b"".join(forward))

    def _is_one_plain_command(self, data: bytes, backend: BackendConnection) -> bool:
        tracker = backend.tracker
        return (
            len(data) > 4
            and data[3] == 0  # sequence id 0: a new command
            and int.from_bytes(data[:3], "little") + 4 == len(data)
            and data[4] not in _ANSWERED_BY_THE_PROXY
            and self._splitter.buffered_bytes == 0
            and tracker is not None
            and not tracker.is_awaiting_local_infile
        )

    def _forward_command(
        self, packet: WirePacket, rest: list[WirePacket], forward: list[bytes]
    ) -> bool:
        """Handles the commands the proxy answers itself; True when the packet goes on."""
        command = packet.payload[0] if packet.payload else None
        if command is None or packet.sequence_id != 0:
            self._flush_then(
                forward,
                lambda: self._send_error_and_close(
                    mysql_errors.PACKETS_OUT_OF_ORDER
                    if command is not None
                    else mysql_errors.MALFORMED_PACKET
                ),
            )
            return False
        if command == Command.COM_QUIT:
            self._flush_then(forward, self._close)
            return False
        if command == Command.COM_CHANGE_USER:
            # The proxy answers it; bytes after it wait until the new login is done.
            self._move_to(SessionPhase.CHANGING_USER)
            self._pending = b"".join(later.raw for later in rest)
            payload = packet.payload
            self._flush_then(forward, lambda: self._context.spawn(self._change_user(payload)))
            return False
        if command == Command.COM_PROCESS_KILL:
            self._flush_then(forward, lambda: self._kill(packet.payload))
            return False
        assert self._backend is not None and self._backend.tracker is not None
        self._backend.tracker.command_sent(packet.payload[:16])
        return True

    def _flush_then(self, forward: list[bytes], action: object) -> None:
        backend = self._backend
        if forward and backend is not None and backend.transport is not None:
            backend.transport.write(b"".join(forward))
            forward.clear()
        assert callable(action)
        action()

    def _relay_from_backend(self, data: bytes) -> None:
        self._write(data)
        backend = self._backend
        assert backend is not None and backend.tracker is not None
        try:
            backend.tracker.server_data(data)
        except ProtocolError as exc:
            self._context.log.warning(
                "session %d: backend broke the protocol: %s", self.session_id, exc
            )
            backend.mark_broken()
            self._close()

    def _backend_lost(self) -> None:
        # The database dropped the connection: the client cannot go on with this session.
        self._context.log.info("session %d: backend connection lost", self.session_id)
        self._close()

    # -- commands the proxy answers itself -------------------------------------------------

    async def _change_user(self, payload: bytes) -> None:
        """COM_CHANGE_USER: log the client in again and move the session to the new user's pool."""
        server = self._server
        assert server is not None and self._profile is not None
        try:
            request = ComChangeUser.decode(payload, server.negotiated_capabilities)
        except ProtocolError:
            self._send_error_and_close(mysql_errors.MALFORMED_PACKET, sequence_id=1)
            return
        self._change_user_decoder = PacketDecoder(
            self._context.config.max_packet_bytes, expected_sequence_id=2
        )
        self._change_user_sequence_id = 1  # COM_CHANGE_USER was packet 0
        try:
            verdict = await self._check_credentials(
                request.username,
                await self._context.secrets.find(request.username),
                request.auth_plugin_name,
                request.auth_response,
                switch_plugin=self._switch_plugin_in_change_user,
            )
        except ProtocolError:
            self._send_error_and_close(mysql_errors.MALFORMED_PACKET)
            return
        finally:
            self._change_user_decoder = None
        if not verdict.is_accepted:
            error = mysql_errors.access_denied(
                request.username, self._peer_host, is_password_used=verdict.is_password_used
            )
            self._send_error_and_close(error, sequence_id=self._change_user_sequence_id)
            return
        self._release_backend()
        self.username = request.username
        self._profile = BackendProfile.of_client(
            server.negotiated_capabilities, request.character_set, request.database
        )
        if not await self._lease_backend(request.username, request.database):
            return
        assert self._backend is not None
        ok = OkPacket(status_flags=self._backend.status_flags)
        ok_payload = ok.encode(server.negotiated_capabilities)
        self._write(encode_packet(ok_payload, self._change_user_sequence_id)[0])
        self._move_to(SessionPhase.RELAYING)

    async def _switch_plugin_in_change_user(self, plugin_name: str) -> tuple[bytes, bytes]:
        """AuthSwitchRequest inside COM_CHANGE_USER, framed here: the command phase counts."""
        scramble = auth_plugins.new_scramble()
        request = AuthSwitchRequest(plugin_name, scramble + b"\x00").encode()
        self._write(encode_packet(request, self._change_user_sequence_id)[0])
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
            await self._inbox.wait()
        self._change_user_sequence_id = (answer[0] + 1) % 256
        return answer[1], scramble

    def _kill(self, payload: bytes) -> None:
        """COM_PROCESS_KILL names a proxy session id (the id our handshake gave)."""
        thread_id = int.from_bytes(payload[1:5], "little")
        victim = self._context.sessions.get(thread_id)
        if victim is None or victim.username != self.username:
            error = mysql_errors.unknown_thread(thread_id)
            self._write(encode_packet(ErrPacket(*error).encode(), 1)[0])
            return
        assert self._server is not None
        ok_payload = OkPacket().encode(self._server.negotiated_capabilities)
        self._write(encode_packet(ok_payload, 1)[0])
        victim._close()

    # -- the end ---------------------------------------------------------------------------

    def close_for_shutdown(self) -> None:
        self._close()

    def close_for_idleness(self) -> None:
        self._send_error_and_close(mysql_errors.IDLE_TIMEOUT, sequence_id=0)

    @property
    def is_idle(self) -> bool:
        backend = self._backend
        return backend is None or backend.tracker is None or backend.tracker.is_idle

    def _move_to(self, phase: SessionPhase) -> None:
        if phase not in ALLOWED_TRANSITIONS[self.phase]:
            raise AssertionError(f"session cannot go from {self.phase} to {phase}")
        self.phase = phase

    def _end_session(self) -> None:
        if self.phase is SessionPhase.CLOSED:
            return
        self._move_to(SessionPhase.CLOSED)
        self._release_backend()
        self._context.sessions.pop(self.session_id, None)
        self._context.metrics.count("ClientConnectionsClosed")
        if not self.closed.done():
            self.closed.set_result(None)


def _fields(error: ErrPacket) -> tuple[int, str, str]:
    return error.error_code, error.sql_state, error.error_message
