"""response_editor.py: hidden responses and OKs rewritten for clients without session tracking,
against the golden transcripts and generated streams, fed whole, byte by byte and in random
chunks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantproxy.wire.mysql.codec import int_fixed, int_lenenc, str_lenenc
from tenantproxy.wire.mysql.constants import CapabilityFlags
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.response_editor import ResponseEditor
from tenantproxy.wire.mysql.session_track import decode_tracked_ok, without_session_track
from tests.unit.wire.test_response_tracker import (
    BIG_GOLDEN,
    DEPRECATE_EOF_CAPS,
    EOF_CAPS,
    SMALL_GOLDEN,
    Chunker,
    byte_by_byte,
    cut_at,
    load_golden,
    whole,
)
from tests.unit.wire.test_session_track import golden as session_track_golden
from tests.unit.wire.test_session_track import packets

STATE_CHANGED = 0x4000
MORE = 0x0008
TRACK = CapabilityFlags.CLIENT_SESSION_TRACK


def feed(editor: ResponseEditor, data: bytes, chunker: Chunker) -> tuple[bytes, list]:
    out, ends = [], []
    for chunk in chunker(data):
        out.append(editor.server_data(chunk))
        ends += editor.ends
    return b"".join(out), ends


CHUNKERS = [whole, byte_by_byte, cut_at([1, 3, 4, 5, 7, 11, 20, 27, 40, 61, 99])]


@pytest.mark.parametrize("chunker", CHUNKERS, ids=["whole", "bytes", "cuts"])
@pytest.mark.parametrize("name", SMALL_GOLDEN)
def test_golden_streams_pass_unchanged_to_a_tracking_client(name: str, chunker: Chunker) -> None:
    transcript = load_golden(name)
    editor = ResponseEditor(transcript.capabilities, is_client_tracking=True)
    for step in transcript.steps:
        if step.client is not None:
            if editor.tracker.is_awaiting_local_infile:
                editor.tracker.local_infile_packet_sent(len(step.client))
            else:
                editor.command_sent(step.client[:16])
            continue
        out, ends = feed(editor, step.server, chunker)
        assert out == step.server
        assert len(ends) == step.ends
        assert not any(end.is_hidden for end in ends)


@pytest.mark.parametrize("name", SMALL_GOLDEN)
def test_a_chunk_with_nothing_to_edit_is_returned_itself(name: str) -> None:
    transcript = load_golden(name)
    editor = ResponseEditor(transcript.capabilities, is_client_tracking=False)
    for step in transcript.steps:
        if step.client is not None:
            if editor.tracker.is_awaiting_local_infile:
                editor.tracker.local_infile_packet_sent(len(step.client))
            else:
                editor.command_sent(step.client[:16])
        elif b"\x40\x00" not in step.server:  # no chance of a state-changed status
            assert editor.server_data(step.server) is step.server
        else:
            editor.server_data(step.server)


@pytest.mark.parametrize("chunker", CHUNKERS, ids=["whole", "bytes", "cuts"])
def test_real_tracked_responses_become_what_mariadb_sends_a_client_without_tracking(
    chunker: Chunker,
) -> None:
    caps, exchanges = session_track_golden()
    for exchange in exchanges.values():
        editor = ResponseEditor(caps, is_client_tracking=False)
        editor.command_sent(exchange.command[:16])
        out, ends = feed(editor, exchange.tracked, chunker)
        assert out == expected_plain(exchange.tracked, exchange.plain)
        assert len(ends) == 1


def expected_plain(tracked: bytes, plain: bytes) -> bytes:
    """The tracked stream with each OK taken from the capture without tracking (rows may differ
    between the two captures: a SELECT of a session variable, a connection id)."""
    tracked_packets, plain_packets = split_packets(tracked), split_packets(plain)
    assert len(tracked_packets) == len(plain_packets)
    return b"".join(
        p if is_state_changed_ok(t[4:]) else t
        for t, p in zip(tracked_packets, plain_packets, strict=True)
    )


def is_state_changed_ok(payload: bytes) -> bool:
    if payload[:1] not in (b"\x00", b"\xfe"):
        return False
    try:
        return bool(decode_tracked_ok(payload).status_flags & STATE_CHANGED)
    except ProtocolError:  # a row, not an OK
        return False


def split_packets(wire: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(wire):
        stop = pos + 4 + int.from_bytes(wire[pos : pos + 3], "little")
        out.append(wire[pos:stop])
        pos = stop
    return out


def test_hidden_responses_are_dropped_and_reported_with_their_error() -> None:
    caps, exchanges = session_track_golden()
    items = list(exchanges.values())
    failing = [e for e in items if packets(e.tracked)[-1][:1] == b"\xff"]
    ok = [e for e in items if packets(e.tracked)[-1][:1] != b"\xff"]
    hidden_ok, hidden_err, shown = ok[0], failing[0], ok[1]
    stream = hidden_ok.tracked + hidden_err.tracked + shown.tracked
    for chunker in CHUNKERS:
        editor = ResponseEditor(caps, is_client_tracking=True)
        editor.command_sent(hidden_ok.command[:16], hidden=True)
        editor.command_sent(hidden_err.command[:16], hidden=True)
        editor.command_sent(shown.command[:16])
        out, ends = feed(editor, stream, chunker)
        assert out == shown.tracked
        assert [end.is_hidden for end in ends] == [True, True, False]
        assert ends[0].error_code is None and ends[1].error_code is not None
        assert ends[0].is_state_changed


# --- generated streams ------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    wire: bytes  # what the backend sends (with tracking)
    plain: bytes  # what a client without tracking must get
    hidden: bool


def ok_payload(header: int, insert_id: int, status: int, info: bytes, state: bytes) -> bytes:
    head = bytes((header,)) + int_lenenc(1) + int_lenenc(insert_id) + int_fixed(status, 2)
    head += int_fixed(0, 2)
    if status & STATE_CHANGED:
        return head + str_lenenc(info) + str_lenenc(state)
    return head + str_lenenc(info) if info else head


def frame(payloads: list[bytes]) -> tuple[bytes, bytes]:
    """Both streams, the second with each state-changed OK rewritten (same sequence ids)."""
    wire, plain, seq = b"", b"", 1
    for payload in payloads:
        packet, _ = encode_packet(payload, seq)
        wire += packet
        is_ok = payload[:1] in (b"\x00", b"\xfe") and len(payload) >= 7
        if is_ok and int.from_bytes(payload[3:5], "little") & STATE_CHANGED:
            packet, _ = encode_packet(without_session_track(payload), seq)
        plain += packet
        seq += 1
    return wire, plain


oks = st.builds(
    lambda insert_id, changed, info, state: (insert_id, changed, info, state),
    st.integers(0, 200),
    st.booleans(),
    st.binary(max_size=30),
    st.binary(min_size=1, max_size=300).map(lambda data: b"\x02" + str_lenenc(data)),
)


@st.composite
def responses(draw: st.DrawFn, deprecate_eof: bool) -> Response:
    """A text result set or a multi-result OK chain, or an ERR; every OK may carry state."""
    kind = draw(st.sampled_from(["oks", "result", "err"]))
    payloads = []
    if kind == "err":
        payloads.append(b"\xff" + int_fixed(1064, 2) + b"#42000oops")
    elif kind == "oks":
        parts = draw(st.lists(oks, min_size=1, max_size=3))
        for i, (insert_id, changed, info, state) in enumerate(parts):
            status = 2 | (STATE_CHANGED if changed else 0) | (MORE if i < len(parts) - 1 else 0)
            payloads.append(ok_payload(0, insert_id, status, info, state))
    else:
        rows = draw(st.lists(st.binary(max_size=40), max_size=4))
        payloads += [b"\x01", b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x01\x00\x00\x00\x03\x00"]
        payloads += [] if deprecate_eof else [b"\xfe\x00\x00\x02\x00"]
        payloads += [str_lenenc(row) for row in rows]
        insert_id, changed, info, state = draw(oks)
        status = 2 | (STATE_CHANGED if changed else 0)
        if deprecate_eof:
            payloads.append(ok_payload(0xFE, 0, status, info, state))
        else:
            payloads.append(b"\xfe\x00\x00" + int_fixed(2, 2))
    wire, plain = frame(payloads)
    return Response(wire, plain, draw(st.booleans()))


@settings(max_examples=200)
@given(
    data=st.data(),
    deprecate_eof=st.booleans(),
    is_client_tracking=st.booleans(),
    cuts=st.lists(st.integers(1, 3000), max_size=40),
)
def test_generated_streams_in_any_chunks_give_the_visible_responses_edited_in_order(
    data: st.DataObject, deprecate_eof: bool, is_client_tracking: bool, cuts: list[int]
) -> None:
    stream = data.draw(st.lists(responses(deprecate_eof), min_size=1, max_size=6))
    caps = (DEPRECATE_EOF_CAPS if deprecate_eof else EOF_CAPS) | TRACK
    wire = b"".join(response.wire for response in stream)
    expected = b"".join(
        response.wire if is_client_tracking else response.plain
        for response in stream
        if not response.hidden
    )
    outputs = []
    for chunker in (whole, byte_by_byte, cut_at(cuts)):
        editor = ResponseEditor(caps, is_client_tracking=is_client_tracking)
        for response in stream:
            editor.command_sent(b"\x03SELECT 1", hidden=response.hidden)
        out, ends = feed(editor, wire, chunker)
        assert [end.is_hidden for end in ends] == [response.hidden for response in stream]
        assert editor.tracker.is_idle
        outputs.append(out)
    assert outputs == [expected] * 3


def replay_edited(name: str, chunker: Chunker, hide: bool) -> list[bytes]:
    """Each server block's output, for a client without tracking; hide: all responses hidden."""
    transcript = load_golden(name)
    editor = ResponseEditor(transcript.capabilities, is_client_tracking=False)
    outputs = []
    for step in transcript.steps:
        if step.client is not None:
            if editor.tracker.is_awaiting_local_infile:
                editor.tracker.local_infile_packet_sent(len(step.client))
            else:
                editor.command_sent(step.client[:16], hidden=hide)
            continue
        out, ends = feed(editor, step.server, chunker)
        assert [end.is_hidden for end in ends] == [hide] * step.ends
        outputs.append(out)
    assert editor.tracker.is_idle
    return outputs


