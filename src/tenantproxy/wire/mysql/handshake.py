"""Connection-phase messages: HandshakeV10, SSLRequest, HandshakeResponse41, AuthSwitchRequest,
AuthMoreData, and COM_CHANGE_USER (which carries a login too).

Sources: MySQL's "Connection Phase Packets" (Protocol::HandshakeV10, Protocol::SSLRequest,
Protocol::HandshakeResponse41, Protocol::AuthSwitchRequest, Protocol::AuthMoreData),
"COM_CHANGE_USER", and MariaDB's "Connection" page (extended capabilities in the reserved bytes).

Each message is a frozen dataclass: ``encode()`` gives the payload (no packet header), ``decode()``
reads one and raises ProtocolError, never IndexError/UnicodeDecodeError, on malformed input.
Text fields are UTF-8; database ``None`` means "none given".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tenantproxy.wire.mysql.codec import Reader, int_fixed, str_lenenc, str_null
from tenantproxy.wire.mysql.constants import (
    STANDARD_CAPABILITIES_MASK,
    UTF8MB4_GENERAL_CI,
    CapabilityFlags,
    Command,
    ServerStatus,
)
from tenantproxy.wire.mysql.errors import ProtocolError

PROTOCOL_VERSION = 10
SSL_REQUEST_BYTES = 32  # int<4> flags, int<4> max packet, int<1> charset, string[23] filler
DEFAULT_MAX_PACKET_SIZE = 16 * 1024 * 1024
# The 23 filler bytes of SSLRequest and HandshakeResponse41: MariaDB uses the last 4.
_FILLER_19 = bytes(19)
# Protocol::HandshakeV10: auth-plugin-data-part-2 is "$len=MAX(13, length of auth-plugin-data - 8)".
_MIN_PART2_BYTES = 13
_AUTH_SWITCH_HEADER = 0xFE
_AUTH_MORE_DATA_HEADER = 0x01
Flags = CapabilityFlags


def decode_text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} is not valid UTF-8") from exc


def _encode_attrs(attrs: dict[str, str]) -> bytes:
    body = b"".join(
        str_lenenc(key.encode()) + str_lenenc(value.encode()) for key, value in attrs.items()
    )
    return str_lenenc(body)


def _decode_attrs(reader: Reader) -> dict[str, str]:
    attrs_reader = Reader(reader.bytes_lenenc())
    attrs: dict[str, str] = {}
    while not attrs_reader.is_at_end():
        key = decode_text(attrs_reader.bytes_lenenc(), "connection attribute name")
        attrs[key] = decode_text(attrs_reader.bytes_lenenc(), "connection attribute value")
    return attrs


def _database_or_none(raw: bytes) -> str | None:
    return decode_text(raw, "database") or None


def _split_capabilities(caps: int) -> tuple[int, int]:
    """(the 4 standard bytes, MariaDB's extended 4). MariaDB reads the extended ones only when
    CLIENT_MYSQL (CLIENT_LONG_PASSWORD) is clear, so sending any clears it."""
    extended = caps >> 32
    if extended:
        caps &= ~Flags.CLIENT_LONG_PASSWORD
    return caps & STANDARD_CAPABILITIES_MASK, extended


def _join_capabilities(standard: int, extended: int) -> CapabilityFlags:
    if standard & Flags.CLIENT_LONG_PASSWORD:
        extended = 0  # a MySQL peer: the reserved bytes mean nothing
    return CapabilityFlags(standard | (extended << 32))


@dataclass(frozen=True)
class HandshakeV10:
    """The server's first packet (Protocol::HandshakeV10)."""

    server_version: str
    connection_id: int
    auth_plugin_data: bytes  # the nonce, usually 20 bytes, without the trailing NUL
    capability_flags: CapabilityFlags
    character_set: int = UTF8MB4_GENERAL_CI
    status_flags: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT
    auth_plugin_name: str = "mysql_native_password"

    def encode(self) -> bytes:
        caps, extended = _split_capabilities(self.capability_flags)
        data = self.auth_plugin_data
        if len(data) < 8:
            raise ValueError("auth_plugin_data needs at least 8 bytes")
        part2 = data[8:] + b"\x00"
        part2 += bytes(max(0, _MIN_PART2_BYTES - len(part2)))
        has_plugin_auth = bool(caps & Flags.CLIENT_PLUGIN_AUTH)
        reserved = bytes(6) + int_fixed(extended, 4)
        out = [
            bytes((PROTOCOL_VERSION,)),
            str_null(self.server_version.encode()),
            int_fixed(self.connection_id, 4),
            data[:8],
            b"\x00",
            int_fixed(caps & 0xFFFF, 2),
            int_fixed(self.character_set, 1),
            int_fixed(int(self.status_flags), 2),
            int_fixed(caps >> 16, 2),
            int_fixed(len(data) + 1 if has_plugin_auth else 0, 1),
            reserved,
        ]
        if caps & Flags.CLIENT_SECURE_CONNECTION:
            out.append(part2)
        if has_plugin_auth:
            out.append(str_null(self.auth_plugin_name.encode()))
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeV10:
        reader = Reader(payload)
        version = reader.int_fixed(1)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"unsupported handshake protocol version {version}")
        server_version = decode_text(reader.bytes_null(), "server version")
        connection_id = reader.int_fixed(4)
        data = reader.bytes_fixed(8)
        reader.bytes_fixed(1)  # filler
        caps = reader.int_fixed(2)
        character_set = reader.int_fixed(1)
        status_flags = reader.int_fixed(2)
        caps |= reader.int_fixed(2) << 16
        data_len = reader.int_fixed(1)
        reader.bytes_fixed(6)
        extended = reader.int_fixed(4)
        if caps & Flags.CLIENT_SECURE_CONNECTION:
            data += reader.bytes_fixed(max(_MIN_PART2_BYTES, data_len - 8))
            # The nonce is data_len - 1 bytes (the last is a NUL); without CLIENT_PLUGIN_AUTH
            # data_len is 0 and part 2 is 12 bytes + NUL.
            data = data[: data_len - 1] if data_len > 8 else data[:-1]
        plugin_name = ""
        if caps & Flags.CLIENT_PLUGIN_AUTH:
            # Some servers omit the terminating NUL of the plugin name (a known MySQL bug).
            raw = reader.bytes_eof()
            plugin_name = decode_text(raw.split(b"\x00", 1)[0], "auth plugin name")
        return cls(
            server_version=server_version,
            connection_id=connection_id,
            auth_plugin_data=data,
            capability_flags=_join_capabilities(caps, extended),
            character_set=character_set,
            status_flags=ServerStatus(status_flags),
            auth_plugin_name=plugin_name,
        )


