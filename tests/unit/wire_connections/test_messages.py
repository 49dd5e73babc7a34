"""Messages of the connection phase and the generic responses: golden bytes, round-trips,
malformed input."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.wire.mysql.constants import CapabilityFlags as F
from tenantproxy.wire.mysql.constants import ServerStatus
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.handshake import (
    AuthMoreData,
    AuthSwitchRequest,
    ComChangeUser,
    HandshakeResponse41,
    HandshakeV10,
    SSLRequest,
)
from tenantproxy.wire.mysql.responses import EofPacket, ErrPacket, OkPacket

GOLDEN = Path(__file__).parent / "golden"
# The capabilities capture_golden.py logged in with.
CAPTURE_CAPS = F(0x1 | 0x2 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x10000 | 0x20000 | 0x80000)

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
names = texts.filter(bool)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
lenenc_ints = st.integers(0, 2**64 - 1)


def _capabilities(standard: int, extended: int) -> F:
    """As a MariaDB peer sends them: extended bits only with CLIENT_LONG_PASSWORD clear."""
    if extended:
        standard &= ~F.CLIENT_LONG_PASSWORD
    return F(standard | (extended << 32))


caps = st.builds(_capabilities, u32, st.sampled_from([0, 0, 0x1D, 0xFFFF_FFFF]))
status = st.builds(ServerStatus, u16)
nonces = st.binary(min_size=20, max_size=20).filter(lambda b: b"\x00" not in b)
attrs = st.dictionaries(texts, texts, max_size=4)


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


# -- golden bytes from MariaDB 10.11 ---------------------------------------------------------


def test_mariadb_handshake_v10_decodes_and_reencodes_to_the_same_bytes() -> None:
    payload = golden("handshake_v10.bin")
    handshake = HandshakeV10.decode(payload)
    assert handshake.server_version.startswith("5.5.5-10.11")
    assert len(handshake.auth_plugin_data) == 20
    assert b"\x00" not in handshake.auth_plugin_data
    assert handshake.auth_plugin_name == "mysql_native_password"
    assert handshake.capability_flags & F.CLIENT_PROTOCOL_41
    assert handshake.capability_flags & F.CLIENT_PLUGIN_AUTH
    # MariaDB clears CLIENT_LONG_PASSWORD (CLIENT_MYSQL) and fills the extended capabilities.
    assert not handshake.capability_flags & F.CLIENT_LONG_PASSWORD
    # MariaDB 10.11 offers progress reports, bulk execute, extended and cached metadata.
    mariadb_bits = (
        F.MARIADB_CLIENT_PROGRESS
        | F.MARIADB_CLIENT_STMT_BULK_OPERATIONS
        | F.MARIADB_CLIENT_EXTENDED_METADATA
        | F.MARIADB_CLIENT_CACHE_METADATA
    )
    assert handshake.capability_flags & ~F(0xFFFFFFFF) == mariadb_bits
    assert handshake.status_flags & ServerStatus.SERVER_STATUS_AUTOCOMMIT
    assert handshake.encode() == payload


def test_mariadb_ok_after_login_decodes_and_reencodes() -> None:
    payload = golden("ok_after_login.bin")
    ok = OkPacket.decode(payload, CAPTURE_CAPS)
    assert ok == OkPacket(status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT)
    assert ok.encode(CAPTURE_CAPS) == payload


def test_mariadb_ok_with_session_track_carries_the_schema_change() -> None:
    payload = golden("ok_after_login_session_track.bin")
    caps_ = CAPTURE_CAPS | F.CLIENT_SESSION_TRACK
    ok = OkPacket.decode(payload, caps_)
    assert ok.status_flags & ServerStatus.SERVER_SESSION_STATE_CHANGED
    assert ok.info == b""
    assert ok.session_state_info.endswith(b"wcdb")
    assert ok.encode(caps_) == payload


@pytest.mark.parametrize(
    ("name", "code", "state", "message"),
    [
        (
            "err_1045.bin",
            1045,
            "28000",
            "Access denied for user 'wc'@'127.0.0.1' (using password: YES)",
        ),
        ("err_1044.bin", 1044, "42000", "Access denied for user 'wc'@'%' to database 'otherdb'"),
    ],
)
def test_mariadb_access_denied_errors_decode_and_reencode(
    name: str, code: int, state: str, message: str
) -> None:
    payload = golden(name)
    err = ErrPacket.decode(payload, CAPTURE_CAPS)
    assert err == ErrPacket(code, state, message)
    assert err.encode(CAPTURE_CAPS) == payload


# -- round-trips -------------------------------------------------------------------------------


@given(texts, u32, nonces, caps, u8, status, texts)
def test_handshake_v10_round_trips(
    version: str,
    conn_id: int,
    nonce: bytes,
    flags: F,
    charset: int,
    st_: ServerStatus,
    plugin: str,
) -> None:
    flags |= F.CLIENT_SECURE_CONNECTION | F.CLIENT_PLUGIN_AUTH
    message = HandshakeV10(version, conn_id, nonce, flags, charset, st_, plugin)
    assert HandshakeV10.decode(message.encode()) == message


def test_extended_capabilities_clear_client_mysql_and_fill_the_last_reserved_bytes() -> None:
    flags = F.CLIENT_LONG_PASSWORD | F.CLIENT_SSL | F.MARIADB_CLIENT_STMT_BULK_OPERATIONS
    payload = SSLRequest(flags).encode()
    assert payload[:4] == int(F.CLIENT_SSL).to_bytes(4, "little")
    assert payload[28:] == (1 << 2).to_bytes(4, "little")
    assert SSLRequest.decode(payload).capability_flags == flags & ~F.CLIENT_LONG_PASSWORD


def test_reserved_bytes_of_a_mysql_client_are_not_read_as_extended_capabilities() -> None:
    payload = bytearray(SSLRequest(F.CLIENT_LONG_PASSWORD | F.CLIENT_SSL).encode())
    payload[28:] = b"\xff\xff\xff\xff"
    flags = SSLRequest.decode(bytes(payload)).capability_flags
    assert flags == F.CLIENT_LONG_PASSWORD | F.CLIENT_SSL


@given(caps, u32, u8)
def test_ssl_request_round_trips(flags: F, max_packet: int, charset: int) -> None:
    message = SSLRequest(flags | F.CLIENT_SSL, max_packet, charset)
    assert len(message.encode()) == 32
    assert SSLRequest.decode(message.encode()) == message


@st.composite
def handshake_responses(draw: st.DrawFn) -> HandshakeResponse41:
    flags = draw(caps) | F.CLIENT_PROTOCOL_41
    database = draw(st.none() | names)
    flags = flags | F.CLIENT_CONNECT_WITH_DB if database is not None else flags
    if flags & F.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth = draw(st.binary(max_size=300))
    elif flags & F.CLIENT_SECURE_CONNECTION:
        auth = draw(st.binary(max_size=255))
    else:
        auth = draw(st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"")))
    return HandshakeResponse41(
        capability_flags=flags,
        username=draw(texts),
        auth_response=auth,
        database=database,
        auth_plugin_name=draw(texts) if flags & F.CLIENT_PLUGIN_AUTH else "",
        connect_attrs=draw(attrs) if flags & F.CLIENT_CONNECT_ATTRS else {},
        max_packet_size=draw(u32),
        character_set=draw(u8),
    )


@given(handshake_responses())
def test_handshake_response41_round_trips(message: HandshakeResponse41) -> None:
    assert HandshakeResponse41.decode(message.encode()) == message


@given(handshake_responses(), st.data())
def test_truncated_handshake_response41_raises_protocol_error(
    message: HandshakeResponse41, data: st.DataObject
) -> None:
    # Everything up to the end of the database field is mandatory.
    payload = message.encode()
    mandatory = HandshakeResponse41(
        message.capability_flags & ~(F.CLIENT_PLUGIN_AUTH | F.CLIENT_CONNECT_ATTRS),
        message.username,
        message.auth_response,
        message.database,
        max_packet_size=message.max_packet_size,
        character_set=message.character_set,
    ).encode()
    cut = data.draw(st.integers(0, len(mandatory) - 1))
    with pytest.raises(ProtocolError):
        HandshakeResponse41.decode(payload[:cut])


@given(names, st.binary())
def test_auth_switch_request_round_trips(plugin: str, data: bytes) -> None:
    message = AuthSwitchRequest(plugin, data)
    assert AuthSwitchRequest.decode(message.encode()) == message


@given(st.binary())
def test_auth_more_data_round_trips(data: bytes) -> None:
    assert AuthMoreData.decode(AuthMoreData(data).encode()) == AuthMoreData(data)


@st.composite
def change_users(draw: st.DrawFn) -> tuple[ComChangeUser, F]:
    flags = draw(caps)
    if flags & F.CLIENT_SECURE_CONNECTION:
        auth = draw(st.binary(max_size=255))
    else:
        auth = draw(st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"")))
    message = ComChangeUser(
        username=draw(texts),
        auth_response=auth,
        database=draw(st.none() | names),
        character_set=draw(u8),
        auth_plugin_name=draw(texts) if flags & F.CLIENT_PLUGIN_AUTH else "",
        connect_attrs=draw(attrs) if flags & F.CLIENT_CONNECT_ATTRS else {},
    )
    return message, flags


@given(change_users())
def test_com_change_user_round_trips(case: tuple[ComChangeUser, F]) -> None:
    message, flags = case
    assert ComChangeUser.decode(message.encode(flags), flags) == message


def test_com_change_user_decodes_a_mysql_client_packet() -> None:
    flags = F.CLIENT_PROTOCOL_41 | F.CLIENT_SECURE_CONNECTION | F.CLIENT_PLUGIN_AUTH
    payload = (
        b"\x11user7\x00\x14"
        + bytes(range(1, 21))
        + b"user_database7\x00"
        + b"\x2d\x00mysql_native_password\x00"
    )
    message = ComChangeUser.decode(payload, flags)
    assert message == ComChangeUser(
        "user7", bytes(range(1, 21)), "user_database7", 45, "mysql_native_password"
    )
    assert message.encode(flags) == payload


@pytest.mark.parametrize("number", [256, 300, 0xFFFF])
def test_com_change_user_with_a_character_set_past_one_byte_raises_protocol_error(
    number: int,
) -> None:
    flags = F.CLIENT_PROTOCOL_41 | F.CLIENT_SECURE_CONNECTION
    payload = b"\x11user7\x00\x00user_database7\x00" + number.to_bytes(2, "little")
    with pytest.raises(ProtocolError, match="character set"):
        ComChangeUser.decode(payload, flags)


@given(lenenc_ints, lenenc_ints, status, u16, st.binary(), st.binary(), caps)
def test_ok_packet_round_trips(
    rows: int, last_id: int, st_: ServerStatus, warnings: int, info: bytes, state: bytes, flags: F
) -> None:
    flags |= F.CLIENT_PROTOCOL_41
    if not flags & F.CLIENT_SESSION_TRACK or not st_ & ServerStatus.SERVER_SESSION_STATE_CHANGED:
        state = b""
    message = OkPacket(rows, last_id, st_, warnings, info, state)
    assert OkPacket.decode(message.encode(flags), flags) == message


@given(u16, st.text(st.sampled_from("0123456789ABCDEFHYZ"), min_size=5, max_size=5), texts)
def test_err_packet_round_trips_with_the_sql_state_marker(
    code: int, state: str, message: str
) -> None:
    err = ErrPacket(code, state, message)
    encoded = err.encode(F.CLIENT_PROTOCOL_41)
    assert encoded[3:4] == b"#"
    assert ErrPacket.decode(encoded, F.CLIENT_PROTOCOL_41) == err


def test_err_packet_without_the_marker_defaults_the_sql_state() -> None:
    assert ErrPacket.decode(b"\xff\x10\x04Too many connections") == ErrPacket(
        1040, "HY000", "Too many connections"
    )


@given(u16, status)
def test_eof_packet_round_trips(warnings: int, st_: ServerStatus) -> None:
    message = EofPacket(warnings, st_)
    assert EofPacket.decode(message.encode()) == message


# -- malformed input: ProtocolError, never IndexError / struct.error / UnicodeDecodeError --------


@pytest.mark.parametrize(
    "decode",
    [
        HandshakeV10.decode,
        SSLRequest.decode,
        HandshakeResponse41.decode,
        AuthSwitchRequest.decode,
        AuthMoreData.decode,
        lambda p: ComChangeUser.decode(p, F(0xFFFFFFFF)),
        lambda p: OkPacket.decode(p, F(0xFFFFFFFF)),
        ErrPacket.decode,
        EofPacket.decode,
    ],
)
@given(payload=st.binary(max_size=120))
def test_decoders_raise_only_protocol_error_on_garbage(decode, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(ProtocolError):
        decode(payload)


def test_handshake_response41_with_invalid_utf8_user_name_raises_protocol_error() -> None:
    flags = F.CLIENT_PROTOCOL_41 | F.CLIENT_SECURE_CONNECTION
    payload = int(flags).to_bytes(4, "little") + bytes(28) + b"\xff\xfe\x00\x00"
    with pytest.raises(ProtocolError, match="UTF-8"):
        HandshakeResponse41.decode(payload)


def test_handshake_v10_with_another_protocol_version_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="protocol version 9"):
        HandshakeV10.decode(b"\x09" + golden("handshake_v10.bin")[1:])
