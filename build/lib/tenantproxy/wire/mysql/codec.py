"""The protocol's basic data types (Protocol::FixedLengthInteger, LengthEncodedInteger, strings).

``Reader`` walks a payload and raises ProtocolError, never IndexError, on truncated input.
"""

from __future__ import annotations

from tenantproxy.wire.mysql.errors import ProtocolError


def int_fixed(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def int_lenenc(value: int) -> bytes:
    """Protocol::LengthEncodedInteger."""
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(3, "little")
    return b"\xfe" + value.to_bytes(8, "little")


def str_lenenc(value: bytes) -> bytes:
    return int_lenenc(len(value)) + value


def str_null(value: bytes) -> bytes:
    return value + b"\x00"


class Reader:
    """A cursor over one payload."""

    __slots__ = ("_data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self._data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self._data) - self.pos

    def is_at_end(self) -> bool:
        return self.pos >= len(self._data)

    def _take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self._data):
            raise ProtocolError(f"truncated packet: wanted {size} bytes at offset {self.pos}")
        chunk = self._data[self.pos : end]
        self.pos = end
        return bytes(chunk)

    def int_fixed(self, size: int) -> int:
        return int.from_bytes(self._take(size), "little")

    def int_lenenc(self) -> int:
        first = self.int_fixed(1)
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.int_fixed(2)
        if first == 0xFD:
            return self.int_fixed(3)
        if first == 0xFE:
            return self.int_fixed(8)
        raise ProtocolError(f"invalid length-encoded integer prefix 0x{first:02x}")

    def bytes_fixed(self, size: int) -> bytes:
        return self._take(size)

    def bytes_lenenc(self) -> bytes:
        return self._take(self.int_lenenc())

    def bytes_null(self) -> bytes:
        end = self._data.find(b"\x00", self.pos)
        if end < 0:
            raise ProtocolError(f"missing NUL terminator after offset {self.pos}")
        chunk = self._data[self.pos : end]
        self.pos = end + 1
        return bytes(chunk)

    def bytes_eof(self) -> bytes:
        """Protocol::RestOfPacketString."""
        return self._take(self.remaining())
