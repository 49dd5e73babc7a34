"""session_track.py against real MariaDB 10.11 OK packets (golden/session_track.txt) and
hypothesis: decoding, the inverse encoding, and the OK rewrite for a client without tracking."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.wire.mysql.codec import int_fixed, int_lenenc, str_lenenc
from tenantproxy.wire.mysql.constants import CapabilityFlags
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.response_tracker import ResponseTracker
from tenantproxy.wire.mysql.session_track import (
    Entry,
    Gtids,
    Schema,
    StateChange,
    SystemVariable,
    TransactionCharacteristics,
    TransactionState,
    UnknownEntry,
    decode_entries,
    decode_tracked_ok,
    encode_entry,
    session_entries,
    without_session_track,
)
from tests.unit.wire.test_response_tracker import GOLDEN_DIR, byte_by_byte

STATE_CHANGED = 0x4000


@dataclass(frozen=True)
class Exchange:
    command: bytes
    tracked: bytes  # the server's bytes to the client with CLIENT_SESSION_TRACK
    plain: bytes  # ... and to the one without


def packets(wire: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(wire):
        length = int.from_bytes(wire[pos : pos + 3], "little")
        out.append(wire[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return out


@functools.cache
def golden() -> tuple[CapabilityFlags, dict[bytes, Exchange]]:
    lines = (GOLDEN_DIR / "session_track.txt").read_text().splitlines()
    tracked_caps = CapabilityFlags(int(lines[0].split()[1].split("=")[1], 16))
    exchanges = {}
    for q, t, p in zip(lines[1::3], lines[2::3], lines[3::3], strict=True):
        command = bytes.fromhex(q[2:])
        exchanges[command] = Exchange(command, bytes.fromhex(t[2:]), bytes.fromhex(p[2:]))
    return tracked_caps, exchanges


def last_ok(wire: bytes) -> bytes:
    payload = packets(wire)[-1]
    assert payload[:1] in (b"\x00", b"\xfe")
    return payload


OK_COMMANDS = [c for c, e in golden()[1].items() if packets(e.tracked)[-1][:1] != b"\xff"]


@pytest.mark.parametrize("command", OK_COMMANDS, ids=lambda c: c[1:40].decode())
def test_the_rewritten_ok_is_byte_for_byte_what_mariadb_sends_a_client_without_tracking(
    command: bytes,
) -> None:
    exchange = golden()[1][command]
    rewritten = without_session_track(last_ok(exchange.tracked))
    assert rewritten == last_ok(exchange.plain)
    assert not decode_tracked_ok(rewritten).status_flags & STATE_CHANGED


@pytest.mark.parametrize("command", OK_COMMANDS, ids=lambda c: c[1:40].decode())
def test_real_session_state_info_re_encodes_to_the_same_bytes(command: bytes) -> None:
    info = decode_tracked_ok(last_ok(golden()[1][command].tracked)).session_state_info
    assert b"".join(encode_entry(entry) for entry in decode_entries(info)) == info


@pytest.mark.parametrize("command", OK_COMMANDS, ids=lambda c: c[1:40].decode())
def test_the_tracker_hands_over_each_state_carrying_ok_whole_even_byte_by_byte(
    command: bytes,
) -> None:
    caps, exchanges = golden()
    tracker = ResponseTracker(caps)
    tracker.command_sent(command[:16])
    ends = []
    for chunk in byte_by_byte(exchanges[command].tracked):
        tracker.server_data(chunk)
        ends += tracker.ends
    [end] = ends
    ok = last_ok(exchanges[command].tracked)
    expected = (ok,) if decode_tracked_ok(ok).status_flags & STATE_CHANGED else ()
    assert end.state_change_oks == expected
    assert end.is_state_changed == bool(expected)


def entries_after(sql: bytes) -> list[Entry]:
    return session_entries(last_ok(golden()[1][b"\x03" + sql].tracked))


def test_real_entries_of_mariadb_10_11() -> None:
    assert entries_after(b"USE mysql") == [Schema("mysql"), StateChange(True)]
    assert session_entries(last_ok(golden()[1][b"\x02g"].tracked)) == [
        Schema("g"),
        StateChange(True),
    ]
    assert entries_after(b"SET NAMES latin1") == [
        SystemVariable("character_set_connection", "latin1"),
        SystemVariable("character_set_client", "latin1"),
        SystemVariable("character_set_results", "latin1"),
        StateChange(True),
    ]
    assert entries_after(b"START TRANSACTION READ ONLY") == [
        TransactionState("T_______"),
        TransactionCharacteristics("START TRANSACTION READ ONLY;"),
    ]
    assert entries_after(b"LOCK TABLES t READ") == [TransactionState("_______L")]


@pytest.mark.parametrize(
    "sql", [b"SET @u = 1", b"CREATE TEMPORARY TABLE tt (a INT)", b"PREPARE s FROM 'SELECT 1'"]
)
def test_user_variables_temporary_tables_and_sql_prepare_show_only_as_a_state_change(
    sql: bytes,
) -> None:
    assert entries_after(sql) == [StateChange(True)]


def test_get_lock_is_not_tracked_at_all_and_user_variables_have_no_tracker_in_10_11() -> None:
    assert entries_after(b"SELECT GET_LOCK('l', 0)") == []
    error = packets(golden()[1][b"\x03SELECT @@session_track_user_variables"].tracked)[-1]
    assert error[:3] == b"\xff\xa9\x04"  # 1193: unknown system variable


# --- hypothesis ----------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=40)
entries = st.one_of(
    st.builds(SystemVariable, text, text),
    st.builds(Schema, text),
    st.builds(StateChange, st.booleans()),
    st.builds(Gtids, st.integers(0, 255), text),
    st.builds(TransactionCharacteristics, text),
    st.builds(TransactionState, text),
    st.builds(UnknownEntry, st.integers(6, 255), st.binary(max_size=40)),
)


@given(st.lists(entries, max_size=8))
def test_entries_round_trip(values: list[Entry]) -> None:
    assert decode_entries(b"".join(encode_entry(value) for value in values)) == values


def tracked_ok(
    affected: int, insert_id: int, status: int, warnings: int, info: bytes, state: bytes
) -> bytes:
    head = b"\x00" + int_lenenc(affected) + int_lenenc(insert_id)
    head += int_fixed(status, 2) + int_fixed(warnings, 2)
    if status & STATE_CHANGED:
        return head + str_lenenc(info) + str_lenenc(state)
    return head + str_lenenc(info) if info else head


@given(
    affected=st.integers(0, 2**64 - 1),
    insert_id=st.integers(0, 2**64 - 1),
    status=st.integers(0, 0xFFFF),
    warnings=st.integers(0, 0xFFFF),
    info=st.binary(max_size=300),
    values=st.lists(entries, max_size=4),
)
def test_any_tracked_ok_decodes_and_rewrites_to_the_untracked_layout(
    affected: int, insert_id: int, status: int, warnings: int, info: bytes, values: list[Entry]
) -> None:
    state = b"".join(encode_entry(value) for value in values) if status & STATE_CHANGED else b""
    ok = decode_tracked_ok(tracked_ok(affected, insert_id, status, warnings, info, state))
    assert (ok.affected_rows, ok.last_insert_id, ok.status_flags) == (affected, insert_id, status)
    assert (ok.info, decode_entries(ok.session_state_info)) == (info, values if state else [])
    plain = tracked_ok(affected, insert_id, status & ~STATE_CHANGED, warnings, info, b"")
    assert without_session_track(
        tracked_ok(affected, insert_id, status, warnings, info, state)
    ) == (plain)


@given(st.binary(max_size=60))
def test_hostile_bytes_raise_protocol_error_or_give_a_clean_untracked_ok(data: bytes) -> None:
    """No IndexError/UnicodeError ever: a relay turns ProtocolError into a clear ERR."""
    with contextlib.suppress(ProtocolError):
        decode_entries(data)
    try:
        rewritten = without_session_track(data)
    except ProtocolError:
        return
    assert not decode_tracked_ok(rewritten).status_flags & STATE_CHANGED
    assert without_session_track(rewritten) == rewritten
