from __future__ import annotations

import functools
import itertools
import lzma
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantproxy.wire.mysql.codec import int_fixed, int_lenenc, str_lenenc
from tenantproxy.wire.mysql.constants import (
    MAX_PACKET_PAYLOAD_BYTES,
    CapabilityFlags,
    ServerStatus,
)
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.response_tracker import ResponseTracker

MAX = MAX_PACKET_PAYLOAD_BYTES
GOLDEN_DIR = Path(__file__).parent / "golden"
SMALL_GOLDEN = sorted(path.name for path in GOLDEN_DIR.glob("*.txt"))
BIG_GOLDEN = sorted(path.name for path in GOLDEN_DIR.glob("*.txt.xz"))
EOF_CAPS = CapabilityFlags.CLIENT_PROTOCOL_41 | CapabilityFlags.CLIENT_MULTI_RESULTS
DEPRECATE_EOF_CAPS = EOF_CAPS | CapabilityFlags.CLIENT_DEPRECATE_EOF
MORE = ServerStatus.SERVER_MORE_RESULTS_EXISTS
AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT
CURSOR_EXISTS = ServerStatus.SERVER_STATUS_CURSOR_EXISTS


# --- golden transcripts (see golden/README.md) ------------------------------------------------


@dataclass(frozen=True)
class Step:
    client: bytes | None = None
    server: bytes = b""
    ends: int = 0
    status: int | None = None
    error: int | None = None


@dataclass(frozen=True)
class Transcript:
    capabilities: CapabilityFlags
    steps: tuple[Step, ...]


def _field(value: str) -> int | None:
    return None if value == "-" else int(value, 0)


@functools.cache
def load_golden(name: str) -> Transcript:
    raw = (GOLDEN_DIR / name).read_bytes()
    text = (lzma.decompress(raw) if name.endswith(".xz") else raw).decode()
    capabilities = CapabilityFlags(0)
    steps = []
    for line in text.splitlines():
        if line.startswith("# capabilities="):
            capabilities = CapabilityFlags(int(line.split("=")[1], 16))
        elif line.startswith("C "):
            steps.append(Step(client=bytes.fromhex(line[2:])))
        elif line.startswith("S "):
            _, ends, status, error, data = line.split(" ")
            steps.append(
                Step(
                    server=bytes.fromhex(data),
                    ends=int(ends.split("=")[1]),
                    status=_field(status.split("=")[1]),
                    error=_field(error.split("=")[1]),
                )
            )
    return Transcript(capabilities, tuple(steps))


Chunker = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data]


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def cut_at(cuts: list[int]) -> Chunker:
    def chunker(data: bytes) -> list[bytes]:
        edges = [0, *sorted({cut for cut in cuts if 0 < cut < len(data)}), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(edges)]

    return chunker


def replay(transcript: Transcript, chunker: Chunker) -> None:
    """Feeds each server block in chunks; its responses must end in the chunk of its last byte."""
    tracker = ResponseTracker(transcript.capabilities)
    for step in transcript.steps:
        if step.client is not None:
            if tracker.is_awaiting_local_infile:
                tracker.local_infile_packet_sent(len(step.client))
            else:
                tracker.command_sent(step.client[:16])
            continue
        ended = [tracker.server_data(chunk) for chunk in chunker(step.server)]
        assert ended == [0] * (len(ended) - 1) + [step.ends]
        assert len(tracker.ends) == step.ends  # one ResponseEnd per response ended
        assert tracker.is_awaiting_local_infile == (step.ends == 0)
        if step.status is not None:
            assert tracker.status_flags == step.status
        assert tracker.last_error_code == step.error
    assert tracker.is_idle


@pytest.mark.parametrize("name", SMALL_GOLDEN)
def test_golden_response_fed_whole_ends_once_at_its_last_byte(name: str) -> None:
    replay(load_golden(name), whole)


@pytest.mark.parametrize("name", SMALL_GOLDEN)
def test_golden_response_fed_one_byte_at_a_time_ends_once_at_its_last_byte(name: str) -> None:
    replay(load_golden(name), byte_by_byte)


