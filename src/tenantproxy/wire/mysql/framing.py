"""Protocol::Packet framing: the 4-byte header (3-byte payload length, 1-byte sequence id).

A logical payload of 0xFFFFFF bytes or more is sent as several fragments: every fragment but the
last carries exactly 0xFFFFFF bytes, and the last one carries fewer (possibly none). So a payload
whose length is a multiple of 0xFFFFFF (including 0) ends with a short, maybe empty, fragment.
Each fragment takes the next sequence id, modulo 256.

    encode_packet     payload -> wire bytes (fragments and headers)
    PacketSplitter    wire bytes -> WirePacket per fragment, unjoined (for relaying unchanged)
    PacketDecoder     wire bytes -> (sequence id, joined payload), sequence ids checked

Sans-IO: standard library only; the caller owns the sockets.
"""

from __future__ import annotations

from typing import NamedTuple

from tenantproxy.wire.mysql.codec import int3_at
from tenantproxy.wire.mysql.constants import HEADER_BYTES, MAX_PACKET_PAYLOAD_BYTES
from tenantproxy.wire.mysql.errors import PacketTooLarge, ProtocolError

# Past this many consumed bytes the decoder drops them from the front of its buffer.
_COMPACT_AFTER_BYTES = 1 << 16


def _header(length: int, sequence_id: int) -> bytes:
    return (length | (sequence_id << 24)).to_bytes(HEADER_BYTES, "little")


def encode_packet(payload: bytes, sequence_id: int) -> tuple[bytes, int]:
    """Frame ``payload``; return (wire bytes, the sequence id that follows, mod 256)."""
    length = len(payload)
    sequence_id &= 0xFF
    if length < MAX_PACKET_PAYLOAD_BYTES:
        return _header(length, sequence_id) + payload, (sequence_id + 1) & 0xFF
    parts: list[bytes] = []
    offset = 0
    while True:
        fragment_length = min(length - offset, MAX_PACKET_PAYLOAD_BYTES)
        parts.append(_header(fragment_length, sequence_id))
        parts.append(payload[offset : offset + fragment_length])
        sequence_id = (sequence_id + 1) & 0xFF
        offset += fragment_length
        if fragment_length < MAX_PACKET_PAYLOAD_BYTES:
            return b"".join(parts), sequence_id


class WirePacket(NamedTuple):
    """One fragment as it travelled on the wire."""

    sequence_id: int
    payload: bytes  # this fragment's payload only
    raw: bytes  # header + payload, exactly as received (to forward unchanged)
    is_continuation: bool  # this fragment continues a previous 0xFFFFFF-long fragment
    has_more_fragments: bool  # len(payload) == 0xFFFFFF: another fragment follows


def _too_large(logical_bytes: int, max_packet_bytes: int) -> PacketTooLarge:
    return PacketTooLarge(
        f"packet of at least {logical_bytes} bytes exceeds max_packet_bytes={max_packet_bytes}"
    )


