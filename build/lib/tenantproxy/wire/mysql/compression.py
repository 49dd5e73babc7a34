"""Protocol compression (CLIENT_COMPRESS, zlib): compressed packets around the packet stream.

MySQL "Compression" pages (Compressed Packet, Compressed Packet Header): once the connection
phase is over (the OK that ends the login is still sent plain), each side sends everything inside
compressed packets:

    int<3> compressed payload length    what follows the 7-byte header
    int<1> compressed sequence id       its own counter: a command starts it at 0, and every
                                        compressed packet of the exchange, either way, takes the
                                        next one (the packets inside keep their own ids)
    int<3> uncompressed payload length  0: the payload was sent as it is
    payload                             a zlib stream (RFC 1950) of that length, or raw bytes

A payload is a piece of the ordinary packet stream, headers included: it may hold several
packets or part of one. MariaDB (net_serv.cc) leaves payloads under MIN_COMPRESS_LENGTH
uncompressed, and sends raw what zlib would not make smaller; so does this codec.

``CompressedStream`` is one side's codec: ``decompress`` takes wire bytes and gives the packet
stream they complete; ``compress`` frames packet-stream bytes for the wire. Each compressed
packet received sets the next id to send to its id + 1, which is how a server answers; a client
starting a command calls ``start_command`` first. Sans-IO: standard library only.
"""

from __future__ import annotations

import zlib

from tenantproxy.wire.mysql.errors import ProtocolError

COMPRESSED_HEADER_BYTES = 7
MAX_COMPRESSED_PAYLOAD_BYTES = 0xFFFFFF
# MariaDB's net_serv.cc: shorter payloads are not worth compressing.
MIN_COMPRESS_LENGTH = 50
# zlib's default, what MariaDB's compress() uses: the bytes match what the server would send.
DEFAULT_COMPRESSION_LEVEL = 6


class CompressedStream:
    """Compressed packets to and from one peer."""

    __slots__ = (
        "_buffer",
        "_level",
        "compressed_bytes_received",
        "compressed_bytes_sent",
        "sequence_id",
        "uncompressed_bytes_received",
        "uncompressed_bytes_sent",
    )

    def __init__(self, level: int = DEFAULT_COMPRESSION_LEVEL) -> None:
        self._level = level
        self._buffer = bytearray()  # an incomplete compressed packet
        self.sequence_id = 0  # the id of the next compressed packet to send
        self.compressed_bytes_received = self.uncompressed_bytes_received = 0
        self.compressed_bytes_sent = self.uncompressed_bytes_sent = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def start_command(self) -> None:
        """The client's side: a new command restarts the compressed sequence at 0."""
        self.sequence_id = 0

    def decompress(self, data: bytes) -> bytes:
        """Wire bytes in; the packet-stream bytes of the compressed packets they complete.

        Raises ProtocolError on a payload that is not the zlib stream its header announces.
        Holds at most one incomplete compressed packet (under 16 MiB) between calls."""
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        pieces: list[bytes] = []
        pos, end = 0, len(data)
        while end - pos >= COMPRESSED_HEADER_BYTES:
            length = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16)
            stop = pos + COMPRESSED_HEADER_BYTES + length
            if stop > end:
                break
            uncompressed_length = data[pos + 4] | (data[pos + 5] << 8) | (data[pos + 6] << 16)
            payload = data[pos + COMPRESSED_HEADER_BYTES : stop]
            if uncompressed_length:
                payload = _inflate(payload, uncompressed_length)
            pieces.append(payload)
            self.sequence_id = (data[pos + 3] + 1) & 0xFF
            pos = stop
        if pos < end:
            self._buffer += data[pos:]
        self.compressed_bytes_received += pos
        out = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.uncompressed_bytes_received += len(out)
        return out

    def compress(self, data: bytes) -> bytes:
        """Packet-stream bytes in; compressed packets out, one per 16 MiB of input."""
        parts: list[bytes] = []
        for start in range(0, len(data), MAX_COMPRESSED_PAYLOAD_BYTES):
            chunk = data[start : start + MAX_COMPRESSED_PAYLOAD_BYTES]
            packed = zlib.compress(chunk, self._level) if len(chunk) >= MIN_COMPRESS_LENGTH else b""
            if packed and len(packed) < len(chunk):
                parts.append(self._header(len(packed), len(chunk)))
                parts.append(packed)
            else:
                parts.append(self._header(len(chunk), 0))
                parts.append(chunk)
        out = b"".join(parts)
        self.uncompressed_bytes_sent += len(data)
        self.compressed_bytes_sent += len(out)
        return out

    def _header(self, length: int, uncompressed_length: int) -> bytes:
        header = (
            length.to_bytes(3, "little")
            + bytes((self.sequence_id,))
            + uncompressed_length.to_bytes(3, "little")
        )
        self.sequence_id = (self.sequence_id + 1) & 0xFF
        return header


def _inflate(payload: bytes, uncompressed_length: int) -> bytes:
    # At most one byte more than the header announces (itself under 16 MiB): a zlib bomb stops
    # there, and the room for that byte lets zlib read the stream's end and checksum.
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(payload, uncompressed_length + 1)
    except zlib.error as exc:
        raise ProtocolError(f"compressed payload is not a zlib stream: {exc}") from None
    is_whole_stream = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    if len(out) != uncompressed_length or not is_whole_stream:
        raise ProtocolError(
            f"compressed payload inflates to other than the {uncompressed_length} bytes announced"
        )
    return out