@pytest.mark.parametrize("name", SMALL_GOLDEN)
@settings(max_examples=40)
@given(cuts=st.lists(st.integers(1, 1000), max_size=30))
def test_golden_response_in_random_chunks_ends_once_at_its_last_byte(
    name: str, cuts: list[int]
) -> None:
    replay(load_golden(name), cut_at(cuts))


@pytest.mark.parametrize("name", BIG_GOLDEN)
def test_golden_big_row_starts_with_0xfe_and_spans_two_fragments(name: str) -> None:
    server = load_golden(name).steps[1].server
    full_fragment = server.index(b"\xff\xff\xff")
    assert server[full_fragment + 4] == 0xFE  # the row's 8-byte length prefix
    assert len(server) > 17_000_000


@pytest.mark.parametrize("name", BIG_GOLDEN)
def test_golden_big_row_fed_whole_ends_once_at_its_last_byte(name: str) -> None:
    replay(load_golden(name), whole)


@pytest.mark.parametrize("name", BIG_GOLDEN)
def test_golden_big_row_fed_byte_by_byte_around_its_headers_ends_at_its_last_byte(
    name: str,
) -> None:
    def chunker(data: bytes) -> list[bytes]:
        full_fragment = data.index(b"\xff\xff\xff")
        continuation = full_fragment + 4 + MAX
        edges = [
            *range(full_fragment + 40),
            *range(continuation - 40, continuation + 40),
            *range(len(data) - 400, len(data) + 1),
        ]
        return [data[a:b] for a, b in itertools.pairwise(edges)]

    replay(load_golden(name), chunker)


@pytest.mark.parametrize("name", BIG_GOLDEN)
@settings(max_examples=10)
@given(cuts=st.lists(st.integers(1, 17_100_000), max_size=20))
def test_golden_big_row_in_random_chunks_ends_once_at_its_last_byte(
    name: str, cuts: list[int]
) -> None:
    replay(load_golden(name), cut_at(cuts))


# --- synthetic responses ----------------------------------------------------------------------


def ok(
    status: int, header: int = 0x00, affected: int = 0, insert_id: int = 0, info: bytes = b""
) -> bytes:
    return (
        bytes((header,))
        + int_lenenc(affected)
        + int_lenenc(insert_id)
        + int_fixed(status, 2)
        + b"\0\0"
        + info
    )


def eof(status: int) -> bytes:
    return b"\xfe\x00\x00" + int_fixed(status, 2)


def err(code: int) -> bytes:
    return b"\xff" + int_fixed(code, 2) + b"#42S02Table 'g.missing' doesn't exist"


def column_definition(name: bytes) -> bytes:
    return (
        b"\x03def"
        + str_lenenc(b"g")
        + str_lenenc(b"t") * 2
        + str_lenenc(name) * 2
        + b"\x0c-\x00\x50\x00\x00\x00\xfd\x00\x00\x00\x00\x00"
    )


def terminator(status: int, is_deprecate_eof: bool, affected: int = 0) -> bytes:
    return ok(status, header=0xFE, affected=affected) if is_deprecate_eof else eof(status)


def frame_all(payloads: list[bytes]) -> bytes:
    wire, sequence_id = b"", 1
    for payload in payloads:
        framed, sequence_id = encode_packet(payload, sequence_id)
        wire += framed
    return wire


status_flags = st.integers(0, 0xFFFF).map(lambda flags: flags & ~MORE)
lenenc_values = st.one_of(
    st.integers(0, 250),
    st.integers(251, 0xFFFF),
    st.integers(0x10000, 0xFFFFFF),
    st.integers(1 << 24, 1 << 63),
)
text_values = st.one_of(
    st.just(b"\xfb"),  # NULL
    st.binary(max_size=300).map(str_lenenc),
)


