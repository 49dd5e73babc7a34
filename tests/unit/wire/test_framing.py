from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantproxy.wire.mysql.constants import MAX_PACKET_PAYLOAD_BYTES
from tenantproxy.wire.mysql.errors import PacketTooLarge, ProtocolError
from tenantproxy.wire.mysql.framing import (
    PacketDecoder,
    PacketSplitter,
    WirePacket,
    encode_packet,
)

MAX = MAX_PACKET_PAYLOAD_BYTES
LARGE_LIMIT = 64 * 1024 * 1024
# Sizes around the 16 MiB fragment limit, tested one by one rather than drawn at random.
LARGE_SIZES = [MAX - 1, MAX, MAX + 1, 2 * MAX]


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def decode_all(decoder: PacketDecoder, chunks: list[bytes]) -> list[tuple[int, bytes]]:
    packets = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (packet := decoder.next_packet()) is not None:
            packets.append(packet)
    return packets


def test_encode_packet_writes_length_and_sequence_id_in_the_header() -> None:
    assert encode_packet(b"\x03abc", 7) == (b"\x04\x00\x00\x07\x03abc", 8)


def test_encode_packet_wraps_the_sequence_id_at_256() -> None:
    assert encode_packet(b"x", 255) == (b"\x01\x00\x00\xffx", 0)


def test_encode_packet_of_an_empty_payload_is_one_empty_packet() -> None:
    assert encode_packet(b"", 3) == (b"\x00\x00\x00\x03", 4)


def test_encode_packet_ends_a_payload_of_exactly_16_mib_with_an_empty_fragment() -> None:
    wire, next_id = encode_packet(b"a" * MAX, 0)
    assert len(wire) == 4 + MAX + 4
    assert wire[:4] == b"\xff\xff\xff\x00"
    assert wire[-4:] == b"\x00\x00\x00\x01"
    assert next_id == 2


def test_encode_packet_splits_a_large_payload_into_full_fragments_and_a_short_one() -> None:
    wire, next_id = encode_packet(b"b" * (2 * MAX + 10), 254)
    assert [p.sequence_id for p in PacketSplitter(LARGE_LIMIT).feed(wire)] == [254, 255, 0]
    assert next_id == 1
    assert wire[-14:-10] == b"\x0a\x00\x00\x00"


@given(payload=st.binary(max_size=600), sequence_id=st.integers(0, 255), chunk=st.integers(1, 50))
def test_decoder_gives_back_what_encode_packet_framed(
    payload: bytes, sequence_id: int, chunk: int
) -> None:
    wire, _ = encode_packet(payload, sequence_id)
    decoder = PacketDecoder(1 << 20, expected_sequence_id=sequence_id)
    assert decode_all(decoder, chunked(wire, chunk)) == [(sequence_id, payload)]
    assert decoder.buffered_bytes == 0


@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
)
def test_splitter_cuts_a_stream_into_the_packets_it_was_made_of(
    payloads: list[bytes], cuts: list[int]
) -> None:
    wire, sequence_id = b"", 0
    for payload in payloads:
        framed, sequence_id = encode_packet(payload, sequence_id)
        wire += framed
    splitter = PacketSplitter(1 << 20)
    packets = [p for chunk in split_at(wire, cuts) for p in splitter.feed(chunk)]
    assert [p.payload for p in packets] == payloads
    assert b"".join(p.raw for p in packets) == wire
    assert [p.sequence_id for p in packets] == [i % 256 for i in range(len(payloads))]
    assert splitter.buffered_bytes == 0


def test_splitter_holds_a_partial_packet_until_its_last_byte_arrives() -> None:
    splitter = PacketSplitter(1024)
    assert splitter.feed(b"\x03\x00\x00\x00ab") == []
    assert splitter.buffered_bytes == 6
    assert splitter.feed(b"c\x01") == [WirePacket(0, b"abc", b"\x03\x00\x00\x00abc", False, False)]
    assert splitter.buffered_bytes == 1


@pytest.mark.parametrize("size", LARGE_SIZES)
def test_splitter_marks_fragments_of_packets_around_16_mib(size: int) -> None:
    payload = bytes([size % 251]) * size
    wire, _ = encode_packet(payload, 9)
    splitter = PacketSplitter(LARGE_LIMIT)
    packets = [p for chunk in chunked(wire, 4 << 20) for p in splitter.feed(chunk)]
    assert b"".join(p.payload for p in packets) == payload
    assert [p.has_more_fragments for p in packets] == [len(p.payload) == MAX for p in packets]
    assert [p.is_continuation for p in packets] == [False] + [True] * (len(packets) - 1)
    assert not packets[-1].has_more_fragments


