"""Session-state information in OK packets (CLIENT_SESSION_TRACK), decoded and taken out.

MySQL "OK_Packet" and "Session State Information" pages, MariaDB's "OK_Packet" page: with
CLIENT_SESSION_TRACK negotiated and SERVER_SESSION_STATE_CHANGED set, an OK packet ends with

    string<lenenc> info                    (present, possibly empty)
    string<lenenc> session_state_info      entries, each:
        int<1>         type                SESSION_TRACK_* below
        string<lenenc> data                by type:
            SYSTEM_VARIABLES (0)           string<lenenc> name, string<lenenc> value
            SCHEMA (1)                     string<lenenc> name
            STATE_CHANGE (2)               "1", bare: MariaDB 10.11 sends 02 01 31
            GTIDS (3)                      int<1> encoding spec, string<lenenc> gtids
            TRANSACTION_CHARACTERISTICS (4) string<lenenc> SQL that would restore them
            TRANSACTION_STATE (5)          string<lenenc> 8 state characters

Entries of a type this module does not know are kept raw (``UnknownEntry``), never an error.

``without_session_track`` turns an OK a backend sent with tracking into the OK MariaDB sends a
client that did not ask for it: sql/protocol.cc (net_send_ok) then writes no session-state info,
clears SERVER_SESSION_STATE_CHANGED, and writes the info string length-encoded when it is not
empty (MariaDB does so for every client: the string<EOF> of MySQL's page is what a length-encoded
string reads as when the client ignores the length, which old clients do).
Sans-IO, standard library only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tenantproxy.wire.mysql.codec import Reader, int_fixed, int_lenenc, str_lenenc
from tenantproxy.wire.mysql.constants import CapabilityFlags, ServerStatus
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.responses import OkPacket

_STATE_CHANGED = ServerStatus.SERVER_SESSION_STATE_CHANGED.value
_TRACKED = CapabilityFlags.CLIENT_PROTOCOL_41 | CapabilityFlags.CLIENT_SESSION_TRACK


class TrackType(enum.IntEnum):
    SYSTEM_VARIABLES = 0
    SCHEMA = 1
    STATE_CHANGE = 2
    GTIDS = 3
    TRANSACTION_CHARACTERISTICS = 4
    TRANSACTION_STATE = 5


@dataclass(frozen=True, slots=True)
class SystemVariable:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Schema:
    name: str


@dataclass(frozen=True, slots=True)
class StateChange:
    is_changed: bool


@dataclass(frozen=True, slots=True)
class Gtids:
    encoding: int
    gtids: str


@dataclass(frozen=True, slots=True)
class TransactionCharacteristics:
    sql: str


@dataclass(frozen=True, slots=True)
class TransactionState:
    state: str


@dataclass(frozen=True, slots=True)
class UnknownEntry:
    type: int
    data: bytes


Entry = (
    SystemVariable
    | Schema
    | StateChange
    | Gtids
    | TransactionCharacteristics
    | TransactionState
    | UnknownEntry
)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _decode_entry(entry_type: int, data: bytes) -> Entry:
    if entry_type == TrackType.STATE_CHANGE:
        return StateChange(data == b"1")
    reader = Reader(data)
    entry: Entry
    if entry_type == TrackType.SYSTEM_VARIABLES:
        name = reader.bytes_lenenc()
        entry = SystemVariable(_text(name), _text(reader.bytes_lenenc()))
    elif entry_type == TrackType.SCHEMA:
        entry = Schema(_text(reader.bytes_lenenc()))
    elif entry_type == TrackType.GTIDS:
        encoding = reader.int_fixed(1)
        entry = Gtids(encoding, _text(reader.bytes_lenenc()))
    elif entry_type == TrackType.TRANSACTION_CHARACTERISTICS:
        entry = TransactionCharacteristics(_text(reader.bytes_lenenc()))
    elif entry_type == TrackType.TRANSACTION_STATE:
        entry = TransactionState(_text(reader.bytes_lenenc()))
    else:
        return UnknownEntry(entry_type, data)
    if not reader.is_at_end():
        raise ProtocolError(f"session-state entry of type {entry_type} has trailing bytes")
    return entry


def decode_entries(session_state_info: bytes) -> list[Entry]:
    """The entries of a session_state_info string (its content, without its own length)."""
    reader = Reader(session_state_info)
    entries = []
    while not reader.is_at_end():
        entry_type = reader.int_fixed(1)
        entries.append(_decode_entry(entry_type, reader.bytes_lenenc()))
    return entries


def encode_entry(entry: Entry) -> bytes:
    """The inverse of one entry of ``decode_entries``."""
    data: bytes
    if isinstance(entry, UnknownEntry):
        return bytes((entry.type,)) + str_lenenc(entry.data)
    if isinstance(entry, SystemVariable):
        entry_type = TrackType.SYSTEM_VARIABLES
        data = str_lenenc(_raw(entry.name)) + str_lenenc(_raw(entry.value))
    elif isinstance(entry, Schema):
        entry_type, data = TrackType.SCHEMA, str_lenenc(_raw(entry.name))
    elif isinstance(entry, StateChange):
        entry_type, data = TrackType.STATE_CHANGE, b"1" if entry.is_changed else b"0"
    elif isinstance(entry, Gtids):
        entry_type = TrackType.GTIDS
        data = bytes((entry.encoding,)) + str_lenenc(_raw(entry.gtids))
    elif isinstance(entry, TransactionCharacteristics):
        entry_type, data = TrackType.TRANSACTION_CHARACTERISTICS, str_lenenc(_raw(entry.sql))
    else:
        entry_type, data = TrackType.TRANSACTION_STATE, str_lenenc(_raw(entry.state))
    return bytes((entry_type,)) + str_lenenc(data)


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def decode_tracked_ok(payload: bytes) -> OkPacket:
    """An OK payload from a server that negotiated CLIENT_PROTOCOL_41 and CLIENT_SESSION_TRACK."""
    return OkPacket.decode(payload, _TRACKED)


def session_entries(payload: bytes) -> list[Entry]:
    """The session-state entries of an OK payload (none when its flag is clear)."""
    return decode_entries(decode_tracked_ok(payload).session_state_info)


def without_session_track(payload: bytes) -> bytes:
    """The OK MariaDB would have sent a client without CLIENT_SESSION_TRACK (see above)."""
    ok = decode_tracked_ok(payload)
    out = (
        bytes((ok.header,))
        + int_lenenc(ok.affected_rows)
        + int_lenenc(ok.last_insert_id)
        + int_fixed(int(ok.status_flags) & ~_STATE_CHANGED, 2)
        + int_fixed(ok.warnings, 2)
    )
    return out + str_lenenc(ok.info) if ok.info else out