@st.composite
def results(draw: st.DrawFn, is_deprecate_eof: bool, is_binary: bool, status: int) -> list[bytes]:
    """One result: an OK, or a result set ending with ``status``."""
    if draw(st.booleans()):
        info = draw(st.binary(max_size=40))
        return [ok(status, affected=draw(lenenc_values), insert_id=draw(lenenc_values), info=info)]
    columns = draw(st.integers(1, 6))
    payloads = [int_lenenc(columns)] + [column_definition(b"c%d" % i) for i in range(columns)]
    if not is_deprecate_eof:
        payloads.append(eof(draw(status_flags)))
    for _ in range(draw(st.integers(0, 6))):
        if is_binary:
            payloads.append(b"\x00" + draw(st.binary(max_size=200)))
        else:
            payloads.append(
                b"".join(draw(st.lists(text_values, min_size=columns, max_size=columns)))
            )
    payloads.append(terminator(status, is_deprecate_eof, affected=draw(lenenc_values)))
    return payloads


@dataclass(frozen=True)
class Synthetic:
    command: bytes
    wire: bytes
    status: int | None  # of the last terminator, None when an ERR ends it
    error: int | None


@st.composite
def responses(draw: st.DrawFn, is_deprecate_eof: bool) -> Synthetic:
    is_binary = draw(st.booleans())
    count = draw(st.integers(1, 3))
    payloads: list[bytes] = []
    final_status = draw(status_flags)
    for index in range(count):
        is_last = index == count - 1
        status = final_status if is_last else draw(status_flags) | MORE
        payloads += draw(results(is_deprecate_eof, is_binary, status))
    error = None
    if draw(st.booleans()):
        error = draw(st.integers(1000, 9999))
        # An ERR ends the response at any point (here: it replaces a terminator).
        payloads[-1] = err(error)
    command = b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00" if is_binary else b"\x03SELECT 1"
    return Synthetic(command, frame_all(payloads), None if error else final_status, error)


@pytest.mark.parametrize("capabilities", [EOF_CAPS, DEPRECATE_EOF_CAPS])
@settings(max_examples=150)
@given(data=st.data())
def test_tracker_finds_the_end_of_every_synthetic_response(
    capabilities: CapabilityFlags, data: st.DataObject
) -> None:
    is_deprecate_eof = bool(capabilities & CapabilityFlags.CLIENT_DEPRECATE_EOF)
    pipelined = data.draw(st.lists(responses(is_deprecate_eof), min_size=1, max_size=4))
    stream = b"".join(response.wire for response in pipelined)
    end_offsets = []
    for response in pipelined:
        end_offsets.append((end_offsets[-1] if end_offsets else 0) + len(response.wire))
    cuts = data.draw(st.lists(st.integers(1, len(stream)), max_size=20))
    tracker = ResponseTracker(capabilities)
    for response in pipelined:
        assert tracker.command_sent(response.command[:16])
    assert tracker.pending_responses == len(pipelined)
    start = 0
    for chunk in cut_at(cuts)(stream):
        end = start + len(chunk)
        assert tracker.server_data(chunk) == sum(start < offset <= end for offset in end_offsets)
        start = end
    assert tracker.is_idle
    last = pipelined[-1]
    assert tracker.last_error_code == last.error
    if last.status is not None:
        assert tracker.status_flags == last.status


# --- behaviours, one by one -------------------------------------------------------------------


def tracker_after(
    command: bytes, capabilities: CapabilityFlags = DEPRECATE_EOF_CAPS
) -> ResponseTracker:
    tracker = ResponseTracker(capabilities)
    assert tracker.command_sent(command)
    return tracker


def test_tracker_starts_idle_with_autocommit_status() -> None:
    tracker = ResponseTracker(EOF_CAPS)
    assert tracker.is_idle
    assert tracker.pending_responses == 0
    assert tracker.status_flags == AUTOCOMMIT
    assert tracker.last_error_code is None
    assert not tracker.has_session_state_changed


def test_server_data_while_no_response_is_expected_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="no response was expected"):
        ResponseTracker(EOF_CAPS).server_data(frame_all([ok(2)]))


def test_bytes_after_the_last_expected_response_raise_protocol_error() -> None:
    tracker = tracker_after(b"\x0e")
    with pytest.raises(ProtocolError):
        tracker.server_data(frame_all([ok(2), ok(2)]))