def _read_login_start(reader: Reader) -> tuple[int, int, int]:
    """The fields SSLRequest and HandshakeResponse41 share, up to MariaDB's extended
    capabilities: (capability flags, max packet size, character set)."""
    standard = reader.int_fixed(4)
    max_packet_size = reader.int_fixed(4)
    character_set = reader.int_fixed(1)
    reader.bytes_fixed(len(_FILLER_19))
    return standard, max_packet_size, character_set


@dataclass(frozen=True)
class SSLRequest:
    """Protocol::SSLRequest: the start of a HandshakeResponse41, sent before TLS starts."""

    capability_flags: CapabilityFlags
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    character_set: int = UTF8MB4_GENERAL_CI

    def encode(self) -> bytes:
        caps, extended = _split_capabilities(self.capability_flags)
        return (
            int_fixed(caps, 4)
            + int_fixed(self.max_packet_size, 4)
            + int_fixed(self.character_set, 1)
            + _FILLER_19
            + int_fixed(extended, 4)
        )

    @classmethod
    def decode(cls, payload: bytes) -> SSLRequest:
        if len(payload) != SSL_REQUEST_BYTES:
            raise ProtocolError(f"SSLRequest must be {SSL_REQUEST_BYTES} bytes, got {len(payload)}")
        reader = Reader(payload)
        standard, max_packet_size, character_set = _read_login_start(reader)
        if not standard & Flags.CLIENT_SSL:
            raise ProtocolError("SSLRequest without CLIENT_SSL")
        caps = _join_capabilities(standard, reader.int_fixed(4))
        return cls(caps, max_packet_size, character_set)


