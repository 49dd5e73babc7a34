"""One client connection's life in the proxy: its phases, the backend it holds, its end.

Phases (``ALLOWED_TRANSITIONS``): HANDSHAKE while the login runs (login_flow.py: the proxy's
handshake, TLS, the credentials, the first lease); RELAYING once the client has its OK, bytes
going both ways through the relay (relay.py) without decoding rows; ANSWERING while the proxy
answers a command itself, the client's later bytes waiting (COM_CHANGE_USER in change_user.py,
a KILL done elsewhere in kill_answers.py); CLOSED at the end, from any of them.

In session mode the session holds one backend from its login to its end. In transaction mode
its multiplexer (multiplexer.py) holds one only while the client needs it; the session takes it
back from the multiplexer only to answer COM_CHANGE_USER on it.
"""

from __future__ import annotations

import asyncio
import enum
import math
import ssl
import time
from typing import TYPE_CHECKING, Any, cast

from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.change_user import ChangeUser
from tenantproxy.proxy.client_channel import ClientChannel, PendingBytes
from tenantproxy.proxy.kill_answers import KillAnswers
from tenantproxy.proxy.leasing import give_back
from tenantproxy.proxy.login_flow import LoginFlow
from tenantproxy.proxy.multiplexer import Multiplexer
from tenantproxy.proxy.relay import Relay
from tenantproxy.wire.mysql.constants import CapabilityFlags, ServerStatus
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.framing import PacketSplitter, encode_packet
from tenantproxy.wire.mysql.responses import ErrPacket, OkPacket
from tenantproxy.wire.mysql.server_connection import ServerConnection, ServerPhase

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from tenantproxy.config import EndpointConfig
    from tenantproxy.proxy.backends import BackendProfile
    from tenantproxy.proxy.kill import KillRequest
    from tenantproxy.proxy.leasing import HeldBackend
    from tenantproxy.proxy.login_trace import LoginTrace
    from tenantproxy.proxy.mysql_errors import MysqlError
    from tenantproxy.proxy.server import ProxyContext


class SessionPhase(enum.Enum):
    HANDSHAKE = "handshake"  # before the login is accepted
    RELAYING = "relaying"  # bytes flow between client and backend
    # The proxy answers a command itself (COM_CHANGE_USER, a KILL run on another target); the
    # client's later bytes wait in PendingBytes until it is done.
    ANSWERING = "answering"
    CLOSED = "closed"


ALLOWED_TRANSITIONS: dict[SessionPhase, set[SessionPhase]] = {
    SessionPhase.HANDSHAKE: {SessionPhase.RELAYING, SessionPhase.CLOSED},
    SessionPhase.RELAYING: {SessionPhase.ANSWERING, SessionPhase.CLOSED},
    SessionPhase.ANSWERING: {SessionPhase.RELAYING, SessionPhase.CLOSED},
    SessionPhase.CLOSED: set(),
}


