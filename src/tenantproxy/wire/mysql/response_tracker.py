"""Finds where each command's response ends in the server's byte stream, without decoding rows.

The relay forwards the server's bytes as they come; this tracker only walks packet headers by
offset and looks at the first few payload bytes of each packet (at most ``_HEAD_BYTES``). Rows are
never copied. Sequence ids are not checked here (the relay forwards them unchanged).

Responses, per the MySQL "Command Phase" pages (Text Protocol, Prepared Statements, Utility
Commands) and MariaDB's "Result Set Packets":

    command                      response
    COM_QUERY, COM_STMT_EXECUTE  OK | ERR | LOCAL INFILE request | result set; an OK or a result
    COM_STMT_BULK_EXECUTE        set's terminator with SERVER_MORE_RESULTS_EXISTS starts another
    (and unknown commands)       (bulk execute: a result set with RETURNING)
    result set                   column count, N column definitions, [EOF], rows, terminator
    column count                 with MARIADB_CLIENT_CACHE_METADATA, a byte follows: 0 means the
                                 column definitions are skipped (the client has them cached)
    progress report              with MARIADB_CLIENT_PROGRESS, ERR packets with error code 0xFFFF
                                 may come before the answer: they never end the response
    terminator                   EOF (0xFE, short) or, with CLIENT_DEPRECATE_EOF, an OK packet with
                                 header 0xFE; ERR may replace it (and ends the response)
    LOCAL INFILE (0xFB)          the client sends the file, then an empty packet; then OK | ERR
    COM_STMT_EXECUTE + cursor    column count, column definitions, EOF/OK with
                                 SERVER_STATUS_CURSOR_EXISTS (no rows), or a plain result
    COM_STMT_FETCH               binary rows, terminator | ERR
    COM_STMT_PREPARE             ERR | COM_STMT_PREPARE_OK, params [EOF], columns [EOF]
    COM_FIELD_LIST               column definitions, terminator | ERR
    COM_STATISTICS               one string packet
    everything else that answers exactly one OK | EOF | ERR packet. COM_CHANGE_USER is counted as
                                 one packet too: the proxy intercepts it and never relays its auth
                                 switch round trips through a tracker.
    COM_QUIT, COM_STMT_CLOSE,    no response
    COM_STMT_SEND_LONG_DATA
    COM_BINLOG_DUMP(_GTID)       not supported (a replication stream never ends): ProtocolError

A 0xFFFFFF-long fragment is followed by a continuation fragment that is never read as a packet.
In the rows, 0xFE starts a terminator only when the fragment is shorter than 0xFFFFFF: as a row's
first byte it is an 8-byte length, so such a row is at least 16 MiB long (Text Resultset Row).
CLIENT_OPTIONAL_RESULTSET_METADATA (MySQL 8 only; MariaDB never offers it) is not supported.

Each response's end is reported as a ``ResponseEnd`` (in ``ends``, for the last ``server_data``
call), what the relay's lease / give-back and session-state decisions need: the final status flags,
the error code, whether any OK/EOF of the response had SERVER_SESSION_STATE_CHANGED (a later
packet of the same response does not clear it), the OK payloads that carry session-state info
(copied whole: OK packets are small), PREPARE_OK's statement id and a non-zero last insert id.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tenantproxy.wire.mysql.codec import int3_at
from tenantproxy.wire.mysql.constants import (
    HEADER_BYTES,
    MAX_PACKET_PAYLOAD_BYTES,
    PROGRESS_REPORT_ERROR_CODE,
    CapabilityFlags,
    Command,
    CursorType,
    PacketHeader,
    ServerStatus,
)
from tenantproxy.wire.mysql.errors import ProtocolError

# An OK packet's status flags end at most 1 (header) + 9 + 9 (two lenenc ints) + 2 bytes in.
_HEAD_BYTES = 21

_OK = PacketHeader.OK.value
_EOF = PacketHeader.EOF.value
_ERR = PacketHeader.ERR.value
_LOCAL_INFILE = PacketHeader.LOCAL_INFILE.value
_MAX = MAX_PACKET_PAYLOAD_BYTES
_MORE_RESULTS = ServerStatus.SERVER_MORE_RESULTS_EXISTS.value
_CURSOR_EXISTS = ServerStatus.SERVER_STATUS_CURSOR_EXISTS.value
_SESSION_STATE_CHANGED = ServerStatus.SERVER_SESSION_STATE_CHANGED.value
_CURSOR_FLAGS = (
    CursorType.CURSOR_TYPE_READ_ONLY
    | CursorType.CURSOR_TYPE_FOR_UPDATE
    | CursorType.CURSOR_TYPE_SCROLLABLE
).value

# Where the tracker is inside the current response.
_NONE = 0  # no response expected
_FIRST = 1  # first packet of a result: OK | ERR | LOCAL INFILE | column count
_COLUMN_DEFS = 2  # counting column definitions (_remaining left)
_METADATA_EOF = 3  # the EOF after the column definitions (no CLIENT_DEPRECATE_EOF)
_ROWS = 4  # rows until a terminator or ERR
_PREPARE_FIRST = 5  # COM_STMT_PREPARE_OK | ERR
_PREPARE_DEFS = 6  # counting parameter/column definitions and their EOFs (_remaining left)
_SINGLE = 7  # one OK | EOF | ERR (or other) packet
_OPAQUE = 8  # one packet, never interpreted (COM_STATISTICS)
_INFILE_WAIT = 9  # the client is sending a LOCAL INFILE file
_INFILE_RESULT = 10  # OK | ERR after the file

_MULTI_PACKET_FIRST_STATE = {
    Command.COM_QUERY: _FIRST,
    Command.COM_STMT_EXECUTE: _FIRST,
    Command.COM_STMT_BULK_EXECUTE: _FIRST,
    Command.COM_PROCESS_INFO: _FIRST,
    Command.COM_STMT_PREPARE: _PREPARE_FIRST,
    Command.COM_STMT_FETCH: _ROWS,
    Command.COM_FIELD_LIST: _ROWS,
    Command.COM_STATISTICS: _OPAQUE,
}
# Known commands not listed above answer with one packet; unknown ones are read as COM_QUERY.
_FIRST_STATE_OF = {
    command.value: _MULTI_PACKET_FIRST_STATE.get(command, _SINGLE) for command in Command
}
_NO_RESPONSE_COMMANDS = frozenset(
    (Command.COM_QUIT, Command.COM_STMT_CLOSE, Command.COM_STMT_SEND_LONG_DATA)
)
_UNSUPPORTED_COMMANDS = frozenset((Command.COM_BINLOG_DUMP, Command.COM_BINLOG_DUMP_GTID))

# Bytes taken by a Protocol::LengthEncodedInteger, by its first byte (0xFB and 0xFF are invalid).
_LENENC_SIZE = bytes([1] * 0xFB + [0, 3, 4, 9, 0])


@dataclass(frozen=True, slots=True)
class ResponseEnd:
    """How one command's response ended."""

    status_flags: int
    error_code: int | None = None  # the ERR that ended it, None when it succeeded
    is_state_changed: bool = False  # some OK/EOF of it had SERVER_SESSION_STATE_CHANGED
    state_change_oks: tuple[bytes, ...] = ()  # those OK payloads, whole (session_track.py)
    statement_id: int | None = None  # from COM_STMT_PREPARE_OK
    last_insert_id: int = 0  # the last non-zero one of the response's OK packets
    is_hidden: bool = False  # set by ResponseEditor: the proxy's own command, never shown