@pytest.mark.parametrize("name", SMALL_GOLDEN)
@settings(max_examples=20)
@given(cuts=st.lists(st.integers(1, 1000), max_size=30))
def test_golden_streams_for_a_client_without_tracking_have_only_state_changed_oks_rewritten(
    name: str, cuts: list[int]
) -> None:
    transcript = load_golden(name)
    expected = [
        expected_plain(step.server, rewrite_oks(step.server))
        for step in transcript.steps
        if step.client is None
    ]
    for chunker in (whole, byte_by_byte, cut_at(cuts)):
        assert replay_edited(name, chunker, hide=False) == expected


@pytest.mark.parametrize("name", SMALL_GOLDEN)
def test_golden_streams_all_hidden_show_nothing(name: str) -> None:
    for chunker in CHUNKERS:
        assert set(replay_edited(name, chunker, hide=True)) <= {b""}


@pytest.mark.parametrize("name", BIG_GOLDEN)
def test_golden_16_mib_rows_pass_unchanged_in_any_chunks(name: str) -> None:
    transcript = load_golden(name)
    expected = [step.server for step in transcript.steps if step.client is None]
    for cuts in ([], [3, 5, 25, 70000, 2**24 - 1, 2**24, 2**24 + 3, 2**24 + 4, 2**24 + 9]):
        assert replay_edited(name, cut_at(cuts), hide=False) == expected


def rewrite_oks(wire: bytes) -> bytes:
    out = b""
    for packet in split_packets(wire):
        if is_state_changed_ok(packet[4:]):
            payload = without_session_track(packet[4:])
            packet = len(payload).to_bytes(3, "little") + packet[3:4] + payload
        out += packet
    return out


def test_the_real_state_changed_oks_are_rewritten_with_their_sequence_ids() -> None:
    caps, exchanges = session_track_golden()
    changed = 0
    for exchange in exchanges.values():
        editor = ResponseEditor(caps, is_client_tracking=False)
        editor.command_sent(exchange.command[:16])
        out, _ = feed(editor, exchange.tracked, byte_by_byte)
        changed += out != exchange.tracked
        tracked_ids = [packet[3] for packet in split_packets(exchange.tracked)]
        assert [packet[3] for packet in split_packets(out)] == tracked_ids
        assert not any(is_state_changed_ok(packet[4:]) for packet in split_packets(out))
    assert changed >= len(exchanges) // 2
