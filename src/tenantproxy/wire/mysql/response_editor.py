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
0xFFFFFF bytes or more is never rewritten (the tracker does not capture it). Sans-IO.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from tenantproxy.wire.mysql.constants import HEADER_BYTES, CapabilityFlags, PacketHeader
from tenantproxy.wire.mysql.response_tracker import OkMark, ResponseEnd, ResponseTracker
from tenantproxy.wire.mysql.session_track import without_session_track

# A split head whose first payload byte is one of these may be an OK packet.
_MAY_START_OK = frozenset((PacketHeader.OK.value, PacketHeader.EOF.value))


class ResponseEditor:
    """Feeds a ResponseTracker and returns what of the server's bytes the client must see."""

    def __init__(self, capabilities: CapabilityFlags, *, is_client_tracking: bool) -> None:
        """capabilities: negotiated with the backend; is_client_tracking: the client asked
        for CLIENT_SESSION_TRACK (then no OK is rewritten)."""
        self.tracker = ResponseTracker(capabilities)
        self.tracker.end_offsets = []
        self._is_rewriting = not is_client_tracking
        self.tracker.ok_marks = [] if self._is_rewriting else None
        self._queued_hidden: deque[bool] = deque()  # per queued response: hidden?
        self._hidden_in_flight = 0  # hidden responses not yet passed in full
        self._pending_ends: deque[tuple[int, bool]] = deque()  # (stream offset, hidden?)
        self._held = bytearray()  # server bytes not yet written nor dropped
        self._held_start = 0  # stream offset of _held[0]
        self.ends: list[ResponseEnd] = []  # the responses that ended in the last server_data

    def set_client_tracking(self, is_client_tracking: bool) -> None:
        """For the next client of this backend (a multiplexed backend serves many), between
        responses only."""
        if not self.tracker.is_idle or self._held:
            raise ValueError("a response is on its way: the client cannot change")
        self._is_rewriting = not is_client_tracking
        self.tracker.ok_marks = [] if self._is_rewriting else None

    def command_sent(self, payload_head: bytes, *, hidden: bool = False) -> bool:
        """Queue the response to a command; hidden: the proxy's own, never shown to the client.
        False when the server does not answer it."""
        if not self.tracker.command_sent(payload_head):
            return False
        self._queued_hidden.append(hidden)
        self._hidden_in_flight += hidden
        return True

    def server_data(self, chunk: bytes) -> bytes:
        """Bytes the server sent; returns the bytes to write to the client (maybe empty)."""
        tracker = self.tracker
        tracker.server_data(chunk)
        if not (
            self._held
            or self._hidden_in_flight
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
        return self._edit()

    def _collect_ends(self) -> None:
        tracker = self.tracker
        offsets = tracker.end_offsets
        if not tracker.ends:
            self.ends = tracker.ends
            return
        assert offsets is not None
        ends = []
        for end, offset in zip(tracker.ends, offsets, strict=True):
            hidden = self._queued_hidden.popleft()
            self._pending_ends.append((offset, hidden))
            ends.append(dataclasses.replace(end, is_hidden=True) if hidden else end)
        offsets.clear()
        self.ends = ends

    def _may_hold_tail(self) -> bool:
        head = self.tracker.partial_head
        return bool(head) and (len(head) <= HEADER_BYTES or head[HEADER_BYTES] in _MAY_START_OK)

    def _edit(self) -> bytes:
        """Walks the held bytes response by response; keeps what may still change."""
        held, base = self._held, self._held_start
        stream_end = base + len(held)
        marks = self.tracker.ok_marks if self._is_rewriting else None
        out = bytearray()
        pos = base
        while pos < stream_end:
            is_open = not self._pending_ends
            if is_open:  # the response still being received
                segment_end = stream_end
                hidden = bool(self._queued_hidden) and self._queued_hidden[0]
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
