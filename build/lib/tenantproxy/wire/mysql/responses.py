"""Generic response packets: OK_Packet, ERR_Packet, EOF_Packet.

Sources: MySQL's "Generic Response Packets" (OK_Packet, ERR_Packet, EOF_Packet) and MariaDB's
"OK_Packet" / "ERR_Packet" pages. Which fields are present depends on the negotiated
capabilities, so ``encode``/``decode`` take them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantproxy.wire.mysql.codec import Reader, int_fixed, int_lenenc, str_lenenc
from tenantproxy.wire.mysql.constants import CapabilityFlags, PacketHeader, ServerStatus
from tenantproxy.wire.mysql.errors import ProtocolError

Flags = CapabilityFlags
_SQL_STATE_MARKER = b"#"
_SQL_STATE_BYTES = 5
# ERR_Packet without the marker (sent before the client's capabilities are known).
DEFAULT_SQL_STATE = "HY000"
# EOF_Packet: "less than 9 bytes" tells an EOF from a row/OK starting with 0xFE.
_EOF_MAX_PAYLOAD_BYTES = 9


@dataclass(frozen=True)
class OkPacket:
    """OK_Packet (header 0x00, or 0xFE when it replaces an EOF under CLIENT_DEPRECATE_EOF)."""

    affected_rows: int = 0
    last_insert_id: int = 0
    status_flags: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT
    warnings: int = 0
    info: bytes = b""
    session_state_info: bytes = b""
    header: int = PacketHeader.OK

    def encode(self, capabilities: CapabilityFlags) -> bytes:
        out = [bytes((self.header,)), int_lenenc(self.affected_rows)]
        out.append(int_lenenc(self.last_insert_id))
        if capabilities & Flags.CLIENT_PROTOCOL_41:
            out.append(int_fixed(int(self.status_flags), 2) + int_fixed(self.warnings, 2))
        elif capabilities & Flags.CLIENT_TRANSACTIONS:
            out.append(int_fixed(int(self.status_flags), 2))
        if capabilities & Flags.CLIENT_SESSION_TRACK:
            out.append(str_lenenc(self.info))
            if self.status_flags & ServerStatus.SERVER_SESSION_STATE_CHANGED:
                out.append(str_lenenc(self.session_state_info))
        else:
            out.append(self.info)
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes, capabilities: CapabilityFlags) -> OkPacket:
        reader = Reader(payload)
        header = reader.int_fixed(1)
        if header not in (PacketHeader.OK, PacketHeader.EOF):
            raise ProtocolError(f"OK_Packet cannot start with 0x{header:02x}")
        affected_rows = reader.int_lenenc()
        last_insert_id = reader.int_lenenc()
        status_flags = 0
        warnings = 0
        if capabilities & Flags.CLIENT_PROTOCOL_41:
            status_flags = reader.int_fixed(2)
            warnings = reader.int_fixed(2)
        elif capabilities & Flags.CLIENT_TRANSACTIONS:
            status_flags = reader.int_fixed(2)
        info = b""
        session_state_info = b""
        if capabilities & Flags.CLIENT_SESSION_TRACK:
            # Servers leave the info string out entirely when it is empty.
            if not reader.is_at_end():
                info = reader.bytes_lenenc()
            if status_flags & ServerStatus.SERVER_SESSION_STATE_CHANGED and not reader.is_at_end():
                session_state_info = reader.bytes_lenenc()
        else:
            info = reader.bytes_eof()
        return cls(
            affected_rows=affected_rows,
            last_insert_id=last_insert_id,
            status_flags=ServerStatus(status_flags),
            warnings=warnings,
            info=info,
            session_state_info=session_state_info,
            header=header,
        )


@dataclass(frozen=True)
class ErrPacket:
    """ERR_Packet: 0xFF, error code, '#' + 5-character SQL state (protocol 4.1), message."""

    error_code: int
    sql_state: str
    error_message: str

    def encode(self, capabilities: CapabilityFlags = Flags.CLIENT_PROTOCOL_41) -> bytes:
        out = bytes((PacketHeader.ERR,)) + int_fixed(self.error_code, 2)
        if capabilities & Flags.CLIENT_PROTOCOL_41:
            state = self.sql_state.encode("ascii")
            if len(state) != _SQL_STATE_BYTES:
                raise ValueError(f"SQL state must be 5 ASCII characters, got {self.sql_state!r}")
            out += _SQL_STATE_MARKER + state
        return out + self.error_message.encode("utf-8")

    @classmethod
    def decode(
        cls, payload: bytes, capabilities: CapabilityFlags = Flags.CLIENT_PROTOCOL_41
    ) -> ErrPacket:
        reader = Reader(payload)
        if reader.int_fixed(1) != PacketHeader.ERR:
            raise ProtocolError("ERR_Packet must start with 0xFF")
        code = reader.int_fixed(2)
        sql_state = DEFAULT_SQL_STATE
        # The marker is optional in practice: servers omit it for errors sent before the
        # handshake (e.g. 1040 Too many connections), so look for it rather than trust caps.
        rest = reader.bytes_eof()
        if rest.startswith(_SQL_STATE_MARKER) and len(rest) > _SQL_STATE_BYTES:
            sql_state = rest[1 : 1 + _SQL_STATE_BYTES].decode("ascii", errors="replace")
            rest = rest[1 + _SQL_STATE_BYTES :]
        return cls(code, sql_state, rest.decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class EofPacket:
    """EOF_Packet: 0xFE, then warnings and status flags under protocol 4.1."""

    warnings: int = 0
    status_flags: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT

    def encode(self, capabilities: CapabilityFlags = Flags.CLIENT_PROTOCOL_41) -> bytes:
        out = bytes((PacketHeader.EOF,))
        if capabilities & Flags.CLIENT_PROTOCOL_41:
            out += int_fixed(self.warnings, 2) + int_fixed(int(self.status_flags), 2)
        return out

    @classmethod
    def decode(
        cls, payload: bytes, capabilities: CapabilityFlags = Flags.CLIENT_PROTOCOL_41
    ) -> EofPacket:
        if len(payload) >= _EOF_MAX_PAYLOAD_BYTES:
            raise ProtocolError("EOF_Packet must be shorter than 9 bytes")
        reader = Reader(payload)
        if reader.int_fixed(1) != PacketHeader.EOF:
            raise ProtocolError("EOF_Packet must start with 0xFE")
        if not capabilities & Flags.CLIENT_PROTOCOL_41:
            return cls(0, ServerStatus(0))
        warnings = reader.int_fixed(2)
        return cls(warnings, ServerStatus(reader.int_fixed(2)))