@dataclass(frozen=True)
class HandshakeResponse41:
    """The client's login (Protocol::HandshakeResponse41).

    Which optional fields are present follows ``capability_flags``: the database with
    CLIENT_CONNECT_WITH_DB, the plugin name with CLIENT_PLUGIN_AUTH, attributes with
    CLIENT_CONNECT_ATTRS.
    """

    capability_flags: CapabilityFlags
    username: str
    auth_response: bytes = b""
    database: str | None = None
    auth_plugin_name: str = ""
    connect_attrs: dict[str, str] = field(default_factory=dict)
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    character_set: int = UTF8MB4_GENERAL_CI

    def encode(self) -> bytes:
        caps = self.capability_flags
        if self.database is not None and not caps & Flags.CLIENT_CONNECT_WITH_DB:
            raise ValueError("a database needs CLIENT_CONNECT_WITH_DB")
        out = [
            SSLRequest(caps, self.max_packet_size, self.character_set).encode(),
            str_null(self.username.encode()),
        ]
        if caps & Flags.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            out.append(str_lenenc(self.auth_response))
        elif caps & Flags.CLIENT_SECURE_CONNECTION:
            if len(self.auth_response) > 0xFF:
                raise ValueError("auth_response over 255 bytes needs LENENC_CLIENT_DATA")
            out.append(int_fixed(len(self.auth_response), 1) + self.auth_response)
        else:
            out.append(str_null(self.auth_response))
        if caps & Flags.CLIENT_CONNECT_WITH_DB:
            out.append(str_null((self.database or "").encode()))
        if caps & Flags.CLIENT_PLUGIN_AUTH:
            out.append(str_null(self.auth_plugin_name.encode()))
        if caps & Flags.CLIENT_CONNECT_ATTRS:
            out.append(_encode_attrs(self.connect_attrs))
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeResponse41:
        reader = Reader(payload)
        standard, max_packet_size, character_set = _read_login_start(reader)
        if not standard & Flags.CLIENT_PROTOCOL_41:
            raise ProtocolError("client does not speak protocol 4.1 (CLIENT_PROTOCOL_41 unset)")
        caps = _join_capabilities(standard, reader.int_fixed(4))
        username = decode_text(reader.bytes_null(), "user name")
        if caps & Flags.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            auth_response = reader.bytes_lenenc()
        elif caps & Flags.CLIENT_SECURE_CONNECTION:
            auth_response = reader.bytes_fixed(reader.int_fixed(1))
        else:
            auth_response = reader.bytes_null()
        database = None
        if caps & Flags.CLIENT_CONNECT_WITH_DB:
            database = _database_or_none(reader.bytes_null())
        plugin_name = ""
        if caps & Flags.CLIENT_PLUGIN_AUTH and not reader.is_at_end():
            plugin_name = decode_text(reader.bytes_null(), "auth plugin name")
        attrs: dict[str, str] = {}
        if caps & Flags.CLIENT_CONNECT_ATTRS and not reader.is_at_end():
            attrs = _decode_attrs(reader)
        return cls(
            capability_flags=caps,
            username=username,
            auth_response=auth_response,
            database=database,
            auth_plugin_name=plugin_name,
            connect_attrs=attrs,
            max_packet_size=max_packet_size,
            character_set=character_set,
        )


