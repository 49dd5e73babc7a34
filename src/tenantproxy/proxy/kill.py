"""KILL of a proxy session: what a client names with the connection id from its handshake.

Drivers kill a connection with the id the server gave it in the handshake (``conn.kill(
conn.thread_id())``, ``KILL QUERY <id>``). Through the proxy that id is the proxy session's, not
any backend's, so the proxy must map it. Session ids lie in [SESSION_ID_BASE, SESSION_ID_LIMIT),
far above the thread ids MariaDB hands out, so a KILL that names a backend's own id (from
CONNECTION_ID()) is told apart and goes to the server as it is.

Only literal ids are mapped: ``KILL CONNECTION_ID()`` and other expressions reach the server
unchanged (docs/architecture.md, "Differences from connecting directly").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tenantproxy.errors import BackendError
from tenantproxy.proxy.connector import MysqlConnector
from tenantproxy.wire.mysql import commands
from tenantproxy.wire.mysql.constants import Command

if TYPE_CHECKING:
    from tenantproxy.proxy.leasing import HeldBackend

SESSION_ID_BASE = 1 << 30
SESSION_ID_LIMIT = 1 << 31

# KILL [HARD | SOFT] [CONNECTION | QUERY] <id>, with comments and whitespace where MariaDB allows
# them. Executable comments (/*! ... */, /*M! ... */) are not skipped: MariaDB runs their text.
_COMMENT = r"(?:/\*(?![!M])[\s\S]*?\*/|(?:#|--\s)[^\n]*\n)"
_GAP = rf"(?:\s|{_COMMENT})+"
_KILL_SQL = re.compile(
    rf"^(?:\s|{_COMMENT})*KILL"
    rf"(?:{_GAP}(?P<force>HARD|SOFT))?"
    rf"(?:{_GAP}(?P<what>CONNECTION|QUERY))?"
    rf"{_GAP}(?P<id>\d{{1,10}})(?:\s|{_COMMENT})*;?(?:\s|{_COMMENT})*$",
    re.IGNORECASE,
)
# First bytes of a COM_QUERY that may be a KILL: 'k', whitespace or the start of a comment.
_MAY_START_A_KILL = frozenset(b"kK \t\r\n/#-")


def may_be_a_kill(payload: bytes) -> bool:
    """Cheap test on a command's first bytes: could it be a KILL of a proxy session?"""
    if not payload:
        return False
    if payload[0] == Command.COM_PROCESS_KILL:
        return True
    return payload[0] == Command.COM_QUERY and len(payload) > 1 and payload[1] in _MAY_START_A_KILL


@dataclass(frozen=True)
class KillRequest:
    """A KILL that names a proxy session id."""

    session_id: int
    is_query_only: bool  # KILL QUERY: end the statement, keep the connection
    force: str = ""  # "HARD", "SOFT" or ""

    @classmethod
    def parse(cls, payload: bytes) -> KillRequest | None:
        """The request in a COM_PROCESS_KILL or COM_QUERY payload, when it names an id in the
        proxy's range; None for anything else, which goes to the server unchanged."""
        if payload[:1] == bytes((Command.COM_PROCESS_KILL,)):
            if len(payload) != 5:
                return None
            return cls._of(int.from_bytes(payload[1:5], "little"), is_query_only=False)
        try:
            text = payload[1:].decode("ascii")
        except UnicodeDecodeError:
            return None
        match = _KILL_SQL.match(text)
        if match is None:
            return None
        what, force = match["what"] or "", match["force"] or ""
        return cls._of(int(match["id"]), what.upper() == "QUERY", force.upper())

    @classmethod
    def _of(cls, session_id: int, is_query_only: bool, force: str = "") -> KillRequest | None:
        if not SESSION_ID_BASE <= session_id < SESSION_ID_LIMIT:
            return None
        return cls(session_id, is_query_only, force)

    def sql(self, thread_id: int) -> str:
        """The same KILL, aimed at a backend's thread id."""
        words = ["KILL", self.force, "QUERY" if self.is_query_only else "CONNECTION"]
        return " ".join(word for word in words if word) + f" {thread_id}"

    def for_backend(self, thread_id: int) -> bytes:
        """A COM_QUERY payload that runs this KILL against a backend's thread id."""
        return commands.com_query(self.sql(thread_id))


def answered_without_a_kill() -> bytes:
    """A statement whose answer is a plain OK: sent to the client's own backend in place of a
    KILL the proxy carried out itself, so the OK reaches the client in order, after the answers
    to the commands it sent before."""
    return commands.com_query("DO 0")


async def kill_on_target(victim: HeldBackend, request: KillRequest) -> None:
    """Runs the KILL on the victim's target, whose server the killer's own backend is not on,
    over a one-off connection as the same tenant (outside the pool and its budget, closed at
    once). Raises BackendError when the target cannot be reached or refuses."""
    connector = victim.pool.connector
    assert isinstance(connector, MysqlConnector)
    backend = await connector.connect_outside_pool()
    try:
        await backend.run_simple_command(request.for_backend(victim.connection.connection_id))
    finally:
        backend.close()


class Victim(Protocol):
    """A session a KILL may name."""

    username: str | None

    @property
    def held_backend(self) -> HeldBackend | None: ...

    def close_now(self) -> None: ...


async def kill_served_here(
    sessions: Mapping[int, Victim], request: KillRequest, killer: str, log: logging.Logger
) -> bool:
    """A KILL that a session of another worker sent (workers.py) of a session served here:
    carried out on the victim's target, as for a victim on another target. False when there is
    no such session of the killer's tenant (the killer answers "Unknown thread id")."""
    victim = sessions.get(request.session_id)
    if victim is None or victim.username != killer:
        return False
    backend = victim.held_backend
    if backend is None:  # logging in, or between backends: nothing runs there
        if not request.is_query_only:
            victim.close_now()
        return True
    try:
        await kill_on_target(backend, request)
    except BackendError as exc:  # the victim's backend or its target is gone already
        log.info("KILL of session %d from another worker: %s", request.session_id, exc)
    return True
