"""ResponseEnd: the record the tracker gives at each response's end (relay decisions, issue 9)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.wire.mysql.constants import ServerStatus
from tenantproxy.wire.mysql.response_tracker import ResponseEnd, ResponseTracker
from tests.unit.wire.test_response_tracker import (
    DEPRECATE_EOF_CAPS,
    EOF_CAPS,
    byte_by_byte,
    column_definition,
    eof,
    err,
    frame_all,
    load_golden,
    ok,
    tracker_after,
)

CHANGED = ServerStatus.SERVER_SESSION_STATE_CHANGED
MORE = ServerStatus.SERVER_MORE_RESULTS_EXISTS
IN_TRANS = ServerStatus.SERVER_STATUS_IN_TRANS
SCHEMA_CHANGE = b"\x00\x04\x01\x02\x01g"  # info "", then SESSION_TRACK_SCHEMA "g"


def ends_of(tracker: ResponseTracker, wire: bytes, is_byte_at_a_time: bool) -> list[ResponseEnd]:
    chunks = byte_by_byte(wire) if is_byte_at_a_time else [wire]
    ends: list[ResponseEnd] = []
    for chunk in chunks:
        tracker.server_data(chunk)
        ends += tracker.ends
    return ends


@pytest.mark.parametrize("is_byte_at_a_time", [False, True])
def test_an_ok_with_session_state_is_reported_with_its_whole_payload(
    is_byte_at_a_time: bool,
) -> None:
    payload = ok(CHANGED | 2, info=SCHEMA_CHANGE)
    tracker = tracker_after(b"\x02g")
    [end] = ends_of(tracker, frame_all([payload]), is_byte_at_a_time)
    assert end == ResponseEnd(
        status_flags=CHANGED | 2, is_state_changed=True, state_change_oks=(payload,)
    )


@pytest.mark.parametrize("is_byte_at_a_time", [False, True])
def test_a_later_packet_of_the_same_response_does_not_erase_the_state_change(
    is_byte_at_a_time: bool,
) -> None:
    first = ok(CHANGED | MORE | 2, info=SCHEMA_CHANGE)
    tracker = tracker_after(b"\x03USE g; SELECT 1", EOF_CAPS)
    wire = frame_all([first, b"\x01", column_definition(b"a"), eof(2), b"\x011", eof(2)])
    [end] = ends_of(tracker, wire, is_byte_at_a_time)
    assert end.is_state_changed
    assert end.state_change_oks == (first,)
    assert end.status_flags == 2


def test_the_next_response_starts_without_the_state_change() -> None:
    tracker = tracker_after(b"\x02g")
    tracker.command_sent(b"\x0e")
    ends = ends_of(
        tracker, frame_all([ok(CHANGED | 2, info=SCHEMA_CHANGE)]) + frame_all([ok(2)]), False
    )
    assert [end.is_state_changed for end in ends] == [True, False]
    assert ends[1].state_change_oks == ()


def test_an_error_ends_the_response_with_its_code_and_the_earlier_status() -> None:
    tracker = tracker_after(b"\x03SELECT 1; SELECT * FROM missing", EOF_CAPS)
    wire = frame_all([b"\x01", column_definition(b"a"), eof(2), b"\x011", eof(IN_TRANS | MORE)])
    [end] = ends_of(tracker, wire + frame_all([err(1146)]), False)
    assert end.error_code == 1146
    assert end.status_flags == IN_TRANS | MORE  # the server's last word on the flags


@given(insert_ids=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4))
def test_the_last_non_zero_insert_id_of_a_response_is_reported(insert_ids: list[int]) -> None:
    tracker = tracker_after(b"\x03INSERT ...", DEPRECATE_EOF_CAPS)
    payloads = [ok(2 | MORE, insert_id=value) for value in insert_ids[:-1]]
    payloads.append(ok(2, insert_id=insert_ids[-1]))
    [end] = ends_of(tracker, frame_all(payloads), False)
    assert end.last_insert_id == next((v for v in reversed(insert_ids) if v), 0)


@pytest.mark.parametrize("suffix", ["eof", "deprecate_eof"])
def test_a_real_prepare_ok_reports_its_statement_id(suffix: str) -> None:
    transcript = load_golden(f"prepare_execute.{suffix}.txt")
    prepare, answer = transcript.steps[0], transcript.steps[1]
    assert prepare.client is not None
    tracker = ResponseTracker(transcript.capabilities)
    tracker.command_sent(prepare.client[:16])
    [end] = ends_of(tracker, answer.server, True)
    assert end.statement_id == int.from_bytes(answer.server[5:9], "little") != 0
    assert end.error_code is None


def test_a_prepare_error_reports_no_statement_id() -> None:
    tracker = tracker_after(b"\x16SELEC 1")
    [end] = ends_of(tracker, frame_all([err(1064)]), False)
    assert end.statement_id is None
    assert end.error_code == 1064