@dataclass(frozen=True, slots=True)
class OkMark:
    """Where a state-changed OK packet is in the server's stream (for ResponseEditor)."""

    start: int  # stream offset of its header
    length: int  # its payload length
    sequence_id: int
    payload: bytearray  # filled as its bytes arrive; complete when len(payload) == length


def _lenenc_at(buf: bytes | bytearray, pos: int, head_end: int) -> int:
    """A Protocol::LengthEncodedInteger whose bytes are all in buf[:head_end]."""
    first = buf[pos]
    size = _LENENC_SIZE[first]
    if size == 1:
        return first
    if not size or pos + size > head_end:
        raise ProtocolError("invalid length-encoded integer in an OK packet")
    return int.from_bytes(buf[pos + 1 : pos + size], "little")


def _status_at(buf: bytes | bytearray, pos: int, head_end: int) -> int:
    if pos + 2 > head_end:
        raise ProtocolError("OK/EOF packet too short for its status flags")
    return buf[pos] | (buf[pos + 1] << 8)


class ResponseTracker:
    """Finds where each command's response ends in the server's byte stream."""

    def __init__(self, capabilities: CapabilityFlags) -> None:
        self._is_deprecate_eof = bool(capabilities & CapabilityFlags.CLIENT_DEPRECATE_EOF)
        self._has_metadata_flag = bool(capabilities & CapabilityFlags.MARIADB_CLIENT_CACHE_METADATA)
        self._has_progress_reports = bool(capabilities & CapabilityFlags.MARIADB_CLIENT_PROGRESS)
        self._queue: deque[tuple[int, bool]] = deque()  # (first state, is cursor execute)
        self._state = _NONE
        self._is_cursor = False
        self._remaining = 0  # packets left to count in _COLUMN_DEFS / _PREPARE_DEFS
        self._skip = 0  # payload bytes of the current fragment not yet received
        self._partial = bytearray()  # an incomplete header + head of the next fragment
        self._has_more_fragments = False  # the current fragment is 0xFFFFFF long
        self._is_end_pending = False  # the current packet ends the response
        self._infile_continues = False  # the client's last file packet was 0xFFFFFF long
        self._ended = 0
        self._status = int(ServerStatus.SERVER_STATUS_AUTOCOMMIT)
        self.has_session_state_changed = False
        self.last_error_code: int | None = None
        self.ends: list[ResponseEnd] = []  # the responses that ended in the last server_data
        # The current response so far (see ResponseEnd).
        self._is_state_changed = False
        self._state_change_oks: list[bytearray] = []
        self._capture: bytearray | None = None  # the OK payload being copied, if any
        self._statement_id: int | None = None
        self._last_insert_id = 0
        # Stream offsets for ResponseEditor (response_editor.py); None unless it asks for them.
        self._base = 0  # stream offset of the current server_data chunk
        self._is_reading_partial = False  # _on_fragment reads _partial, not the chunk
        self._partial_start = 0  # stream offset of _partial's first byte
        self.end_offsets: list[int] | None = None  # where each response in ``ends`` ended
        self.ok_marks: list[OkMark] | None = None  # each state-changed OK, as it starts

    @property
    def status_flags(self) -> ServerStatus:
        """From the last OK/EOF terminator seen (initially SERVER_STATUS_AUTOCOMMIT)."""
        return ServerStatus(self._status)

    @property
    def partial_head(self) -> bytearray:
        """The stream's last bytes when they are a packet head not yet complete (else empty)."""
        return self._partial

    @property
    def is_idle(self) -> bool:
        return not self._queue and not self._partial and not self._skip

    @property
    def is_awaiting_local_infile(self) -> bool:
        return self._state == _INFILE_WAIT

    @property
    def pending_responses(self) -> int:
        return len(self._queue)

    def command_sent(self, payload_head: bytes) -> bool:
        """Queue the response to a command; False when the server does not answer it."""
        if not payload_head:
            first_state = _FIRST  # the server answers an empty command with ERR
            is_cursor = False
        else:
            command = payload_head[0]
            if command in _NO_RESPONSE_COMMANDS:
                return False
            if command in _UNSUPPORTED_COMMANDS:
                raise ProtocolError(f"command 0x{command:02x} (replication) cannot be relayed")
            first_state = _FIRST_STATE_OF.get(command, _FIRST)
            # COM_STMT_EXECUTE: command(1), statement_id(4), flags(1) (COM_STMT_EXECUTE page).
            is_cursor = (
                command == Command.COM_STMT_EXECUTE
                and len(payload_head) > 5
                and bool(payload_head[5] & _CURSOR_FLAGS)
            )
        self._queue.append((first_state, is_cursor))
        if self._state == _NONE:
            self._state, self._is_cursor = first_state, is_cursor
        return True

    def local_infile_packet_sent(self, payload_length: int) -> None:
        """The client sent one packet of LOCAL INFILE data; an empty one ends the file."""
        if self._state != _INFILE_WAIT:
            raise ProtocolError("LOCAL INFILE data while the server did not ask for a file")
        # An empty fragment after a 0xFFFFFF one only ends that packet, not the file.
        if payload_length == 0 and not self._infile_continues:
            self._state = _INFILE_RESULT
        self._infile_continues = payload_length == _MAX

    def server_data(self, data: bytes) -> int:
        """Bytes the server sent; returns how many responses ended in them."""
        self._ended = 0
        if self.ends:
            self.ends = []
        end = len(data)
        pos = 0
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                if self._capture is not None:
                    self._capture += data[pos : pos + take]
                self._skip -= take
                pos += take
                if not self._skip and self._is_end_pending and not self._has_more_fragments:
                    self._end_response(self._base + pos)
                continue
            if self._partial:
                pos = self._fill_partial(data, pos)
                continue
            if end - pos < HEADER_BYTES:
                self._check_response_expected()
                self._partial_start = self._base + pos
                self._partial += data[pos:]
                break
            length = int3_at(data, pos)
            stop = pos + HEADER_BYTES + length
            head_end = stop if length <= _HEAD_BYTES else pos + HEADER_BYTES + _HEAD_BYTES
            if head_end > end:
                self._check_response_expected()
                self._partial_start = self._base + pos
                self._partial += data[pos:]
                break
            self._on_fragment(data, pos + HEADER_BYTES, head_end, length)
            if self._capture is not None:
                self._capture += data[head_end : min(stop, end)]
            if stop <= end:
                pos = stop
                if self._is_end_pending and not self._has_more_fragments:
                    self._end_response(self._base + pos)
            else:
                self._skip = stop - end
                pos = end
        self._base += end
        return self._ended

    def _fill_partial(self, data: bytes, pos: int) -> int:
        """Completes a header + head split across chunks; returns the new position in data."""
        partial = self._partial
        if len(partial) < HEADER_BYTES:
            take = HEADER_BYTES - len(partial)
            partial += data[pos : pos + take]
            pos += take
            if len(partial) < HEADER_BYTES:
                return pos
        length = int3_at(partial)
        wanted = HEADER_BYTES + min(length, _HEAD_BYTES)
        take = wanted - len(partial)
        partial += data[pos : pos + take]
        pos += take
        if len(partial) < wanted:
            return pos
        self._partial = bytearray()
        self._is_reading_partial = True
        self._on_fragment(partial, HEADER_BYTES, wanted, length)
        self._is_reading_partial = False
        self._skip = length - (wanted - HEADER_BYTES)
        if not self._skip and self._is_end_pending and not self._has_more_fragments:
            self._end_response(self._base + pos)
        return pos

    def _check_response_expected(self) -> None:
        if self._state in (_NONE, _INFILE_WAIT):
            raise ProtocolError("server sent data while no response was expected")

    def _end_response(self, stream_offset: int) -> None:
        self._is_end_pending = False
        if self.end_offsets is not None:
            self.end_offsets.append(stream_offset)
        self._ended += 1
        self.ends.append(
            ResponseEnd(
                self._status,
                self.last_error_code,
                self._is_state_changed,
                tuple(bytes(ok) for ok in self._state_change_oks),
                self._statement_id,
                self._last_insert_id,
            )
        )
        self._is_state_changed = False
        self._state_change_oks = []
        self._capture = None
        self._statement_id = None
        self._last_insert_id = 0
        self._queue.popleft()
        if self._queue:
            self._state, self._is_cursor = self._queue[0]
        else:
            self._state = _NONE

    def _on_fragment(self, buf: bytes | bytearray, off: int, head_end: int, length: int) -> None:
        """Looks at one fragment's head: buf[off:head_end] (at most _HEAD_BYTES of payload)."""
        self._capture = None  # the previous packet, if copied, is complete
        if self._has_more_fragments:  # a continuation: never a packet of its own
            self._has_more_fragments = length == _MAX
            return
        self._has_more_fragments = length == _MAX
        state = self._state
        first = buf[off] if length else -1
        if state == _ROWS:
            if first == _EOF and length < _MAX:
                self._terminator(buf, off, head_end)
            elif first == _ERR:
                self._error(buf, off, head_end)
        elif state == _COLUMN_DEFS:
            self._remaining -= 1
            if not self._remaining:
                self._state = _ROWS if self._is_deprecate_eof else _METADATA_EOF
        elif state in (_FIRST, _INFILE_RESULT):
            self._first(buf, off, head_end, first, state)
        elif state == _METADATA_EOF:
            if first != _EOF:
                raise ProtocolError(f"expected EOF after column definitions, got 0x{first:02x}")
            status = _status_at(buf, off + 3, head_end)
            if self._is_cursor and status & _CURSOR_EXISTS:
                self._ok_or_eof_ends(status, is_ok=False)
            else:
                self._state = _ROWS
        elif state == _PREPARE_DEFS:
            self._remaining -= 1
            self._is_end_pending = not self._remaining
        elif state == _PREPARE_FIRST:
            self._prepare_first(buf, off, head_end, first)
        elif state in (_NONE, _INFILE_WAIT):
            raise ProtocolError("server sent data while no response was expected")
        elif state == _SINGLE:
            if first == _OK:
                self._ok(buf, off, head_end)
            elif first == _EOF and length < _MAX:
                self._terminator(buf, off, head_end)
            elif first == _ERR:
                self._error(buf, off, head_end)
            else:
                self._is_end_pending = True
        else:  # _OPAQUE
            self._is_end_pending = True

    def _first(
        self, buf: bytes | bytearray, off: int, head_end: int, first: int, state: int
    ) -> None:
        if first == _OK:
            self._ok(buf, off, head_end)
        elif first == _ERR:
            self._error(buf, off, head_end)
        elif state == _INFILE_RESULT:
            raise ProtocolError(f"expected OK or ERR after LOCAL INFILE data, got 0x{first:02x}")
        elif first == _LOCAL_INFILE:
            self._state = _INFILE_WAIT
            self._infile_continues = False
        elif 0 < first < 0xFB:  # the column count, a Protocol::LengthEncodedInteger
            self._column_count(buf, off + 1, head_end, first)
        elif first in (0xFC, 0xFD) and off + _LENENC_SIZE[first] <= head_end:
            count = int.from_bytes(buf[off + 1 : off + _LENENC_SIZE[first]], "little")
            self._column_count(buf, off + _LENENC_SIZE[first], head_end, count)
        else:
            raise ProtocolError(f"invalid first packet of a result: 0x{max(first, 0):02x}")

    def _column_count(self, buf: bytes | bytearray, pos: int, head_end: int, count: int) -> None:
        """After the count: MariaDB's "metadata follows" byte (Result Set Packets, Column
        Count Packet) when MARIADB_CLIENT_CACHE_METADATA was negotiated."""
        self._remaining = count
        self._state = _COLUMN_DEFS
        if self._has_metadata_flag:
            if pos >= head_end:
                raise ProtocolError("column count packet without its metadata-follows byte")
            if not buf[pos]:
                self._remaining = 0
                self._state = _ROWS if self._is_deprecate_eof else _METADATA_EOF

    def _prepare_first(self, buf: bytes | bytearray, off: int, head_end: int, first: int) -> None:
        if first == _ERR:
            self._error(buf, off, head_end)
            return
        # COM_STMT_PREPARE_OK: 0x00, statement_id(4), num_columns(2), num_params(2), ...
        if first != _OK or head_end - off < 9:
            raise ProtocolError("invalid COM_STMT_PREPARE response")
        num_columns = buf[off + 5] | (buf[off + 6] << 8)
        num_params = buf[off + 7] | (buf[off + 8] << 8)
        eofs = 0 if self._is_deprecate_eof else (num_columns > 0) + (num_params > 0)
        self._remaining = num_columns + num_params + eofs
        self._state = _PREPARE_DEFS
        self._is_end_pending = not self._remaining
        self._statement_id = int.from_bytes(buf[off + 1 : off + 5], "little")
        self.last_error_code = None

    def _terminator(self, buf: bytes | bytearray, off: int, head_end: int) -> None:
        """0xFE: an EOF packet, or an OK packet when CLIENT_DEPRECATE_EOF was negotiated."""
        if self._is_deprecate_eof:
            self._ok(buf, off, head_end)
        else:
            self._ok_or_eof_ends(_status_at(buf, off + 3, head_end), is_ok=False)

    def _ok(self, buf: bytes | bytearray, off: int, head_end: int) -> None:
        # OK_Packet: header, affected_rows (lenenc), last_insert_id (lenenc), status_flags(2).
        pos = off + 1
        if pos < head_end:
            pos += _LENENC_SIZE[buf[pos]]
            if pos < head_end:
                last_insert_id = _lenenc_at(buf, pos, head_end)
                if last_insert_id:
                    self._last_insert_id = last_insert_id
                pos += _LENENC_SIZE[buf[pos]]
        status = _status_at(buf, pos, head_end)
        if status & _SESSION_STATE_CHANGED and not self._has_more_fragments:
            # Copy the whole OK: session_track.py decodes its session-state info.
            self._capture = bytearray(buf[off:head_end])
            self._state_change_oks.append(self._capture)
            if self.ok_marks is not None:
                base = self._partial_start if self._is_reading_partial else self._base
                start = base + off - HEADER_BYTES
                mark = OkMark(start, int3_at(buf, off - HEADER_BYTES), buf[off - 1], self._capture)
                self.ok_marks.append(mark)
        self._ok_or_eof_ends(status, is_ok=True)

    def _ok_or_eof_ends(self, status: int, is_ok: bool) -> None:
        self._status = status
        if status & _SESSION_STATE_CHANGED:
            self._is_state_changed = True
        if is_ok:
            self.has_session_state_changed = bool(status & _SESSION_STATE_CHANGED)
        self.last_error_code = None
        if status & _MORE_RESULTS:
            self._state = _FIRST
        else:
            self._is_end_pending = True

    def _error(self, buf: bytes | bytearray, off: int, head_end: int) -> None:
        if off + 3 > head_end:
            raise ProtocolError("ERR packet too short for its error code")
        code = buf[off + 1] | (buf[off + 2] << 8)
        if code == PROGRESS_REPORT_ERROR_CODE and self._has_progress_reports:
            return  # a progress report (MARIADB_CLIENT_PROGRESS): the answer is still to come
        self.last_error_code = code
        self._is_end_pending = True


# The compiled twin (the same source built by Cython) takes these names' place when it is chosen
# (see _compiled.py); the guard keeps the twin's own copy of these lines from importing itself.
COMPILED = False
if __name__ == "tenantproxy.wire.mysql.response_tracker":
    from tenantproxy.wire.mysql import _compiled

    _compiled.adopt(globals(), "response_tracker", ("ResponseEnd", "OkMark", "ResponseTracker"))