@dataclass(frozen=True)
class AuthSwitchRequest:
    """Protocol::AuthSwitchRequest: 0xFE, plugin name, plugin data (often a nonce + NUL)."""

    plugin_name: str
    plugin_data: bytes = b""

    def encode(self) -> bytes:
        return (
            bytes((_AUTH_SWITCH_HEADER,)) + str_null(self.plugin_name.encode()) + self.plugin_data
        )

    @classmethod
    def decode(cls, payload: bytes) -> AuthSwitchRequest:
        reader = Reader(payload)
        if reader.int_fixed(1) != _AUTH_SWITCH_HEADER:
            raise ProtocolError("AuthSwitchRequest must start with 0xFE")
        if reader.is_at_end():
            raise ProtocolError("old-style auth switch (pre-4.1 password) is not supported")
        name = decode_text(reader.bytes_null(), "auth plugin name")
        return cls(name, reader.bytes_eof())


@dataclass(frozen=True)
class AuthMoreData:
    """Protocol::AuthMoreData: 0x01 then plugin-specific bytes."""

    data: bytes

    def encode(self) -> bytes:
        return bytes((_AUTH_MORE_DATA_HEADER,)) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> AuthMoreData:
        if not payload or payload[0] != _AUTH_MORE_DATA_HEADER:
            raise ProtocolError("AuthMoreData must start with 0x01")
        return cls(bytes(payload[1:]))


def _one_byte_character_set(number: int) -> int:
    """COM_CHANGE_USER carries the character set in two bytes, the handshake in one: a number
    no HandshakeResponse41 can carry is no character set a login can ask for."""
    if number > 0xFF:
        raise ProtocolError(f"character set {number} is out of range (0-255)")
    return number


@dataclass(frozen=True)
class ComChangeUser:
    """COM_CHANGE_USER: log in again as another user on an open connection."""

    username: str
    auth_response: bytes = b""
    database: str | None = None
    character_set: int = UTF8MB4_GENERAL_CI
    auth_plugin_name: str = ""
    connect_attrs: dict[str, str] = field(default_factory=dict)

    def encode(self, capabilities: CapabilityFlags) -> bytes:
        out = [bytes((Command.COM_CHANGE_USER,)), str_null(self.username.encode())]
        if capabilities & Flags.CLIENT_SECURE_CONNECTION:
            if len(self.auth_response) > 0xFF:
                raise ValueError("auth_response over 255 bytes")
            out.append(int_fixed(len(self.auth_response), 1) + self.auth_response)
        else:
            out.append(str_null(self.auth_response))
        out.append(str_null((self.database or "").encode()))
        out.append(int_fixed(self.character_set, 2))
        if capabilities & Flags.CLIENT_PLUGIN_AUTH:
            out.append(str_null(self.auth_plugin_name.encode()))
        if capabilities & Flags.CLIENT_CONNECT_ATTRS:
            out.append(_encode_attrs(self.connect_attrs))
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes, capabilities: CapabilityFlags) -> ComChangeUser:
        reader = Reader(payload)
        if reader.int_fixed(1) != Command.COM_CHANGE_USER:
            raise ProtocolError("COM_CHANGE_USER must start with 0x11")
        username = decode_text(reader.bytes_null(), "user name")
        if capabilities & Flags.CLIENT_SECURE_CONNECTION:
            auth_response = reader.bytes_fixed(reader.int_fixed(1))
        else:
            auth_response = reader.bytes_null()
        database = _database_or_none(reader.bytes_null())
        character_set = UTF8MB4_GENERAL_CI
        plugin_name = ""
        attrs: dict[str, str] = {}
        if not reader.is_at_end():
            character_set = _one_byte_character_set(reader.int_fixed(2))
        if capabilities & Flags.CLIENT_PLUGIN_AUTH and not reader.is_at_end():
            plugin_name = decode_text(reader.bytes_null(), "auth plugin name")
        if capabilities & Flags.CLIENT_CONNECT_ATTRS and not reader.is_at_end():
            attrs = _decode_attrs(reader)
        return cls(username, auth_response, database, character_set, plugin_name, attrs)
