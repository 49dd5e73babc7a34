"""The proxy's side of a connection facing a client, sans-IO (h11-style).

Phases and the only moves between them (``ALLOWED_TRANSITIONS``)::

    INITIAL ──initial_handshake()──► HANDSHAKE ──SSLRequest──► TLS_STARTING
                                        │   ▲                      │
                                        │   └────tls_started()─────┘
                                        └──HandshakeResponse41──► AUTH ──send_ok()──► COMMAND
    any phase ──send_error() before COMMAND, COM_QUIT, or a ProtocolError──► CLOSED

Rules (MySQL "Connection Phase", "Command Phase"):
- Sequence ids continue across the whole connection phase (HandshakeV10 is 0, the client's
  answer 1, an SSLRequest moves the HandshakeResponse41 to 2). Each command restarts at 0.
- In AUTH the client speaks only after we sent an AuthSwitchRequest or AuthMoreData; any
  bytes it sends before stay buffered.
- CLIENT_SSL is advertised only when TLS is offered; whether TLS is required is the adapter's
  call (it answers a plaintext login with ERR 3159).
"""

from __future__ import annotations

import enum

from tenantproxy.wire.mysql import auth_plugins
from tenantproxy.wire.mysql.constants import (
    UTF8MB4_GENERAL_CI,
    CapabilityFlags,
    Command,
    ServerStatus,
)
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.events import (
    NEED_DATA,
    AuthResponseReceived,
    CommandReceived,
    ConnectionClosed,
    LoginRequested,
    ServerEvent,
    TlsRequested,
)
from tenantproxy.wire.mysql.framing import PacketDecoder, encode_packet
from tenantproxy.wire.mysql.handshake import (
    SSL_REQUEST_BYTES,
    AuthMoreData,
    AuthSwitchRequest,
    HandshakeResponse41,
    HandshakeV10,
    SSLRequest,
)
from tenantproxy.wire.mysql.responses import ErrPacket, OkPacket

Flags = CapabilityFlags
# What the proxy needs from every client: 4.1 protocol, 20-byte scrambles, named auth plugins.
REQUIRED_SERVER_CAPABILITIES = (
    Flags.CLIENT_PROTOCOL_41 | Flags.CLIENT_SECURE_CONNECTION | Flags.CLIENT_PLUGIN_AUTH
)


class ServerPhase(enum.Enum):
    INITIAL = "INITIAL"
    HANDSHAKE = "HANDSHAKE"
    TLS_STARTING = "TLS_STARTING"
    AUTH = "AUTH"
    COMMAND = "COMMAND"
    CLOSED = "CLOSED"


_P = ServerPhase
ALLOWED_TRANSITIONS: dict[ServerPhase, frozenset[ServerPhase]] = {
    _P.INITIAL: frozenset({_P.HANDSHAKE, _P.CLOSED}),
    _P.HANDSHAKE: frozenset({_P.TLS_STARTING, _P.AUTH, _P.CLOSED}),
    _P.TLS_STARTING: frozenset({_P.HANDSHAKE, _P.CLOSED}),
    _P.AUTH: frozenset({_P.COMMAND, _P.CLOSED}),
    _P.COMMAND: frozenset({_P.CLOSED}),
    _P.CLOSED: frozenset(),
}


