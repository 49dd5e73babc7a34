"""The proxy's side of a connection facing a backend database, sans-IO (h11-style).

Phases and the only moves between them (``ALLOWED_TRANSITIONS``)::

    AWAIT_HANDSHAKE ──HandshakeV10, use_tls──► TLS_STARTING ──tls_started()──► AUTH
          │                                                                      ▲  │
          └──────────────HandshakeV10, no TLS──────────────────────────────────────┘  │
    AUTH ──OK──► COMMAND        AWAIT_HANDSHAKE / AUTH ──ERR──► CLOSED (LoginFailed)

Rules (MySQL "Connection Phase", "Authentication Methods"):
- After every ``next_event()`` the adapter writes ``data_to_send()``.
- The password leaves only as a scramble, or in clear text over TLS (mysql_clear_password,
  caching_sha2_password full authentication). No RSA key exchange: without TLS those are
  ProtocolErrors.
- MariaDB's extended capabilities (HandshakeV10 reserved bytes) are read, kept in
  ``server_capabilities``, and requested only when ``capabilities`` holds them.
"""

from __future__ import annotations

import enum

from tenantproxy.wire.mysql import auth_plugins
from tenantproxy.wire.mysql.constants import (
    UTF8MB4_GENERAL_CI,
    CapabilityFlags,
    PacketHeader,
    ServerStatus,
)
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.events import (
    NEED_DATA,
    Authenticated,
    ClientEvent,
    LoginFailed,
    ResponsePacket,
    StartTls,
)
from tenantproxy.wire.mysql.framing import PacketDecoder, encode_packet
from tenantproxy.wire.mysql.handshake import (
    AuthMoreData,
    AuthSwitchRequest,
    HandshakeResponse41,
    HandshakeV10,
    SSLRequest,
)
from tenantproxy.wire.mysql.responses import ErrPacket, OkPacket

Flags = CapabilityFlags
ALWAYS_REQUESTED = (
    Flags.CLIENT_PROTOCOL_41
    | Flags.CLIENT_SECURE_CONNECTION
    | Flags.CLIENT_PLUGIN_AUTH
    | Flags.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
)
_AUTH_MORE_DATA = 0x01


class ClientPhase(enum.Enum):
    AWAIT_HANDSHAKE = "AWAIT_HANDSHAKE"
    TLS_STARTING = "TLS_STARTING"
    AUTH = "AUTH"
    COMMAND = "COMMAND"
    CLOSED = "CLOSED"


_P = ClientPhase
ALLOWED_TRANSITIONS: dict[ClientPhase, frozenset[ClientPhase]] = {
    _P.AWAIT_HANDSHAKE: frozenset({_P.TLS_STARTING, _P.AUTH, _P.CLOSED}),
    _P.TLS_STARTING: frozenset({_P.AUTH, _P.CLOSED}),
    _P.AUTH: frozenset({_P.COMMAND, _P.CLOSED}),
    _P.COMMAND: frozenset({_P.CLOSED}),
    _P.CLOSED: frozenset(),
}


