"""Bytes between a client and the backend attached to its session, without decoding rows.

From the client the relay reads packet headers and command bytes only: it forwards commands and
hands the few the proxy answers itself (COM_QUIT, COM_CHANGE_USER, a KILL of a proxy session id)
to the session, and has the session refuse the replication stream commands (REFUSED_BY_THE_PROXY).
From the backend it forwards every byte at once and lets the response tracker find where each
response ends, reading only the first bytes of each packet.

A relay outlives its backends: ``attach`` and ``detach`` move it between them. In session mode it
is attached once, after the login. In transaction mode (multiplexer.py) a command that finds no
backend attached asks the multiplexer for one; when none can be had at once, the client's bytes
from that command on wait (``_waiting``, the client's reads paused) until one is attached.
The server's bytes then go through the backend's ResponseEditor, which hides the answers to the
proxy's own replayed commands and rewrites OKs for clients without session tracking.

In transaction mode the client's binary prepared statements are routed (statement_routing.py):
each COM_STMT_* goes to the attached backend under that backend's statement id, after a hidden
COM_STMT_PREPARE when the backend lacks the statement; a COM_STMT_CLOSE needs no backend; an id
the client was not given (or a fetch of a cursor that ended) is answered here with MariaDB's
error, at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.backends import BackendConnection, RelayHooks
from tenantproxy.proxy.client_channel import ClientChannel
from tenantproxy.proxy.kill import KillRequest, may_be_a_kill
from tenantproxy.proxy.mysql_errors import MysqlError
from tenantproxy.proxy.statement_routing import STATEMENT_COMMANDS
from tenantproxy.proxy.statements import UnknownStatement
from tenantproxy.wire.mysql.codec import int3_at
from tenantproxy.wire.mysql.constants import HEADER_BYTES, MAX_PACKET_PAYLOAD_BYTES, Command
from tenantproxy.wire.mysql.errors import PacketTooLarge, ProtocolError
from tenantproxy.wire.mysql.framing import PacketSplitter, WirePacket, encode_packet
from tenantproxy.wire.mysql.responses import ErrPacket

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenantproxy.proxy.statement_routing import SessionStatements
    from tenantproxy.wire.mysql.response_editor import ResponseEditor
    from tenantproxy.wire.mysql.response_tracker import ResponseEnd, ResponseTracker

# Commands the proxy answers itself instead of relaying them (besides KILL, see kill.py).
ANSWERED_BY_THE_PROXY = frozenset((Command.COM_QUIT, Command.COM_CHANGE_USER))
# A binlog stream carries every tenant's writes and never ends: never relayed. The session
# answers what MariaDB answers a user without REPLICATION SLAVE; the session goes on.
REFUSED_BY_THE_PROXY = frozenset((Command.COM_BINLOG_DUMP, Command.COM_BINLOG_DUMP_GTID))
_NOT_RELAYED = ANSWERED_BY_THE_PROXY | REFUSED_BY_THE_PROXY
_FIRST_FRAGMENT_BYTES = HEADER_BYTES + MAX_PACKET_PAYLOAD_BYTES
# Commands that may be sent again on another backend when theirs died before answering
# (multiplexer.outlive_backend): the ones whose whole effect is their answer or a state the
# replay carries. A binary statement's ids and long data are tied to its backend.
_RESENDABLE = frozenset(
    (
        Command.COM_QUERY,
        Command.COM_INIT_DB,
        Command.COM_PING,
        Command.COM_FIELD_LIST,
        Command.COM_STATISTICS,
    )
)
# Unanswered commands kept for a resend, at most this many bytes in all (a bigger one is not
# kept: the client gets ERROR 2013 for it, as without resends).
_RESENDABLE_BYTES = 64 * 1024


class SessionHooks(Protocol):
    """What the relay hands back to its session."""

    def quit(self) -> None: ...
    def change_user(self, payload: bytes, later: bytes) -> None: ...
    def kill(self, request: KillRequest, later: bytes) -> bool: ...
    def refuse(self, command: int) -> None: ...
    def fail(self, error: MysqlError) -> None: ...
    def backend_lost(self) -> None: ...


class Multiplexing(Protocol):
    """What a transaction-mode relay asks of its multiplexer (multiplexer.py)."""

    @property
    def statements(self) -> SessionStatements: ...
    def attach_now(self) -> bool: ...
    def command_sent(self, payload: bytes) -> None: ...
    def responses_ended(self, ends: list[ResponseEnd]) -> None: ...


class Relay:
    """Relays one session's bytes to and from the backend attached to it."""

    def __init__(
        self,
        client: ClientChannel,
        splitter: PacketSplitter,
        session: SessionHooks,
        log: logging.Logger,
        multiplexer: Multiplexing | None = None,
    ) -> None:
        self._client = client
        self._splitter = splitter
        self._session = session
        self._log = log
        self._multiplexer = multiplexer
        self._statements = multiplexer.statements if multiplexer is not None else None
        # Commands the one-plain-command fast path leaves to _relay_packets.
        self._not_fast = _NOT_RELAYED | STATEMENT_COMMANDS if multiplexer else _NOT_RELAYED
        # A statement command not sent on (answered here): its later fragments are dropped, and
        # then its error (if any) is written.
        self._is_dropping_fragments = False
        self._error_after_fragments: bytes | None = None
        self._backend: BackendConnection | None = None
        self._tracker: ResponseTracker | None = None
        self._editor: ResponseEditor | None = None
        # Client bytes, from a command on, that wait for a backend (transaction mode).
        self._waiting: bytes | None = None
        # The commands sent since the backend last had nothing on its way (whole packets), while
        # all of them may be sent again; None once one may not (transaction mode only).
        self._unanswered: list[bytes] | None = None
        # True once a byte of the current response went to the client (for ERROR 2013).
        self.has_answered = False
        # Told (with the target's name) when the responses on their way have all ended.
        self._idle_watch: Callable[[str], None] | None = None
        self._target_name = ""

    @property
    def backend(self) -> BackendConnection | None:
        return self._backend

    @property
    def is_idle(self) -> bool:
        """No response is on its way and no command waits for a backend."""
        return self._waiting is None and (self._tracker is None or self._tracker.is_idle)

    @property
    def is_waiting(self) -> bool:
        return self._waiting is not None

    # -- attach / detach ----------------------------------------------------------------------

    def attach(self, backend: BackendConnection, editor: ResponseEditor | None = None) -> None:
        """Relays to ``backend`` from now on; ``editor`` (a multiplexed backend's) edits what it
        sends, else it goes to the client as it is."""
        assert backend.tracker is not None and backend.transport is not None
        assert self._backend is None, "a relay serves one backend at a time"
        self._backend = backend
        self._target_name = backend.target.name
        self._editor = editor
        self._tracker = editor.tracker if editor is not None else backend.tracker
        self._unanswered = [] if editor is not None else None
        client = self._client
        received = self._from_edited_backend if editor else self._from_backend
        backend.relay_to(
            RelayHooks(
                received, self._session.backend_lost, client.pause_reading, client.resume_reading
            )
        )

    def detach(self) -> bool:
        """Stops relaying to the attached backend; True when it can serve another client."""
        backend, tracker = self._backend, self._tracker
        if backend is None or tracker is None:
            return False
        self._backend = self._tracker = self._editor = None
        self._unanswered = None
        backend.stop_relaying()
        transport = backend.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
        if self._waiting is None:
            self._client.resume_reading()
        return not backend.is_broken and tracker.is_idle

    def when_idle(self, watch: Callable[[str], None]) -> None:
        """Calls ``watch`` once, when the responses on their way have all ended (tracing)."""
        self._idle_watch = watch

    def _tell_idle_watch(self) -> None:
        watch = self._idle_watch
        if watch is not None and self._tracker is not None and self._tracker.is_idle:
            self._idle_watch = None
            watch(self._target_name)

    def take_unanswered(self) -> bool:
        """After the attached backend died: True when every command sent to it since it was
        last idle can be sent again and none of its answer reached the client. The relay is
        then detached, with those commands waiting (ahead of any later byte) for ``go_on``."""
        unanswered = self._unanswered
        if not unanswered or self.has_answered or self._is_dropping_fragments:
            return False
        self.detach()
        self._waiting = b"".join(unanswered) + self._splitter.take_buffered()
        self._client.pause_reading()
        return True

    def go_on(self) -> None:
        """A backend was attached for the bytes that waited: they go on to it."""
        waiting, self._waiting = self._waiting, None
        if waiting:
            self.from_client(waiting)  # before any later byte: they keep the client's order
        if self._waiting is None:
            self._client.resume_reading()

    def pause_backend(self) -> None:
        # The client reads slower than its backend sends.
        if self._backend is not None and self._backend.transport is not None:
            self._backend.transport.pause_reading()

    def resume_backend(self) -> None:
        if self._backend is not None and self._backend.transport is not None:
            self._backend.transport.resume_reading()

    def forward_command(self, payload: bytes) -> None:
        """Sends a command the proxy wrote in place of the client's last one; its answer goes
        to the client as the answer to that one (same sequence ids, same place in order). The
        session keeps a backend attached while it answers a command itself."""
        assert self._backend is not None and self._backend.transport is not None
        self._command_sent(payload)
        self._backend.transport.write(encode_packet(payload, 0)[0])

    def send_hidden(self, payloads: list[bytes]) -> None:
        """The proxy's own commands (a replay of session state), ahead of the client's next
        one; their answers never reach the client."""
        editor, backend = self._editor, self._backend
        assert editor is not None and backend is not None and backend.transport is not None
        packets = []
        for payload in payloads:
            editor.command_sent(payload[:16], hidden=True)
            packets.append(encode_packet(payload, 0)[0])
        backend.transport.write(b"".join(packets))

    # -- client → backend ---------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self._waiting is not None:
            self._waiting += data
            return
        if self._is_one_plain_command(data):
            # The usual case: the chunk is exactly one small command the proxy does not answer.
            if self._backend is None and not self._attach_or_wait(data):
                return
            self._command_sent(data[4:], raw=data)
            self._write_to_backend([data])
            return
        try:
            packets = self._splitter.feed(data)
        except PacketTooLarge:
            self._session.fail(mysql_errors.PACKET_TOO_LARGE)
            return
        except ProtocolError:
            self._session.fail(mysql_errors.MALFORMED_PACKET)
            return
        self._relay_packets(packets)

    def _relay_packets(self, packets: list[WirePacket]) -> None:
        forward: list[bytes] = []
        for index, packet in enumerate(packets):
            if packet.is_continuation and self._is_dropping_fragments:
                self._drop_fragment(packet)
                continue
            if packet.is_continuation or packet.has_more_fragments:
                self._unanswered = None  # over 16 MiB: never kept for a resend
            if not packet.is_continuation:
                if self._tracker is not None and self._tracker.is_awaiting_local_infile:
                    self._tracker.local_infile_packet_sent(len(packet.payload))
                    forward.append(packet.raw)
                    continue
                if self._is_refused(packet):
                    # Answered at once, before any response still on its way from the
                    # backend: no client pipelines a binlog dump behind a query.
                    self._write_to_backend(forward)
                    forward = []
                    self._session.refuse(packet.payload[0])
                    continue
                kill = self._kill_in(packet)
                if kill is not None:
                    self._write_to_backend(forward)
                    forward = []
                    if self._backend is None and not self._attach_or_wait(_raw(packets[index:])):
                        return  # the KILL's answer comes from a backend, in order
                    if self._session.kill(kill, _raw(packets[index + 1 :])):
                        continue
                    return  # the session holds the later bytes until the KILL is done
                if not self._is_command(packet):
                    self._write_to_backend(forward)
                    self._answer_here(packet, packets[index + 1 :])
                    return
                if self._statements is not None and packet.payload[0] in STATEMENT_COMMANDS:
                    self._write_to_backend(forward)
                    forward = []
                    if not self._relay_statement(packets, index):
                        return
                    continue
                if self._backend is None:
                    self._write_to_backend(forward)
                    forward = []
                    if not self._attach_or_wait(_raw(packets[index:])):
                        return
                self._command_sent(packet.payload, raw=packet.raw)
            forward.append(packet.raw)
        self._write_to_backend(forward)

    # -- binary prepared statements (transaction mode) ---------------------------------------

    def _relay_statement(self, packets: list[WirePacket], index: int) -> bool:
        """Sends a client's COM_STMT_* on, routed; False when it waits for a backend."""
        packet = packets[index]
        payload = packet.payload
        statements = self._statements
        assert statements is not None
        if self._backend is None:
            if payload[0] == Command.COM_STMT_CLOSE:  # forgotten here: no backend needed
                statements.route(payload, None)
                self._is_dropping_fragments = packet.has_more_fragments
                return True
            if not self._attach_or_wait(_raw(packets[index:])):
                return False
        backend, editor = self._backend, self._editor
        assert backend is not None and editor is not None
        cache = statements.cache_of(backend)
        out = [encode_packet(close, 0)[0] for close in cache.due_closes]
        cache.due_closes = []
        if payload[0] == Command.COM_STMT_PREPARE:
            if packet.has_more_fragments:  # its text is the statement's key: 16 MiB at most
                self._write_to_backend(out)
                self._session.fail(mysql_errors.PACKET_TOO_LARGE)
                return False
            self._command_sent(payload, statement_id=statements.prepare_sent(payload, backend))
            out.append(packet.raw)
        else:
            try:
                routed = statements.route(payload, backend)
            except UnknownStatement as refused:
                self._write_to_backend(out)
                self._refuse_statement(packet, refused)
                return True
            if routed.prepare is not None:  # hidden, and answered first
                hidden = statements.hidden_prepare(routed, payload[0])
                editor.command_sent(routed.prepare[:16], hidden=hidden)
                out.append(encode_packet(routed.prepare, 0)[0])
            if routed.payload is None:
                self._is_dropping_fragments = packet.has_more_fragments
            elif len(routed.payload) != len(payload) and packet.has_more_fragments:
                # Types spliced into the first of several fragments would shift them all.
                self._write_to_backend(out)
                self._session.fail(mysql_errors.PACKET_TOO_LARGE)
                return False
            else:
                self._command_sent(payload)
                out.append(_framed(packet, routed.payload))
        self._write_to_backend(out)
        return True

    def _refuse_statement(self, packet: WirePacket, refused: UnknownStatement) -> None:
        """MariaDB's error for the command, written once its last fragment is in."""
        error = ErrPacket(refused.code, refused.sql_state, str(refused)).encode()
        self._error_after_fragments = error
        self._is_dropping_fragments = True
        self._drop_fragment(packet)

    def _drop_fragment(self, packet: WirePacket) -> None:
        if packet.has_more_fragments:
            return
        self._is_dropping_fragments = False
        error, self._error_after_fragments = self._error_after_fragments, None
        if error is not None:
            self._client.write(encode_packet(error, packet.sequence_id + 1)[0])

    def _attach_or_wait(self, data: bytes) -> bool:
        """A backend for the command at the start of ``data``: True when one is attached now;
        else the bytes wait (with any incomplete packet after them) until ``go_on``."""
        multiplexer = self._multiplexer
        if multiplexer is not None and multiplexer.attach_now():
            return True
        self._waiting = data + self._splitter.take_buffered()
        self._client.pause_reading()
        return False

    def _is_one_plain_command(self, data: bytes) -> bool:
        return (
            len(data) > 4
            and data[3] == 0  # sequence id 0: a new command
            and int3_at(data) + 4 == len(data)
            and len(data) < _FIRST_FRAGMENT_BYTES  # a 0xFFFFFF payload has fragments after it
            and data[4] not in self._not_fast
            and not may_be_a_kill(data[4:6])
            and self._splitter.buffered_bytes == 0
            and (self._tracker is None or not self._tracker.is_awaiting_local_infile)
        )

    @staticmethod
    def _is_refused(packet: WirePacket) -> bool:
        payload = packet.payload
        return packet.sequence_id == 0 and payload[:1] != b"" and payload[0] in REFUSED_BY_THE_PROXY

    @staticmethod
    def _kill_in(packet: WirePacket) -> KillRequest | None:
        payload = packet.payload
        if packet.sequence_id != 0 or not may_be_a_kill(payload[:2]):
            return None
        return KillRequest.parse(payload)

    @staticmethod
    def _is_command(packet: WirePacket) -> bool:
        """A well-formed command for the backend."""
        payload = packet.payload
        return bool(payload) and packet.sequence_id == 0 and payload[0] not in ANSWERED_BY_THE_PROXY

    def _command_sent(
        self, payload: bytes, statement_id: int | None = None, raw: bytes | None = None
    ) -> None:
        """Tells the tracker (and the multiplexer) of a command on its way to the backend;
        ``statement_id``: the id the client's PREPARE_OK shows; ``raw``: the whole packet, when
        it is one the relay may send again (``take_unanswered``)."""
        self._keep_unanswered(payload[0], raw)
        if self._editor is not None:
            self._editor.command_sent(payload[:16], statement_id=statement_id)
        else:
            assert self._tracker is not None
            self._tracker.command_sent(payload[:16])
        self.has_answered = False
        if self._multiplexer is not None:
            self._multiplexer.command_sent(payload)

    def _keep_unanswered(self, command: int, raw: bytes | None) -> None:
        unanswered = self._unanswered
        if unanswered is None:
            return
        if (
            raw is None
            or command not in _RESENDABLE
            or sum(map(len, unanswered)) + len(raw) > _RESENDABLE_BYTES
        ):
            self._unanswered = None
        else:
            unanswered.append(raw)

    def _answer_here(self, packet: WirePacket, later: list[WirePacket]) -> None:
        payload = packet.payload
        if not payload:
            self._session.fail(mysql_errors.MALFORMED_PACKET)
        elif packet.sequence_id != 0:
            self._session.fail(mysql_errors.PACKETS_OUT_OF_ORDER)
        elif payload[0] == Command.COM_QUIT:
            self._session.quit()
        else:  # COM_CHANGE_USER: bytes after it wait until the new login is done
            self._session.change_user(payload, _raw(later))

    def _write_to_backend(self, forward: list[bytes]) -> None:
        if forward:
            assert self._backend is not None and self._backend.transport is not None
            self._backend.transport.write(forward[0] if len(forward) == 1 else b"".join(forward))

    # -- backend → client ---------------------------------------------------------------------

    def _from_backend(self, data: bytes) -> None:
        self._client.write(data)
        try:
            assert self._tracker is not None
            self._tracker.server_data(data)
        except ProtocolError as exc:
            self._backend_broke(exc)
            return
        if self._idle_watch is not None:
            self._tell_idle_watch()

    def _from_edited_backend(self, data: bytes) -> None:
        editor = self._editor
        assert editor is not None and self._multiplexer is not None
        try:
            out = editor.server_data(data)
        except ProtocolError as exc:
            self._backend_broke(exc)
            return
        if out:
            self.has_answered = True
            self._client.write(out)
            # Answered: from here only commands sent after the backend was idle may go again.
            self._unanswered = [] if editor.tracker.is_idle else None
        if self._idle_watch is not None:
            self._tell_idle_watch()
        if editor.ends:
            self._multiplexer.responses_ended(editor.ends)

    def _backend_broke(self, exc: ProtocolError) -> None:
        self._log.warning("backend broke the protocol: %s", exc)
        assert self._backend is not None
        self._unanswered = None  # what it sent cannot be trusted: no resend
        self._backend.mark_broken()
        self._session.backend_lost()


def _raw(packets: list[WirePacket]) -> bytes:
    return b"".join(p.raw for p in packets)


def _framed(packet: WirePacket, payload: bytes) -> bytes:
    """``payload`` in place of the packet's (its first fragment's) own, same sequence id."""
    if len(payload) == len(packet.payload):
        return packet.raw[:HEADER_BYTES] + payload
    return encode_packet(payload, packet.sequence_id)[0]