@pytest.mark.parametrize(
    "command", [b"\x01", b"\x19\x01\x00\x00\x00", b"\x18\x01\x00\x00\x00\x00\x00abc"]
)
def test_commands_the_server_does_not_answer_are_not_queued(command: bytes) -> None:
    tracker = ResponseTracker(EOF_CAPS)
    assert tracker.command_sent(command) is False
    assert tracker.is_idle


def test_a_pending_response_makes_the_tracker_busy_until_it_ends() -> None:
    tracker = tracker_after(b"\x0e")
    assert not tracker.is_idle
    assert tracker.server_data(frame_all([ok(2)])[:-1]) == 0
    assert not tracker.is_idle
    assert tracker.server_data(b"\x00") == 1
    assert tracker.is_idle


def test_pipelined_commands_end_in_the_order_they_were_sent() -> None:
    tracker = ResponseTracker(EOF_CAPS)
    tracker.command_sent(b"\x03SELECT 1")
    tracker.command_sent(b"\x0e")
    tracker.command_sent(b"\x09")
    assert tracker.pending_responses == 3
    result = frame_all([b"\x01", column_definition(b"a"), eof(2), b"\x011", eof(0x22)])
    assert tracker.server_data(result + frame_all([ok(3)])) == 2
    assert tracker.status_flags == 3
    assert tracker.server_data(frame_all([b"Uptime: 1  Threads: 1"])) == 1
    assert tracker.is_idle


def test_ok_with_session_state_changed_sets_has_session_state_changed() -> None:
    tracker = tracker_after(b"\x02db")
    tracker.server_data(frame_all([ok(0x4002, info=b"\x00\x04\x01\x02\x01g")]))
    assert tracker.has_session_state_changed
    tracker.command_sent(b"\x0e")
    tracker.server_data(frame_all([ok(0x0002)]))
    assert not tracker.has_session_state_changed


def test_last_error_code_is_cleared_by_a_response_that_succeeds() -> None:
    tracker = tracker_after(b"\x03SELECT * FROM missing")
    tracker.server_data(frame_all([err(1146)]))
    assert tracker.last_error_code == 1146
    tracker.command_sent(b"\x0e")
    tracker.server_data(frame_all([ok(2)]))
    assert tracker.last_error_code is None


def test_err_in_the_middle_of_the_rows_ends_the_response() -> None:
    tracker = tracker_after(b"\x03SELECT 1", EOF_CAPS)
    ended = tracker.server_data(
        frame_all([b"\x01", column_definition(b"a"), eof(2), b"\x011", err(1317)])
    )
    assert ended == 1
    assert tracker.last_error_code == 1317


def test_an_invalid_first_byte_of_a_result_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="invalid first packet"):
        tracker_after(b"\x03SELECT 1").server_data(frame_all([b"\xfe\x00\x00\x02\x00"]))


def test_a_missing_eof_after_the_column_definitions_raises_protocol_error() -> None:
    tracker = tracker_after(b"\x03SELECT 1", EOF_CAPS)
    with pytest.raises(ProtocolError, match="expected EOF"):
        tracker.server_data(frame_all([b"\x01", column_definition(b"a"), b"\x011"]))


def test_replication_commands_cannot_be_tracked() -> None:
    with pytest.raises(ProtocolError, match="replication"):
        ResponseTracker(EOF_CAPS).command_sent(b"\x12\x04\x00\x00\x00")


def test_an_unknown_command_is_answered_by_one_err() -> None:
    tracker = tracker_after(b"\xf0\x00")
    assert tracker.server_data(frame_all([err(1047)])) == 1


@pytest.mark.parametrize("capabilities", [EOF_CAPS, DEPRECATE_EOF_CAPS])
def test_com_statistics_ends_after_one_packet_whatever_it_starts_with(
    capabilities: CapabilityFlags,
) -> None:
    tracker = tracker_after(b"\x09", capabilities)
    assert tracker.server_data(frame_all([b"\xfeUptime: 5"])) == 1