@pytest.mark.parametrize("size", LARGE_SIZES)
def test_decoder_joins_fragments_of_packets_around_16_mib(size: int) -> None:
    payload = bytes([size % 253]) * size
    wire, next_id = encode_packet(payload, 250)
    decoder = PacketDecoder(LARGE_LIMIT, expected_sequence_id=250)
    assert decode_all(decoder, chunked(wire, 3 << 20)) == [((next_id - 1) % 256, payload)]
    assert decoder.expected_sequence_id == next_id


def test_decoder_raises_protocol_error_on_a_wrong_sequence_id() -> None:
    decoder = PacketDecoder(1024, expected_sequence_id=1)
    decoder.feed(encode_packet(b"hello", 2)[0])
    with pytest.raises(ProtocolError, match="sequence id 2, expected 1"):
        decoder.next_packet()


@given(expected=st.integers(0, 255), offset=st.integers(1, 255))
def test_decoder_rejects_every_sequence_id_but_the_expected_one(expected: int, offset: int) -> None:
    decoder = PacketDecoder(1024, expected_sequence_id=expected)
    decoder.feed(encode_packet(b"x", (expected + offset) % 256)[0])
    with pytest.raises(ProtocolError):
        decoder.next_packet()


def test_decoder_checks_the_sequence_id_of_every_fragment() -> None:
    wire = bytearray(encode_packet(b"z" * (MAX + 3), 0)[0])
    wire[4 + MAX + 3] = 5  # the continuation should carry 1
    decoder = PacketDecoder(LARGE_LIMIT)
    decoder.feed(bytes(wire))
    with pytest.raises(ProtocolError, match="sequence id 5, expected 1"):
        decoder.next_packet()


def test_decoder_follows_an_expected_sequence_id_set_by_the_caller() -> None:
    decoder = PacketDecoder(1024, expected_sequence_id=4)
    decoder.feed(encode_packet(b"a", 4)[0] + encode_packet(b"b", 0)[0])
    assert decoder.next_packet() == (4, b"a")
    decoder.expected_sequence_id = 0
    assert decoder.next_packet() == (0, b"b")
    assert decoder.next_packet() is None


@given(size=st.integers(11, 5000))
def test_decoder_raises_packet_too_large_past_max_packet_bytes(size: int) -> None:
    decoder = PacketDecoder(10)
    decoder.feed(encode_packet(b"q" * size, 0)[0][:5])  # the header is enough to know
    with pytest.raises(PacketTooLarge):
        decoder.next_packet()


def test_decoder_accepts_a_packet_of_exactly_max_packet_bytes() -> None:
    decoder = PacketDecoder(10)
    decoder.feed(encode_packet(b"q" * 10, 0)[0])
    assert decoder.next_packet() == (0, b"q" * 10)


def test_splitter_raises_packet_too_large_from_the_header_alone() -> None:
    with pytest.raises(PacketTooLarge):
        PacketSplitter(100).feed(b"\x65\x00\x00\x00")


def test_splitter_counts_all_fragments_of_a_packet_against_max_packet_bytes() -> None:
    wire, _ = encode_packet(b"f" * (MAX + 10), 0)
    splitter = PacketSplitter(MAX + 9)
    assert len(splitter.feed(wire[: 4 + MAX])) == 1
    with pytest.raises(PacketTooLarge):
        splitter.feed(wire[4 + MAX :])


@settings(max_examples=30)
@given(data=st.data())
def test_decoder_fed_one_byte_at_a_time_returns_each_packet_once(data: st.DataObject) -> None:
    payloads = data.draw(st.lists(st.binary(max_size=40), min_size=1, max_size=5))
    wire, sequence_id = b"", 0
    for payload in payloads:
        framed, sequence_id = encode_packet(payload, sequence_id)
        wire += framed
    decoder = PacketDecoder(1024)
    got = decode_all(decoder, [wire[i : i + 1] for i in range(len(wire))])
    assert [payload for _, payload in got] == payloads


def test_splitter_fed_one_byte_at_a_time_returns_each_packet_once() -> None:
    wire = (
        encode_packet(b"\x03SELECT 1", 0)[0] + encode_packet(b"", 1)[0] + encode_packet(b"ok", 2)[0]
    )
    splitter = PacketSplitter(1024)
    packets = [p for i in range(len(wire)) for p in splitter.feed(wire[i : i + 1])]
    assert [(p.sequence_id, p.payload) for p in packets] == [
        (0, b"\x03SELECT 1"),
        (1, b""),
        (2, b"ok"),
    ]
    assert splitter.buffered_bytes == 0