class PacketSplitter:
    """Cuts a byte stream into wire packets without joining fragments (for relaying).

    A fragment is held in memory until it is complete (up to 16 MiB). ``max_packet_bytes``
    bounds the logical (joined) payload size; PacketTooLarge is raised as soon as a header
    announces a fragment that would cross it.
    """

    __slots__ = ("_buffer", "_is_continuing", "_logical_bytes", "_max_packet_bytes", "_needed")

    def __init__(self, max_packet_bytes: int) -> None:
        self._max_packet_bytes = max_packet_bytes
        self._buffer = bytearray()
        self._needed = HEADER_BYTES  # buffered bytes needed before parsing again
        self._is_continuing = False  # the previous fragment was 0xFFFFFF long
        self._logical_bytes = 0  # payload bytes of the current logical packet so far

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def take_buffered(self) -> bytes:
        """The bytes of an incomplete packet, handed back to be fed again later (after the
        packets before it, which the caller holds too); the splitter starts afresh."""
        buffered = bytes(self._buffer)
        self._buffer.clear()
        self._needed = HEADER_BYTES
        self._is_continuing = False
        self._logical_bytes = 0
        return buffered

    def feed(self, data: bytes) -> list[WirePacket]:
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._needed:
                return []
            data = bytes(self._buffer)
            self._buffer.clear()
        packets: list[WirePacket] = []
        pos = 0
        end = len(data)
        while end - pos >= HEADER_BYTES:
            length = int3_at(data, pos)
            logical_bytes = (self._logical_bytes if self._is_continuing else 0) + length
            if logical_bytes > self._max_packet_bytes:
                raise _too_large(logical_bytes, self._max_packet_bytes)
            stop = pos + HEADER_BYTES + length
            if stop > end:
                self._needed = stop - pos
                break
            raw = data[pos:stop]
            has_more_fragments = length == MAX_PACKET_PAYLOAD_BYTES
            packets.append(
                WirePacket(
                    data[pos + 3],
                    raw[HEADER_BYTES:],
                    raw,
                    self._is_continuing,
                    has_more_fragments,
                )
            )
            self._is_continuing = has_more_fragments
            self._logical_bytes = logical_bytes
            pos = stop
        else:
            self._needed = HEADER_BYTES
        if pos < end:
            self._buffer += data[pos:]
        return packets


class PacketDecoder:
    """Reassembles logical packets (fragments joined); checks sequence ids.

    ``expected_sequence_id`` is the id the next fragment must carry; the caller may set it (for
    instance to 0 when a new command starts). A wrong id raises ProtocolError. ``next_packet``
    returns the sequence id of the LAST fragment, so the reply takes that id + 1.
    """

    __slots__ = ("_assembled", "_buffer", "_max_packet_bytes", "_pos", "expected_sequence_id")

    def __init__(self, max_packet_bytes: int, expected_sequence_id: int = 0) -> None:
        self._max_packet_bytes = max_packet_bytes
        self.expected_sequence_id = expected_sequence_id
        self._buffer = bytearray()
        self._pos = 0  # start of the unread part of _buffer
        self._assembled: bytearray | None = None  # fragments of an unfinished logical packet

    @property
    def buffered_bytes(self) -> int:
        assembled = len(self._assembled) if self._assembled is not None else 0
        return len(self._buffer) - self._pos + assembled

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_packet(self) -> tuple[int, bytes] | None:
        buffer = self._buffer
        while len(buffer) - self._pos >= HEADER_BYTES:
            pos = self._pos
            length = int3_at(buffer, pos)
            sequence_id = buffer[pos + 3]
            if sequence_id != self.expected_sequence_id:
                raise ProtocolError(
                    f"packet sequence id {sequence_id}, expected {self.expected_sequence_id}"
                )
            assembled_bytes = len(self._assembled) if self._assembled is not None else 0
            if assembled_bytes + length > self._max_packet_bytes:
                raise _too_large(assembled_bytes + length, self._max_packet_bytes)
            stop = pos + HEADER_BYTES + length
            if stop > len(buffer):
                return None
            payload = buffer[pos + HEADER_BYTES : stop]
            self._pos = stop
            self.expected_sequence_id = (sequence_id + 1) & 0xFF
            self._compact()
            if length == MAX_PACKET_PAYLOAD_BYTES:
                if self._assembled is None:
                    self._assembled = bytearray()
                self._assembled += payload
                continue
            if self._assembled is not None:
                self._assembled += payload
                payload, self._assembled = self._assembled, None
            return sequence_id, bytes(payload)
        return None

    def _compact(self) -> None:
        if self._pos == len(self._buffer):
            self._buffer.clear()
            self._pos = 0
        elif self._pos > _COMPACT_AFTER_BYTES:
            del self._buffer[: self._pos]
            self._pos = 0


# The compiled twin (the same source built by Cython) takes these names' place when it is chosen
# (see _compiled.py); the guard keeps the twin's own copy of these lines from importing itself.
COMPILED = False
if __name__ == "tenantproxy.wire.mysql.framing":
    from tenantproxy.wire.mysql import _compiled

    _compiled.adopt(
        globals(),
        "framing",
        ("encode_packet", "WirePacket", "PacketSplitter", "PacketDecoder"),
    )