@pytest.mark.parametrize(
    ("capabilities", "extra_packets"), [(EOF_CAPS, 2), (DEPRECATE_EOF_CAPS, 0)]
)
def test_com_stmt_prepare_ends_after_its_parameter_and_column_definitions(
    capabilities: CapabilityFlags, extra_packets: int
) -> None:
    tracker = tracker_after(b"\x16SELECT a, b FROM t WHERE c = ?", capabilities)
    prepare_ok = b"\x00\x07\x00\x00\x00\x02\x00\x01\x00\x00\x00\x00"
    definitions = [column_definition(b"?"), column_definition(b"a"), column_definition(b"b")]
    packets = [prepare_ok, *definitions] + [eof(2)] * extra_packets
    wire = frame_all(packets)
    assert [tracker.server_data(wire[i : i + 1]) for i in range(len(wire))] == [0] * (
        len(wire) - 1
    ) + [1]


def test_com_stmt_prepare_without_parameters_or_columns_ends_at_its_first_packet() -> None:
    tracker = tracker_after(b"\x16DO 1", EOF_CAPS)
    assert (
        tracker.server_data(frame_all([b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"])) == 1
    )


def test_cursor_execute_ends_at_the_metadata_eof_with_cursor_exists() -> None:
    tracker = tracker_after(b"\x17\x01\x00\x00\x00\x01\x01\x00\x00\x00", EOF_CAPS)
    wire = frame_all([b"\x01", column_definition(b"a"), eof(CURSOR_EXISTS | AUTOCOMMIT)])
    assert tracker.server_data(wire) == 1
    assert tracker.status_flags & CURSOR_EXISTS


def test_execute_without_cursor_reads_rows_after_the_metadata_eof() -> None:
    tracker = tracker_after(b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00", EOF_CAPS)
    metadata = frame_all([b"\x01", column_definition(b"a"), eof(CURSOR_EXISTS | AUTOCOMMIT)])
    assert tracker.server_data(metadata) == 0
    assert tracker.server_data(frame_all([b"\x00\x00\x01", eof(AUTOCOMMIT)])) == 1


def test_com_stmt_fetch_reads_binary_rows_until_the_terminator() -> None:
    tracker = tracker_after(b"\x1c\x01\x00\x00\x00\x02\x00\x00\x00", EOF_CAPS)
    wire = frame_all(
        [b"\x00\x00\x01", b"\x00\x00\x02", eof(ServerStatus.SERVER_STATUS_LAST_ROW_SENT)]
    )
    assert tracker.server_data(wire) == 1
    assert tracker.status_flags == ServerStatus.SERVER_STATUS_LAST_ROW_SENT


def test_local_infile_waits_for_the_clients_empty_packet_then_reads_ok() -> None:
    tracker = tracker_after(b"\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE t")
    assert tracker.server_data(frame_all([b"\xfbf"])) == 0
    assert tracker.is_awaiting_local_infile
    tracker.local_infile_packet_sent(MAX)
    tracker.local_infile_packet_sent(0)  # only ends the 16 MiB packet above
    assert tracker.is_awaiting_local_infile
    tracker.local_infile_packet_sent(12)
    tracker.local_infile_packet_sent(0)
    assert not tracker.is_awaiting_local_infile
    assert tracker.server_data(frame_all([ok(2, affected=2)])) == 1


def test_server_data_while_awaiting_the_local_infile_raises_protocol_error() -> None:
    tracker = tracker_after(b"\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE t")
    tracker.server_data(frame_all([b"\xfbf"]))
    with pytest.raises(ProtocolError):
        tracker.server_data(frame_all([ok(2)]))


def test_local_infile_data_without_a_request_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="LOCAL INFILE"):
        tracker_after(b"\x03SELECT 1").local_infile_packet_sent(5)


def test_local_infile_result_must_be_ok_or_err() -> None:
    tracker = tracker_after(b"\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE t")
    tracker.server_data(frame_all([b"\xfbf"]))
    tracker.local_infile_packet_sent(0)
    with pytest.raises(ProtocolError, match="after LOCAL INFILE"):
        tracker.server_data(frame_all([b"\x01"]))


# --- 16 MiB fragments -------------------------------------------------------------------------


def test_a_row_starting_with_0xfe_in_a_full_fragment_is_not_a_terminator() -> None:
    tracker = tracker_after(b"\x03SELECT REPEAT('x', 17000000)")
    row = b"\xfe" + int_fixed(MAX + 10, 8) + b"x" * (MAX + 10)
    wire = frame_all([b"\x01", column_definition(b"big"), row, terminator(2, True)])
    tail = len(frame_all([terminator(2, True)]))
    assert tracker.server_data(wire[:-tail]) == 0
    assert tracker.server_data(wire[-tail:]) == 1


@pytest.mark.parametrize("first_byte", [b"\xff", b"\xfe", b"\x00"])
def test_a_continuation_fragment_is_never_read_as_a_packet(first_byte: bytes) -> None:
    tracker = tracker_after(b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00", EOF_CAPS)
    # A binary row (0x00, NULL bitmap, one string of MAX bytes) whose byte MAX is first_byte.
    row = (
        b"\x00\x00\xfd"
        + int_fixed(MAX, 3)
        + b"y" * (MAX - 6)
        + first_byte
        + b"\x00\x00\x02\x00\x00"
    )
    wire = frame_all([b"\x01", column_definition(b"big"), eof(2), row, eof(0x22)])
    assert wire[4 + MAX :].count(first_byte) >= 1
    assert tracker.server_data(wire) == 1
    assert tracker.status_flags == 0x22


def test_a_row_of_exactly_16_mib_is_followed_by_an_empty_continuation() -> None:
    tracker = tracker_after(b"\x03SELECT big", EOF_CAPS)
    row = b"\xfd" + int_fixed(MAX - 4, 3) + b"z" * (MAX - 4)
    wire = frame_all([b"\x01", column_definition(b"big"), eof(2), row, eof(2)])
    assert tracker.server_data(wire[:-9]) == 0  # stops just before the final EOF
    assert tracker.server_data(wire[-9:]) == 1


# --- MariaDB's extended capabilities (the golden mariadb_* transcripts hold the real bytes) ----

MARIADB_CAPS = (
    EOF_CAPS
    | CapabilityFlags.MARIADB_CLIENT_PROGRESS
    | CapabilityFlags.MARIADB_CLIENT_CACHE_METADATA
    | CapabilityFlags.MARIADB_CLIENT_STMT_BULK_OPERATIONS
)


def test_a_progress_report_does_not_end_the_response_when_progress_was_negotiated() -> None:
    tracker = tracker_after(b"\x03ALTER TABLE t FORCE", MARIADB_CAPS)
    assert tracker.server_data(frame_all([err(0xFFFF)])) == 0
    assert tracker.last_error_code is None
    assert tracker.server_data(frame_all([ok(AUTOCOMMIT)])) == 1


def test_an_err_with_code_0xffff_ends_the_response_without_progress_negotiated() -> None:
    tracker = tracker_after(b"\x03ALTER TABLE t FORCE", EOF_CAPS)
    assert tracker.server_data(frame_all([err(0xFFFF)])) == 1
    assert tracker.last_error_code == 0xFFFF


def test_a_column_count_without_its_metadata_follows_byte_raises_protocol_error() -> None:
    tracker = tracker_after(b"\x03SELECT 1", MARIADB_CAPS)
    with pytest.raises(ProtocolError):
        tracker.server_data(frame_all([b"\x01"]))


def test_skipped_metadata_goes_straight_to_the_eof_and_rows() -> None:
    tracker = tracker_after(b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00", MARIADB_CAPS)
    rows = [b"\x02\x00", eof(AUTOCOMMIT), b"\x00\x00\x01", eof(AUTOCOMMIT)]
    assert tracker.server_data(frame_all(rows)) == 1


def test_bulk_execute_with_returning_ends_after_its_result_set() -> None:
    tracker = tracker_after(b"\xfa\x01\x00\x00\x00\x80\x00", MARIADB_CAPS)
    result = [b"\x01\x01", column_definition(b"id"), eof(AUTOCOMMIT), b"\x00\x00\x01"]
    assert tracker.server_data(frame_all(result)) == 0
    assert tracker.server_data(frame_all([eof(AUTOCOMMIT)])) == 1
