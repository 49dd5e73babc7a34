"""The compressed packet codec, against a real `mariadb --compress` session (golden/README.md)."""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantproxy.wire.mysql.compression import (
    MIN_COMPRESS_LENGTH,
    CompressedStream,
)
from tenantproxy.wire.mysql.constants import CapabilityFlags as F
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.response_tracker import ResponseTracker

GOLDEN = Path(__file__).parent / "golden" / "compressed_session.hex"
# What the `mariadb` client negotiated with MariaDB 10.11 (no CLIENT_DEPRECATE_EOF).
CLI_CAPABILITIES = (
    F.CLIENT_PROTOCOL_41
    | F.CLIENT_MULTI_RESULTS
    | F.CLIENT_PS_MULTI_RESULTS
    | F.MARIADB_CLIENT_PROGRESS
    | F.MARIADB_CLIENT_CACHE_METADATA
)


def session() -> list[tuple[str, bytes]]:
    lines = GOLDEN.read_text().splitlines()
    return [(line[0], bytes.fromhex(line[2:])) for line in lines]


def exchanges() -> list[tuple[bytes, bytes]]:
    """(the client's command bytes, all the server's bytes after it) per command."""
    grouped = itertools.groupby(session(), key=lambda chunk: chunk[0])
    blocks = [(tag, b"".join(data for _, data in chunks)) for tag, chunks in grouped]
    return [
        (data, blocks[i + 1][1] if i + 1 < len(blocks) else b"")
        for i, (tag, data) in enumerate(blocks)
        if tag == "C"
    ]


def compressed_packets(wire: bytes) -> list[tuple[int, bytes]]:
    """(sequence id, payload as the sender had it) of each compressed packet."""
    packets = []
    while wire:
        length = int.from_bytes(wire[:3], "little")
        body = wire[7 : 7 + length]
        packets.append((wire[3], zlib.decompress(body) if wire[4:7] != bytes(3) else body))
        wire = wire[7 + length :]
    return packets


def test_golden_server_bytes_decompress_to_responses_the_tracker_ends_once_each() -> None:
    tracker = ResponseTracker(CLI_CAPABILITIES)
    for command_bytes, server_bytes in exchanges()[:-1]:  # the last command is COM_QUIT
        command = CompressedStream().decompress(command_bytes)
        assert tracker.command_sent(command[4:20])
        stream = CompressedStream()
        assert tracker.server_data(stream.decompress(server_bytes)) == 1
        assert stream.buffered_bytes == 0
    assert tracker.is_idle


def test_golden_server_bytes_fed_one_byte_at_a_time_give_the_same_stream() -> None:
    for _, server_bytes in exchanges():
        stream = CompressedStream()
        pieces = [stream.decompress(server_bytes[i : i + 1]) for i in range(len(server_bytes))]
        assert b"".join(pieces) == CompressedStream().decompress(server_bytes)


def test_golden_compressed_packets_are_re_encoded_to_mariadbs_own_bytes() -> None:
    """The proxy answers as MariaDB does: same level, same ids, same raw/compressed choice."""
    for command_bytes, server_bytes in exchanges():
        proxy_side = CompressedStream()
        proxy_side.decompress(command_bytes)
        expected = compressed_packets(server_bytes)
        assert b"".join(proxy_side.compress(payload) for _, payload in expected) == server_bytes


def test_golden_commands_under_the_threshold_travel_uncompressed() -> None:
    for command_bytes, _ in exchanges():
        client_side = CompressedStream()
        client_side.start_command()
        command = CompressedStream().decompress(command_bytes)
        assert len(command) < MIN_COMPRESS_LENGTH
        assert client_side.compress(command) == command_bytes


def test_a_reply_takes_the_id_after_the_last_compressed_packet_received() -> None:
    client_side, server_side = CompressedStream(), CompressedStream()
    client_side.sequence_id = 255
    server_side.decompress(client_side.compress(b"\x01\x00\x00\x00\x0e"))
    assert server_side.compress(b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00")[3] == 0


def test_counters_add_up_the_bytes_both_ways() -> None:
    side = CompressedStream()
    wire = side.compress(b"x" * 1000)
    assert (side.uncompressed_bytes_sent, side.compressed_bytes_sent) == (1000, len(wire))
    other = CompressedStream()
    other.decompress(wire[:5])
    other.decompress(wire[5:])
    assert (other.compressed_bytes_received, other.uncompressed_bytes_received) == (len(wire), 1000)


@settings(max_examples=60)
@given(
    chunks=st.lists(st.binary(max_size=3000) | st.just(b"ab" * 5000), max_size=8),
    cuts=st.lists(st.integers(1, 20000), max_size=20),
)
def test_compressed_bytes_round_trip_however_the_wire_cuts_them(
    chunks: list[bytes], cuts: list[int]
) -> None:
    sender, receiver = CompressedStream(), CompressedStream()
    wire = b"".join(sender.compress(chunk) for chunk in chunks)
    edges = [0, *sorted({cut for cut in cuts if cut < len(wire)}), len(wire)]
    received = b"".join(receiver.decompress(wire[a:b]) for a, b in itertools.pairwise(edges))
    assert received == b"".join(chunks)
    assert receiver.buffered_bytes == 0
    assert receiver.sequence_id == sender.sequence_id


def header(length: int, sequence_id: int, uncompressed_length: int) -> bytes:
    return (
        length.to_bytes(3, "little")
        + bytes((sequence_id,))
        + uncompressed_length.to_bytes(3, "little")
    )


@pytest.mark.parametrize(
    ("payload", "announced"),
    [
        (b"not zlib at all", 100),
        (zlib.compress(b"x" * 100), 99),  # inflates to more than announced
        (zlib.compress(b"x" * 100), 101),  # to less
        (zlib.compress(b"x" * 100) + b"trailing", 100),
        (zlib.compress(b"x" * 100)[:-3], 100),  # truncated stream
    ],
)
def test_a_payload_that_does_not_inflate_to_its_announced_length_raises_protocol_error(
    payload: bytes, announced: int
) -> None:
    with pytest.raises(ProtocolError):
        CompressedStream().decompress(header(len(payload), 0, announced) + payload)


def test_a_zlib_bomb_is_not_inflated_past_its_announced_length() -> None:
    bomb = zlib.compress(bytes(64 * 1024 * 1024), 9)  # 64 MiB of zeros in about 64 KiB
    with pytest.raises(ProtocolError):
        CompressedStream().decompress(header(len(bomb), 0, 1000) + bomb)