class ClientSession(asyncio.Protocol):
    """The proxy side of one client connection: its phase, its bytes, its backend, its end."""

    def __init__(self, context: ProxyContext, endpoint: EndpointConfig) -> None:
        self.context = context
        self.endpoint = endpoint
        self.session_id = context.next_session_id()
        self.phase = SessionPhase.HANDSHAKE
        self.username: str | None = None
        self.last_activity = time.monotonic()
        self.closed = asyncio.get_running_loop().create_future()
        self.is_multiplexed = context.config.pool_mode_of(endpoint) == "transaction"
        self._client: ClientChannel | None = None
        self._server: ServerConnection | None = None
        self._login: LoginFlow | None = None
        self._pending = PendingBytes()
        self._splitter = PacketSplitter(context.config.max_packet_bytes)
        # Session mode: the backend held from login to logout. Transaction mode: the
        # multiplexer holds one only while the client needs it.
        self._held: HeldBackend | None = None
        self.relay: Relay | None = None
        self._multiplexer: Multiplexer | None = None
        # Only when tracing is on: a login's span starts at the accept (login_trace.py).
        self._accepted_ns = time.time_ns() if context.tracing is not None else 0

    def __repr__(self) -> str:
        return f"<ClientSession {self.session_id} {self.username or '-'} {self.phase.value}>"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._client = client = ClientChannel(cast(asyncio.Transport, transport))
        context = self.context
        config = context.config
        if context.client_slots_taken() >= config.max_clients:
            # MySQL's answer when max_connections is reached, sent instead of the handshake.
            client.write(
                encode_packet(ErrPacket(*mysql_errors.TOO_MANY_CONNECTIONS).encode(), 0)[0]
            )
            client.close()
            self.phase = SessionPhase.CLOSED
            return
        self._server = server = ServerConnection(
            connection_id=self.session_id,
            server_version=context.server_version(),
            capabilities=context.offered_capabilities(),
            is_tls_offered=context.client_tls_context is not None,
            max_packet_bytes=config.max_packet_bytes,
        )
        context.sessions[self.session_id] = self
        context.admission.accept(self)
        self._login = LoginFlow(self, client, server, self._pending, self._accepted_ns)
        client.write(server.initial_handshake())
        context.spawn(self._guarded(self._login.run()))

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self.phase is SessionPhase.HANDSHAKE:
            self.context.admission.heard_from(self.session_id)
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
            self.context.client_errors.report(self.session_id, f"broken TLS: {exc}")
            client.abort()
            self._end_session()
            return
        except ProtocolError:  # a compressed packet that is not what its header says
            self.fail(mysql_errors.MALFORMED_PACKET)
            return
        if self.relay is not None and self.phase is SessionPhase.RELAYING:
            self.relay.from_client(data)
        elif data:
            self._pending.add(data)
        if client.is_closed_by_peer:  # TLS close_notify: the end, as a TCP FIN would be
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._pending.wake()
        self._end_session()

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.pause_backend()

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.resume_backend()

    # -- what the relay hands back (relay.SessionHooks) --------------------------------------

    def quit(self) -> None:
        self._close()

    def fail(self, error: MysqlError) -> None:
        self.context.client_errors.report(self.session_id, f"ERROR {error.code}: {error.message}")
        self.send_error_and_close(error, sequence_id=1)

    def backend_lost(self) -> None:
        # The database dropped the connection: the client cannot go on with this session.
        # When nothing of the answer reached it yet, it is told why, as RDS Proxy does.
        self.context.log.info("session %d: backend connection lost", self.session_id)
        if self._multiplexer is not None and self._multiplexer.outlive_backend():
            return
        relay = self.relay
        if relay is not None and not relay.is_idle and not relay.has_answered:
            self.send_error_and_close(mysql_errors.backend_lost(), sequence_id=1)
            return
        self._close()

    def change_user(self, payload: bytes, later: bytes) -> None:
        assert self._login is not None
        change = ChangeUser(self, self._login, self._pending, self._hold_backend())
        self.start_answering(later)
        self.context.spawn(self._guarded(change.run(payload)))

    def kill(self, request: KillRequest, later: bytes) -> bool:
        """KILL of a proxy session id (the id a handshake gave), answered by kill_answers.py;
        False when it runs elsewhere first, ``later`` waiting until it is done."""
        assert self.relay is not None
        return KillAnswers(self).kill(self.relay, request, later)

    def refuse(self, command: int) -> None:
        """A replication command (relay.REFUSED_BY_THE_PROXY): MariaDB's answer to a tenant."""
        self.write_packet(ErrPacket(*mysql_errors.refused_command(command)).encode(), 1)

    # -- the client's connection -------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.phase is SessionPhase.CLOSED

    @property
    def is_relaying(self) -> bool:
        return self.phase is SessionPhase.RELAYING

    @property
    def is_tls(self) -> bool:
        return self._client is not None and self._client.is_tls

    @property
    def negotiated_capabilities(self) -> CapabilityFlags:
        assert self._server is not None
        return self._server.negotiated_capabilities

    def write_packet(self, payload: bytes, sequence_id: int) -> None:
        assert self._client is not None
        self._client.write(encode_packet(payload, sequence_id)[0])

    def ok_payload(self, status: ServerStatus) -> bytes:
        return OkPacket(status_flags=status).encode(self.negotiated_capabilities)

    def send_error_and_close(self, error: MysqlError, sequence_id: int | None = None) -> None:
        """Sends ERR and closes. Without a sequence id, the ServerConnection numbers it; once it
        has given up on a broken handshake, 2 follows the client's HandshakeResponse41 (1)."""
        assert self._client is not None
        server = self._server
        if sequence_id is None and server is not None and server.phase is not ServerPhase.CLOSED:
            self._client.write(server.send_error(*error))
        else:
            payload = ErrPacket(error.code, error.sql_state, error.message).encode()
            self.write_packet(payload, 2 if sequence_id is None else sequence_id)
        self._close()

    def close_before_login(self, error: MysqlError) -> None:
        """The error when it can be said; inside a TLS handshake that never finished nothing can
        (the ERR would have to be encrypted), so the connection is cut."""
        assert self._client is not None
        if self._client.is_tls_handshaking:
            self._client.abort()
            self._end_session()
        else:
            self.send_error_and_close(error)

    def close_to_make_room(self) -> None:
        """admission.py: the unproven are all there and this one has been silent longest."""
        self.context.metrics.count("ClientLoginsEvicted")
        self.context.client_errors.report(self.session_id, "closed before its login to make room")
        self.close_before_login(mysql_errors.TOO_MANY_CONNECTIONS)

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._end_session()

    async def _guarded(self, steps: Coroutine[Any, Any, None]) -> None:
        """Runs the session's own background steps; a defect they hit closes this client with
        one log line instead of a traceback."""
        try:
            await steps
        except Exception as exc:
            self._close_after_unexpected(exc)

    def _close_after_unexpected(self, exc: Exception) -> None:
        self.context.client_errors.unexpected(self.session_id, exc)
        if self._client is not None:
            self._client.abort()
        self._end_session()

    # -- relaying and the backend ------------------------------------------------------------

    def start_relaying(
        self, held: HeldBackend, database: str | None, trace: LoginTrace | None = None
    ) -> None:
        """Relays from now on, to the backend the login (or COM_CHANGE_USER) leased; in
        transaction mode it goes back at once, and ``database`` is the session's schema."""
        client, server = self._client, self._server
        assert client is not None and server is not None
        multiplexer = None
        if self.is_multiplexed:
            assert self.username is not None and held.connection.profile is not None
            multiplexer = Multiplexer(
                self.context,
                self.endpoint,
                self.username,
                held.connection.profile,
                is_client_tracking=bool(
                    server.negotiated_capabilities & CapabilityFlags.CLIENT_SESSION_TRACK
                ),
                on_failure=self._fail_command,
            )
        self.relay = relay = Relay(client, self._splitter, self, self.context.log, multiplexer)
        if trace is not None:
            trace.watch_first_query(relay)
        self._multiplexer = multiplexer
        if multiplexer is None:
            self._held = held
            relay.attach(held.connection)
        else:
            multiplexer.start(held, relay, database)
        self.resume_relaying()

    def _fail_command(self, error: MysqlError) -> None:
        """No backend for the client's command (transaction mode): it is told, and closed."""
        if self.phase is not SessionPhase.CLOSED:
            self.fail(error)

    def start_answering(self, later: bytes) -> None:
        """The proxy answers a command itself; the client's ``later`` bytes wait until then."""
        self._move_to(SessionPhase.ANSWERING)
        self._pending.data = later

    def resume_relaying(self) -> None:
        """Back to relaying after the proxy answered a command; the bytes that waited go on."""
        assert self.relay is not None
        self._move_to(SessionPhase.RELAYING)
        if self._pending.data:
            self.relay.from_client(self._pending.take())

    def _hold_backend(self) -> tuple[BackendProfile, str | None] | None:
        """The session answers a command itself (COM_CHANGE_USER): in transaction mode it
        holds the backend itself, taken from the multiplexer, as in session mode; returns the
        profile and schema the multiplexer had (None in session mode)."""
        multiplexer = self._multiplexer
        if multiplexer is None:
            return None
        self._held = multiplexer.hand_over()
        self._multiplexer = None
        return multiplexer.profile, multiplexer.state.wanted.schema

    def take_backend(self) -> tuple[HeldBackend | None, Relay | None]:
        """The held backend and the relay, taken out of the session (COM_CHANGE_USER owns
        them until it answers; start_relaying gives the session a relay again)."""
        held, relay = self._held, self.relay
        self._held = self.relay = None
        return held, relay

    def _give_back_backend(self) -> None:
        multiplexer, self._multiplexer = self._multiplexer, None
        if multiplexer is not None:
            multiplexer.end()
        held, relay = self.take_backend()
        if held is not None:
            is_reusable = relay.detach() if relay is not None else not held.connection.is_broken
            give_back(self.context, held, is_reusable=is_reusable)

    @property
    def held_backend(self) -> HeldBackend | None:
        if self._multiplexer is not None:
            return self._multiplexer.held
        return self._held

    @property
    def multiplexer(self) -> Multiplexer | None:
        return self._multiplexer

    # -- the end ---------------------------------------------------------------------------

    def close_now(self) -> None:
        """Closes the client's connection without a word (shutdown, a KILL of this session)."""
        self._close()

    def close_for_idleness(self) -> None:
        self.send_error_and_close(mysql_errors.IDLE_TIMEOUT, sequence_id=0)

    @property
    def own_wait_timeout_s(self) -> float:
        """The client's session wait_timeout, in transaction mode, where no backend of its own
        is there to end it when idle (in session mode its backend's server does); inf when
        none applies."""
        multiplexer = self._multiplexer
        value = multiplexer.state.wanted.variables.get("wait_timeout") if multiplexer else None
        try:
            return float(value) if value else math.inf
        except ValueError:
            return math.inf

    @property
    def is_idle(self) -> bool:
        return self.relay is None or self.relay.is_idle

    def _move_to(self, phase: SessionPhase) -> None:
        if phase not in ALLOWED_TRANSITIONS[self.phase]:
            raise AssertionError(f"session cannot go from {self.phase} to {phase}")
        self.phase = phase

    def _end_session(self) -> None:
        if self.phase is SessionPhase.CLOSED:
            return
        self._move_to(SessionPhase.CLOSED)
        self._pending.wake()  # a login waiting for the client's bytes sees the end at once
        self._login = None  # it refers to the session: no cycle left for the collector
        self.context.admission.proven(self.session_id)
        self._give_back_backend()
        if self.username is not None:
            self.context.release_tenant_client(self.username)
        self.context.sessions.pop(self.session_id, None)
        self.context.metrics.count("ClientConnectionsClosed")
        if not self.closed.done():
            self.closed.set_result(None)
