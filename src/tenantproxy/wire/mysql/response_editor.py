"""Edits the server's byte stream on its way to the client: hides responses, rewrites OKs.

Transaction multiplexing (issue 9) needs two edits of what a backend sends:

- the proxy's own "replay" commands (SET SESSION ..., COM_INIT_DB), pipelined before a client's
  command, are answered too: those responses are hidden, whole, from the client;
- backends always negotiate CLIENT_SESSION_TRACK, so for a client that did not, every OK packet
  with SERVER_SESSION_STATE_CHANGED (intermediate OKs of multi-results and CLIENT_DEPRECATE_EOF
  terminators included) is replaced by ``session_track.without_session_track`` of it: a new
  3-byte length, the same sequence id.

The editor wraps a ``ResponseTracker`` (which finds the packet boundaries) and asks it for stream
offsets of response ends and of state-changed OKs (``end_offsets``, ``ok_marks``). ``server_data``
returns the bytes to write to the client: the chunk itself (no copy) when nothing in it is hidden
or rewritten, else an edited copy. Bytes that might still need rewriting are held back: a
state-changed OK until it is complete, and, for a client without tracking, a packet head that
is split at the chunk's end and could start an OK (0x00 / 0xFE, or not known yet). A packet of
0xFFFFFF bytes or more is never rewritten (the tracker does not capture it).

Binary prepared statements in transaction mode (proxy/statements.py) need two more:

- a client's COM_STMT_PREPARE_OK carries the proxy's statement id, not the server's: the 4 bytes
  after its 0x00 header are replaced (``command_sent(..., statement_id=)``); the server's first
  9 payload bytes go to ``prepare_oks`` for the registry; the response's start is held back until
  those bytes are in;
- a COM_STMT_PREPARE the proxy pipelines ahead of a client's COM_STMT_EXECUTE (statement id -1)
  is hidden unless it fails (``Hidden(shows_error=True)``): then its ERR is shown, as the answer
  to the client's command, and the execute's own answer (ERROR 1243 for statement -1) is hidden,
  so the client gets one error, the prepare's.

Each hidden response's ``Hidden`` comes back with its end, in ``hidden_reasons``. Sans-IO.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

from tenantproxy.wire.mysql.constants import HEADER_BYTES, CapabilityFlags, PacketHeader
from tenantproxy.wire.mysql.response_tracker import OkMark, ResponseEnd, ResponseTracker
from tenantproxy.wire.mysql.session_track import without_session_track

# A split head whose first payload byte is one of these may be an OK packet.
_MAY_START_OK = frozenset((PacketHeader.OK.value, PacketHeader.EOF.value))
# COM_STMT_PREPARE_OK: 0x00, statement_id<4>, num_columns<2>, num_params<2> (the head kept).
_PREPARE_OK_HEAD = 9


@dataclass(frozen=True, slots=True)
class Hidden:
    """Why a response is hidden; handed back with its end in ``hidden_reasons``."""

    reason: object = None  # what the proxy sent the command for (None: a replay of state)
    shows_error: bool = False  # an ERR answer is shown instead of the next response


REPLAY = Hidden()
# The answer to a client's command after a pipelined PREPARE that failed (whose ERR was shown).
AFTER_FAILED_PREPARE = Hidden("after a failed prepare")


@dataclass(slots=True)
class _IdRewrite:
    """A PREPARE_OK whose statement id becomes ``new_id``: at stream offset ``start`` once
    ``responses_ahead`` more responses have ended."""

    new_id: int
    responses_ahead: int
    start: int | None


class ResponseEditor:
    """Feeds a ResponseTracker and returns what of the server's bytes the client must see."""

    def __init__(self, capabilities: CapabilityFlags, *, is_client_tracking: bool) -> None:
        """capabilities: negotiated with the backend; is_client_tracking: the client asked
        for CLIENT_SESSION_TRACK (then no OK is rewritten)."""
        self.tracker = ResponseTracker(capabilities)
        self.tracker.end_offsets = []
        self._is_rewriting = not is_client_tracking
        self.tracker.ok_marks = [] if self._is_rewriting else None
        self._queued_hidden: deque[Hidden | None] = deque()  # per queued response
        self._hidden_in_flight = 0  # hidden responses not yet passed in full
        self._pending_ends: deque[tuple[int, bool]] = deque()  # (stream offset, hidden?)
        self._held = bytearray()  # server bytes not yet written nor dropped
        self._held_start = 0  # stream offset of _held[0]
        self.ends: list[ResponseEnd] = []  # the responses that ended in the last server_data
        # The Hidden of each hidden end in ``ends``, in order (only read for hidden ends).
        self.hidden_reasons: list[Hidden] = []
        self._id_rewrites: deque[_IdRewrite] = deque()
        # The server's first bytes of each rewritten PREPARE_OK, oldest first (the caller pops).
        self.prepare_oks: deque[bytes] = deque()

    def set_client_tracking(self, is_client_tracking: bool) -> None:
        """For the next client of this backend (a multiplexed backend serves many), between
        responses only."""
        if not self.tracker.is_idle or self._held:
            raise ValueError("a response is on its way: the client cannot change")
        self._is_rewriting = not is_client_tracking
        self.tracker.ok_marks = [] if self._is_rewriting else None

    def command_sent(
        self, payload_head: bytes, *, hidden: bool | Hidden = False, statement_id: int | None = None
    ) -> bool:
        """Queue the response to a command; hidden: the proxy's own, never shown to the client
        (True: a replay); statement_id: the id the client's PREPARE_OK shows. False when the
        server does not answer it."""
        if not self.tracker.command_sent(payload_head):
            return False
        tag = REPLAY if hidden is True else hidden or None
        self._queued_hidden.append(tag)
        self._hidden_in_flight += tag is not None
        if statement_id is not None:
            ahead = self.tracker.pending_responses - 1
            start = self._held_start + len(self._held) if not ahead else None
            self._id_rewrites.append(_IdRewrite(statement_id, ahead, start))
        return True

    def server_data(self, chunk: bytes) -> bytes:
        """Bytes the server sent; returns the bytes to write to the client (maybe empty)."""
        tracker = self.tracker
        tracker.server_data(chunk)
        if not (
            self._held
            or self._hidden_in_flight
            or self._id_rewrites
            or (self._is_rewriting and (tracker.ok_marks or self._may_hold_tail()))
        ):  # nothing hidden, held or rewritten: the common case, kept cheap
            self.ends = ends = tracker.ends
            if ends:
                for _ in ends:
                    self._queued_hidden.popleft()
                tracker.end_offsets.clear()  # type: ignore[union-attr]
            self._held_start += len(chunk)
            return chunk
        self._collect_ends()
        self._held += chunk
        if self._id_rewrites:
            self._rewrite_statement_ids()
        return self._edit()

    def _collect_ends(self) -> None:
        tracker = self.tracker
        offsets = tracker.end_offsets
        if not tracker.ends:
            self.ends = tracker.ends
            return
        assert offsets is not None
        ends = []
        reasons = self.hidden_reasons = []
        for end, offset in zip(tracker.ends, offsets, strict=True):
            hidden = self._queued_hidden.popleft()
            if hidden is not None and hidden.shows_error and end.error_code is not None:
                hidden = None  # its ERR answers the client's command, whose answer goes
                self._hidden_in_flight -= 1
                if self._queued_hidden and self._queued_hidden[0] is None:
                    self._queued_hidden[0] = AFTER_FAILED_PREPARE
                    self._hidden_in_flight += 1
            self._pending_ends.append((offset, hidden is not None))
            if hidden is not None:
                reasons.append(hidden)
                end = dataclasses.replace(end, is_hidden=True)
            ends.append(end)
            self._response_ended_at(offset)
        offsets.clear()
        self.ends = ends

    def _response_ended_at(self, offset: int) -> None:
        for rewrite in self._id_rewrites:
            if rewrite.start is None:
                rewrite.responses_ahead -= 1
                if not rewrite.responses_ahead:
                    rewrite.start = offset

    def _rewrite_statement_ids(self) -> None:
        """Puts the proxy's id in each PREPARE_OK whose first bytes are all held (an ERR
        answer is left as it is)."""
        held, base = self._held, self._held_start
        rewrites = self._id_rewrites
        while rewrites and rewrites[0].start is not None:
            at = rewrites[0].start - base + HEADER_BYTES
            assert at >= HEADER_BYTES, "a PREPARE_OK to rewrite went to the client"
            if len(held) <= at or (held[at] == 0 and len(held) < at + _PREPARE_OK_HEAD):
                return  # not all in yet: held back (see _edit)
            if held[at] == 0:
                self.prepare_oks.append(bytes(held[at : at + _PREPARE_OK_HEAD]))
                held[at + 1 : at + 5] = rewrites[0].new_id.to_bytes(4, "little")
            rewrites.popleft()

    def _may_hold_tail(self) -> bool:
        head = self.tracker.partial_head
        return bool(head) and (len(head) <= HEADER_BYTES or head[HEADER_BYTES] in _MAY_START_OK)

    def _edit(self) -> bytes:
        """Walks the held bytes response by response; keeps what may still change."""
        held, base = self._held, self._held_start
        stream_end = base + len(held)
        rewrites = self._id_rewrites
        if rewrites and rewrites[0].start is not None:
            stream_end = rewrites[0].start  # a PREPARE_OK not yet rewritten: held back
        marks = self.tracker.ok_marks if self._is_rewriting else None
        out = bytearray()
        pos = base
        while pos < stream_end:
            is_open = not self._pending_ends
            if is_open:  # the response still being received
                segment_end = stream_end
                tag = self._queued_hidden[0] if self._queued_hidden else None
                if tag is not None and tag.shows_error:
                    break  # shown if it is an ERR: held until it ends
                hidden = tag is not None
            else:
                segment_end, hidden = self._pending_ends[0]
            if hidden:
                while marks and marks[0].start < segment_end:
                    del marks[0]
                pos = segment_end
            else:
                pos = self._copy_segment(out, pos, segment_end, marks)
                if pos < segment_end:
                    break  # an incomplete OK or head: held back
            if is_open:
                break
            self._pending_ends.popleft()
            self._hidden_in_flight -= hidden
        del held[: pos - base]
        self._held_start = pos
        return bytes(out)

    def _copy_segment(
        self, out: bytearray, pos: int, segment_end: int, marks: list[OkMark] | None
    ) -> int:
        """Copies held bytes [pos, segment_end) to out, rewriting state-changed OKs; returns
        where it stopped (before an OK, or a possible OK's head, not yet complete)."""
        held, base = self._held, self._held_start
        while marks and marks[0].start < segment_end:
            mark = marks[0]
            out += held[pos - base : mark.start - base]
            pos = mark.start
            if len(mark.payload) < mark.length:
                return pos
            payload = without_session_track(bytes(mark.payload))
            out += len(payload).to_bytes(3, "little") + bytes((mark.sequence_id,)) + payload
            pos = mark.start + HEADER_BYTES + mark.length
            del marks[0]
        stop = segment_end
        if self._is_rewriting and self._may_hold_tail():  # the split head is the stream's tail
            stop = max(pos, min(stop, base + len(held) - len(self.tracker.partial_head)))
        out += held[pos - base : stop - base]
        return stop
