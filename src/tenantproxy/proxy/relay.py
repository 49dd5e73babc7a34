"""Bytes between a client and its leased backend, without decoding rows.

From the client the relay reads packet headers and command bytes only: it forwards commands and
hands the few the proxy answers itself (COM_QUIT, COM_CHANGE_USER, a KILL of a proxy session id)
to the session, and has the session refuse the replication stream commands (REFUSED_BY_THE_PROXY).
From the backend it forwards every byte at once and lets the response tracker find where each
response ends, reading only the first bytes of each packet.
"""

from __future__ import annotations

import logging
from typing import Protocol

from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.backends import BackendConnection
from tenantproxy.proxy.client_channel import ClientChannel
from tenantproxy.proxy.kill import KillRequest, may_be_a_kill
from tenantproxy.proxy.mysql_errors import MysqlError
from tenantproxy.wire.mysql.codec import int3_at
from tenantproxy.wire.mysql.constants import Command
from tenantproxy.wire.mysql.errors import PacketTooLarge, ProtocolError
from tenantproxy.wire.mysql.framing import PacketSplitter, WirePacket, encode_packet

# Commands the proxy answers itself instead of relaying them (besides KILL, see kill.py).
ANSWERED_BY_THE_PROXY = frozenset((Command.COM_QUIT, Command.COM_CHANGE_USER))
# A binlog stream carries every tenant's writes and never ends: never relayed. The session
# answers what MariaDB answers a user without REPLICATION SLAVE; the session goes on.
REFUSED_BY_THE_PROXY = frozenset((Command.COM_BINLOG_DUMP, Command.COM_BINLOG_DUMP_GTID))
_NOT_RELAYED = ANSWERED_BY_THE_PROXY | REFUSED_BY_THE_PROXY


class SessionHooks(Protocol):
    """What the relay hands back to its session."""

    def quit(self) -> None: ...
    def change_user(self, payload: bytes, later: bytes) -> None: ...
    def kill(self, request: KillRequest, later: bytes) -> bool: ...
    def refuse(self, command: int) -> None: ...
    def fail(self, error: MysqlError) -> None: ...
    def backend_lost(self) -> None: ...


class Relay:
    """Relays one session's bytes while it holds ``backend``."""

    def __init__(
        self,
        client: ClientChannel,
        backend: BackendConnection,
        splitter: PacketSplitter,
        session: SessionHooks,
        log: logging.Logger,
    ) -> None:
        assert backend.tracker is not None and backend.transport is not None
        self._client = client
        self._backend = backend
        self._to_backend = backend.transport
        self._tracker = backend.tracker
        self._splitter = splitter
        self._session = session
        self._log = log
        backend.relay_sink = self.from_backend
        backend.on_lost = session.backend_lost
        backend.on_pause_writing = client.pause_reading
        backend.on_resume_writing = client.resume_reading

    @property
    def is_idle(self) -> bool:
        """No response is on its way: the backend may go back to its pool."""
        return self._tracker.is_idle

    def detach(self) -> bool:
        """Stops relaying; True when the backend can serve another client."""
        backend = self._backend
        backend.relay_sink = None
        backend.on_lost = backend.on_pause_writing = backend.on_resume_writing = None
        if not self._to_backend.is_closing():
            self._to_backend.resume_reading()
        self._client.resume_reading()
        return not backend.is_broken and self._tracker.is_idle

    def pause_backend(self) -> None:
        # The client reads slower than its backend sends.
        self._to_backend.pause_reading()

    def resume_backend(self) -> None:
        self._to_backend.resume_reading()

    def forward_command(self, payload: bytes) -> None:
        """Sends a command the proxy wrote in place of the client's last one; its answer goes
        to the client as the answer to that one (same sequence ids, same place in order)."""
        self._tracker.command_sent(payload[:16])
        self._to_backend.write(encode_packet(payload, 0)[0])

    # -- client → backend ---------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self._is_one_plain_command(data):
            # The usual case: the chunk is exactly one small command the proxy does not answer.
            self._tracker.command_sent(data[4:20])
            self._to_backend.write(data)
            return
        try:
            packets = self._splitter.feed(data)
        except PacketTooLarge:
            self._session.fail(mysql_errors.PACKET_TOO_LARGE)
            return
        except ProtocolError:
            self._session.fail(mysql_errors.MALFORMED_PACKET)
            return
        forward: list[bytes] = []
        for index, packet in enumerate(packets):
            if not packet.is_continuation:
                if self._tracker.is_awaiting_local_infile:
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
                    later = b"".join(p.raw for p in packets[index + 1 :])
                    if self._session.kill(kill, later):
                        continue
                    return  # the session holds the later bytes until the KILL is done
                if not self._is_relayed(packet):
                    self._write_to_backend(forward)
                    self._answer_here(packet, packets[index + 1 :])
                    return
            forward.append(packet.raw)
        self._write_to_backend(forward)

    def _is_one_plain_command(self, data: bytes) -> bool:
        return (
            len(data) > 4
            and data[3] == 0  # sequence id 0: a new command
            and int3_at(data) + 4 == len(data)
            and data[4] not in _NOT_RELAYED
            and not may_be_a_kill(data[4:6])
            and self._splitter.buffered_bytes == 0
            and not self._tracker.is_awaiting_local_infile
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

    def _is_relayed(self, packet: WirePacket) -> bool:
        """A well-formed command for the backend (the tracker then expects its response)."""
        payload = packet.payload
        if not payload or packet.sequence_id != 0 or payload[0] in ANSWERED_BY_THE_PROXY:
            return False
        self._tracker.command_sent(payload[:16])
        return True

    def _answer_here(self, packet: WirePacket, later: list[WirePacket]) -> None:
        payload = packet.payload
        if not payload:
            self._session.fail(mysql_errors.MALFORMED_PACKET)
        elif packet.sequence_id != 0:
            self._session.fail(mysql_errors.PACKETS_OUT_OF_ORDER)
        elif payload[0] == Command.COM_QUIT:
            self._session.quit()
        else:  # COM_CHANGE_USER: bytes after it wait until the new login is done
            self._session.change_user(payload, b"".join(p.raw for p in later))

    def _write_to_backend(self, forward: list[bytes]) -> None:
        if forward:
            self._to_backend.write(forward[0] if len(forward) == 1 else b"".join(forward))

    # -- backend → client ---------------------------------------------------------------------

    def from_backend(self, data: bytes) -> None:
        self._client.write(data)
        try:
            self._tracker.server_data(data)
        except ProtocolError as exc:
            self._log.warning("backend broke the protocol: %s", exc)
            self._backend.mark_broken()
            self._session.backend_lost()