class ServerConnection:
    """Speaks the server side of the MySQL protocol to one client."""

    def __init__(
        self,
        *,
        connection_id: int,
        server_version: str,
        capabilities: CapabilityFlags,
        is_tls_offered: bool,
        auth_plugin_name: str = auth_plugins.MYSQL_NATIVE_PASSWORD,
        character_set: int = UTF8MB4_GENERAL_CI,
        status_flags: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT,
        max_packet_bytes: int = 64 * 1024 * 1024,
        scramble: bytes | None = None,
    ) -> None:
        if auth_plugin_name not in auth_plugins.PLUGIN_NAMES:
            raise ValueError(f"unsupported auth plugin {auth_plugin_name!r}")
        caps = capabilities | REQUIRED_SERVER_CAPABILITIES
        caps = caps | Flags.CLIENT_SSL if is_tls_offered else caps & ~Flags.CLIENT_SSL
        self.connection_id = connection_id
        self.server_version = server_version
        self.capabilities = caps
        self.is_tls_offered = is_tls_offered
        self.auth_plugin_name = auth_plugin_name
        self.character_set = character_set
        self.status_flags = status_flags
        self.scramble = scramble if scramble is not None else auth_plugins.new_scramble()
        self.negotiated_capabilities = caps
        self.is_tls = False
        self.phase = ServerPhase.INITIAL
        self._decoder = PacketDecoder(max_packet_bytes, expected_sequence_id=1)
        self._send_sequence_id = 0
        self._is_awaiting_auth_response = False

    def __repr__(self) -> str:
        return (
            f"ServerConnection(connection_id={self.connection_id}, phase={self.phase.name}, "
            f"is_tls={self.is_tls})"
        )

    def _move_to(self, phase: ServerPhase) -> None:
        if phase not in ALLOWED_TRANSITIONS[self.phase]:
            raise ProtocolError(f"cannot go from {self.phase.name} to {phase.name}")
        self.phase = phase

    def _frame(self, payload: bytes) -> bytes:
        data, self._send_sequence_id = encode_packet(payload, self._send_sequence_id)
        # The client's next packet continues the exchange, except in the command phase where
        # it starts a new command at 0.
        is_command = self.phase is ServerPhase.COMMAND
        self._decoder.expected_sequence_id = 0 if is_command else self._send_sequence_id
        return data

    def _require_phase(self, *phases: ServerPhase) -> None:
        if self.phase not in phases:
            raise ProtocolError(f"not allowed in phase {self.phase.name}")

    # -- sending ---------------------------------------------------------------------------

    def initial_handshake(self) -> bytes:
        self._move_to(ServerPhase.HANDSHAKE)
        message = HandshakeV10(
            server_version=self.server_version,
            connection_id=self.connection_id,
            auth_plugin_data=self.scramble,
            capability_flags=self.capabilities,
            character_set=self.character_set,
            status_flags=self.status_flags,
            auth_plugin_name=self.auth_plugin_name,
        )
        return self._frame(message.encode())

    def tls_started(self) -> None:
        self._move_to(ServerPhase.HANDSHAKE)
        self.is_tls = True

    def send_auth_switch(self, plugin_name: str) -> bytes:
        self._require_phase(ServerPhase.AUTH)
        if plugin_name not in auth_plugins.PLUGIN_NAMES:
            raise ValueError(f"unsupported auth plugin {plugin_name!r}")
        data = b""
        if plugin_name != auth_plugins.MYSQL_CLEAR_PASSWORD:
            self.scramble = auth_plugins.new_scramble()
            data = self.scramble + b"\x00"  # as MySQL sends it: the nonce, NUL-terminated
        self.auth_plugin_name = plugin_name
        self._is_awaiting_auth_response = True
        return self._frame(AuthSwitchRequest(plugin_name, data).encode())

    def send_auth_more_data(self, data: bytes) -> bytes:
        self._require_phase(ServerPhase.AUTH)
        self._is_awaiting_auth_response = True
        return self._frame(AuthMoreData(data).encode())

    def send_ok(
        self,
        *,
        status_flags: ServerStatus | None = None,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        warnings: int = 0,
        info: bytes = b"",
    ) -> bytes:
        self._require_phase(ServerPhase.AUTH, ServerPhase.COMMAND)
        if status_flags is not None:
            self.status_flags = status_flags
        ok = OkPacket(affected_rows, last_insert_id, self.status_flags, warnings, info)
        data = self._frame(ok.encode(self.negotiated_capabilities))
        if self.phase is ServerPhase.AUTH:
            self._move_to(ServerPhase.COMMAND)
            self._is_awaiting_auth_response = False
            self._decoder.expected_sequence_id = 0
        return data

    def send_error(self, code: int, sql_state: str, message: str) -> bytes:
        """ERR_Packet; before the command phase it ends the connection (phase CLOSED)."""
        data = self._frame(ErrPacket(code, sql_state, message).encode(Flags.CLIENT_PROTOCOL_41))
        if self.phase is not ServerPhase.COMMAND:
            self._move_to(ServerPhase.CLOSED)
        return data

    def send_packets(self, payloads: list[bytes]) -> bytes:
        """Frame response packets of the current command with consecutive sequence ids."""
        self._require_phase(ServerPhase.COMMAND)
        return b"".join(self._frame(payload) for payload in payloads)

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._decoder.feed(data)

    def next_event(self) -> ServerEvent:
        if self.phase is ServerPhase.CLOSED:
            return ConnectionClosed()
        if self.phase in (ServerPhase.INITIAL, ServerPhase.TLS_STARTING):
            return NEED_DATA
        if self.phase is ServerPhase.AUTH and not self._is_awaiting_auth_response:
            return NEED_DATA
        try:
            packet = self._decoder.next_packet()
            if packet is None:
                return NEED_DATA
            sequence_id, payload = packet
            self._send_sequence_id = (sequence_id + 1) & 0xFF
            return self._handle(payload)
        except ProtocolError:
            self.phase = ServerPhase.CLOSED
            raise

    def _handle(self, payload: bytes) -> ServerEvent:
        if self.phase is ServerPhase.HANDSHAKE:
            return self._handle_login(payload)
        if self.phase is ServerPhase.AUTH:
            self._is_awaiting_auth_response = False
            return AuthResponseReceived(payload)
        if not payload:
            raise ProtocolError("empty command packet")
        # Each command starts a new exchange: the client's next command carries id 0 again.
        self._decoder.expected_sequence_id = 0
        if payload[0] == Command.COM_QUIT:
            self._move_to(ServerPhase.CLOSED)
            return ConnectionClosed()
        return CommandReceived(payload[0], payload)

    def _handle_login(self, payload: bytes) -> ServerEvent:
        if len(payload) < 4:
            raise ProtocolError(f"login packet too short ({len(payload)} bytes)")
        client_caps = int.from_bytes(payload[:4], "little")
        if len(payload) == SSL_REQUEST_BYTES and client_caps & Flags.CLIENT_SSL:
            if not self.is_tls_offered or self.is_tls:
                raise ProtocolError("SSLRequest but TLS is not offered or already started")
            ssl_request = SSLRequest.decode(payload)
            self._move_to(ServerPhase.TLS_STARTING)
            return TlsRequested(ssl_request)
        response = HandshakeResponse41.decode(payload)
        if not response.capability_flags & Flags.CLIENT_SECURE_CONNECTION:
            raise ProtocolError("client lacks CLIENT_SECURE_CONNECTION (pre-4.1 auth)")
        self.negotiated_capabilities = response.capability_flags & self.capabilities
        self._move_to(ServerPhase.AUTH)
        return LoginRequested(response)