class ClientConnection:
    """Speaks the client side of the MySQL protocol to one backend."""

    def __init__(
        self,
        *,
        username: str,
        password: bytes,
        database: str | None,
        capabilities: CapabilityFlags,
        character_set: int = UTF8MB4_GENERAL_CI,
        connect_attrs: dict[str, str] | None = None,
        use_tls: bool = False,
        max_packet_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.username = username
        self._password = password
        self.database = database
        self.character_set = character_set
        self.connect_attrs = dict(connect_attrs or {})
        self.use_tls = use_tls
        wanted = capabilities | ALWAYS_REQUESTED
        wanted = wanted | Flags.CLIENT_SSL if use_tls else wanted & ~Flags.CLIENT_SSL
        if database is None:
            wanted &= ~Flags.CLIENT_CONNECT_WITH_DB
        else:
            wanted |= Flags.CLIENT_CONNECT_WITH_DB
        if self.connect_attrs:
            wanted |= Flags.CLIENT_CONNECT_ATTRS
        self.wanted_capabilities = wanted
        self.negotiated_capabilities = wanted
        # What the server offered in its HandshakeV10 (all of it, not only what we asked for).
        self.server_capabilities = CapabilityFlags(0)
        self.server_status = ServerStatus(0)
        self.connection_id = 0
        self.server_version = ""
        self.is_tls = False
        self.phase = ClientPhase.AWAIT_HANDSHAKE
        self._decoder = PacketDecoder(max_packet_bytes, expected_sequence_id=0)
        self._send_sequence_id = 0
        self._outgoing = bytearray()
        self._nonce = b""
        self._plugin_name = ""

    def __repr__(self) -> str:
        return (
            f"ClientConnection(username={self.username!r}, database={self.database!r}, "
            f"phase={self.phase.name}, is_tls={self.is_tls})"
        )

    __str__ = __repr__

    def _move_to(self, phase: ClientPhase) -> None:
        if phase not in ALLOWED_TRANSITIONS[self.phase]:
            raise ProtocolError(f"cannot go from {self.phase.name} to {phase.name}")
        self.phase = phase

    def _queue(self, payload: bytes) -> None:
        data, self._send_sequence_id = encode_packet(payload, self._send_sequence_id)
        self._decoder.expected_sequence_id = self._send_sequence_id
        self._outgoing += data

    @property
    def auth_nonce(self) -> bytes:
        """The scramble the server gave (HandshakeV10, or its last auth switch): a later
        COM_CHANGE_USER answers it."""
        return self._nonce

    # -- adapter API -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._decoder.feed(data)

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def tls_started(self) -> None:
        self._move_to(ClientPhase.AUTH)
        self.is_tls = True
        self._queue(self._handshake_response())

    def send_command(self, payload: bytes) -> bytes:
        if self.phase is not ClientPhase.COMMAND:
            raise ProtocolError(f"cannot send a command in phase {self.phase.name}")
        data, self._send_sequence_id = encode_packet(payload, 0)
        self._decoder.expected_sequence_id = self._send_sequence_id
        return data

    def next_event(self) -> ClientEvent:
        if self.phase in (ClientPhase.CLOSED, ClientPhase.TLS_STARTING):
            return NEED_DATA
        try:
            while (packet := self._decoder.next_packet()) is not None:
                sequence_id, payload = packet
                self._send_sequence_id = (sequence_id + 1) & 0xFF
                event = self._handle(payload)
                if event is not None:
                    return event
            return NEED_DATA
        except ProtocolError:
            self.phase = ClientPhase.CLOSED
            raise

    # -- the connection phase --------------------------------------------------------------

    def _handle(self, payload: bytes) -> ClientEvent | None:
        if not payload:
            raise ProtocolError(f"empty packet in phase {self.phase.name}")
        if self.phase is ClientPhase.COMMAND:
            return ResponsePacket(payload)
        if payload[0] == PacketHeader.ERR:
            self._move_to(ClientPhase.CLOSED)
            return LoginFailed(ErrPacket.decode(payload, self.negotiated_capabilities))
        if self.phase is ClientPhase.AWAIT_HANDSHAKE:
            return self._handle_handshake(HandshakeV10.decode(payload))
        if payload[0] == PacketHeader.OK:
            ok = OkPacket.decode(payload, self.negotiated_capabilities)
            self.server_status = ok.status_flags
            self._move_to(ClientPhase.COMMAND)
            return Authenticated(
                self.server_version,
                self.connection_id,
                self.negotiated_capabilities,
                self.server_status,
            )
        if payload[0] == PacketHeader.EOF:
            switch = AuthSwitchRequest.decode(payload)
            self._plugin_name = switch.plugin_name
            self._nonce = switch.plugin_data
            self._queue(self._auth_response(switch.plugin_name))
            return None
        if payload[0] == _AUTH_MORE_DATA:
            self._handle_more_data(AuthMoreData.decode(payload).data)
            return None
        raise ProtocolError(f"unexpected packet 0x{payload[0]:02x} during authentication")

    def _handle_handshake(self, handshake: HandshakeV10) -> ClientEvent | None:
        server_caps = handshake.capability_flags
        if not server_caps & Flags.CLIENT_PROTOCOL_41:
            raise ProtocolError("server does not speak protocol 4.1")
        if self.use_tls and not server_caps & Flags.CLIENT_SSL:
            raise ProtocolError("TLS was requested but the server does not offer CLIENT_SSL")
        self.server_version = handshake.server_version
        self.connection_id = handshake.connection_id
        self.server_status = handshake.status_flags
        self.server_capabilities = server_caps
        self.negotiated_capabilities = self.wanted_capabilities & server_caps
        self._nonce = handshake.auth_plugin_data
        self._plugin_name = handshake.auth_plugin_name
        if self.use_tls:
            self._queue(
                SSLRequest(self.negotiated_capabilities, character_set=self.character_set).encode()
            )
            self._move_to(ClientPhase.TLS_STARTING)
            return StartTls()
        self._move_to(ClientPhase.AUTH)
        self._queue(self._handshake_response())
        return None

    def _handshake_response(self) -> bytes:
        plugin = self._plugin_name
        # An unknown first plugin, or clear text without TLS: offer native and let the server
        # switch us (MySQL "Authentication Method Mismatch").
        if plugin not in auth_plugins.PLUGIN_NAMES or (
            plugin == auth_plugins.MYSQL_CLEAR_PASSWORD and not self.is_tls
        ):
            plugin = auth_plugins.MYSQL_NATIVE_PASSWORD
        self._plugin_name = plugin
        caps = self.negotiated_capabilities
        return HandshakeResponse41(
            capability_flags=caps,
            username=self.username,
            auth_response=self._auth_response(plugin),
            database=self.database if caps & Flags.CLIENT_CONNECT_WITH_DB else None,
            auth_plugin_name=plugin if caps & Flags.CLIENT_PLUGIN_AUTH else "",
            connect_attrs=self.connect_attrs if caps & Flags.CLIENT_CONNECT_ATTRS else {},
            character_set=self.character_set,
        ).encode()

    def _auth_response(self, plugin: str) -> bytes:
        # The nonce may arrive NUL-terminated (AuthSwitchRequest); the scramble uses 20 bytes.
        nonce = self._nonce
        if plugin == auth_plugins.MYSQL_NATIVE_PASSWORD:
            return auth_plugins.native_password_scramble(self._password, nonce)
        if plugin == auth_plugins.CACHING_SHA2_PASSWORD:
            return auth_plugins.caching_sha2_scramble(self._password, nonce)
        if plugin == auth_plugins.MYSQL_CLEAR_PASSWORD:
            if not self.is_tls:
                raise ProtocolError("mysql_clear_password is only sent over TLS")
            return auth_plugins.clear_password_response(self._password)
        raise ProtocolError(f"unsupported auth plugin {plugin!r}")

    def _handle_more_data(self, data: bytes) -> None:
        if self._plugin_name != auth_plugins.CACHING_SHA2_PASSWORD:
            raise ProtocolError(f"unexpected AuthMoreData for {self._plugin_name!r}")
        if data == auth_plugins.FAST_AUTH_SUCCESS:
            return  # the OK_Packet follows
        if data != auth_plugins.PERFORM_FULL_AUTHENTICATION:
            raise ProtocolError("unexpected caching_sha2_password AuthMoreData")
        if not self.is_tls:
            raise ProtocolError(
                "caching_sha2_password full authentication needs TLS "
                "(RSA public-key exchange is not supported)"
            )
        self._queue(auth_plugins.clear_password_response(self._password))
