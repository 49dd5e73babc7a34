"""Binary prepared statements in transaction mode: one session's side of the registry
(statements.py), between its relay and its multiplexer.

The relay hands it each COM_STMT_* command (``route``) and sends what comes back, in order: a
hidden COM_STMT_PREPARE when the attached backend lacks the statement, tagged ``LazyPrepare``
and hidden unless it fails (response_editor.Hidden), then the command with the server's id (or
-1, "the statement just prepared"). The multiplexer hands it each response's end
(``response_ended``, ``lazy_prepare_ended``) so the registry learns server ids, cursors and
resets. The per-backend cache lives on the backend (``BackendConnection.statements``), across
clients; COM_STMT_CLOSEs it owes the server (evictions) wait there for the next command
boundary (``take_due_closes``): written mid-packet they would cut a client's fragments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tenantproxy.proxy.statements import (
    ID_COMMANDS,
    BackendStatements,
    ClientStatements,
    Routed,
    StatementKey,
)
from tenantproxy.wire.mysql.constants import Command, ServerStatus
from tenantproxy.wire.mysql.response_editor import Hidden

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenantproxy.proxy.backends import BackendConnection
    from tenantproxy.wire.mysql.response_tracker import ResponseEnd

STATEMENT_COMMANDS = ID_COMMANDS | {Command.COM_STMT_PREPARE}
# Their answer is the client's only one when a pipelined PREPARE ahead of them fails.
_ANSWERED = STATEMENT_COMMANDS - {Command.COM_STMT_SEND_LONG_DATA, Command.COM_STMT_CLOSE}
_CURSOR_EXISTS = ServerStatus.SERVER_STATUS_CURSOR_EXISTS.value
_LAST_ROW_SENT = ServerStatus.SERVER_STATUS_LAST_ROW_SENT.value


@dataclass(frozen=True, slots=True)
class LazyPrepare:
    """A PREPARE the proxy sent for a statement the backend lacked: its id goes to the cache."""

    key: StatementKey
    types: bytes | None


@dataclass(slots=True)
class CachedStatements:
    """A backend's statements (``BackendStatements``) and the closes it owes the server."""

    statements: BackendStatements
    due_closes: list[bytes] = field(default_factory=list)

    def clear(self) -> None:
        """After COM_RESET_CONNECTION or COM_CHANGE_USER: the server closed them all."""
        self.statements.clear()
        self.due_closes.clear()


class SessionStatements:
    """One transaction-mode session's prepared statements."""

    def __init__(self, cache_size: int, schema: Callable[[], str | None]) -> None:
        self.client = ClientStatements()
        self._cache_size = cache_size
        self._schema = schema

    @property
    def holds_backend(self) -> bool:
        return self.client.holds_backend

    def cache_of(self, backend: BackendConnection) -> CachedStatements:
        cache = backend.statements
        if cache is None:
            cache = backend.statements = CachedStatements(BackendStatements(self._cache_size))
        return cache

    # -- from the relay ---------------------------------------------------------------------

    def prepare_sent(self, payload: bytes, backend: BackendConnection) -> int:
        """The client's COM_STMT_PREPARE: the id its PREPARE_OK shows."""
        return self.client.prepare_sent(self._schema(), payload, self.cache_of(backend).statements)

    def route(self, payload: bytes, backend: BackendConnection | None) -> Routed:
        """A client's COM_STMT_* (not PREPARE) for the attached backend (None: none is, for a
        COM_STMT_CLOSE). Raises statements.UnknownStatement / NoOpenCursor."""
        if backend is None:
            return Routed(None, self.client.close(payload, None))
        return self.client.route(payload, self.cache_of(backend).statements)

    @staticmethod
    def hidden_prepare(routed: Routed, command: int) -> Hidden:
        assert routed.key is not None
        return Hidden(LazyPrepare(routed.key, routed.types), shows_error=command in _ANSWERED)

    # -- from the multiplexer -----------------------------------------------------------------

    def lazy_prepare_ended(
        self, prepare: LazyPrepare, end: ResponseEnd, backend: BackendConnection
    ) -> None:
        cache = self.cache_of(backend)
        if end.error_code is None and end.statement_id is not None:
            cache.due_closes += cache.statements.add(prepare.key, end.statement_id, prepare.types)
        else:
            cache.statements.prepare_failed(prepare.key)

    def response_ended(
        self, command: int, start: bytes, end: ResponseEnd, backend: BackendConnection
    ) -> None:
        """The end of the client's command (``start``: its first bytes, the client's ids)."""
        failed = end.error_code is not None
        if command == Command.COM_STMT_PREPARE:
            editor = backend.editor
            cache = self.cache_of(backend)
            if failed or editor is None or not editor.prepare_oks:
                cache.statements.prepare_failed(self.client.prepare_failed())
                return
            cache.due_closes += self.client.prepared(editor.prepare_oks.popleft(), cache.statements)
        elif command == Command.COM_STMT_EXECUTE:
            has_cursor = not failed and bool(end.status_flags & _CURSOR_EXISTS)
            self.client.executed(start, has_cursor=has_cursor)
        elif command == Command.COM_STMT_FETCH:
            self.client.fetched(start, is_done=failed or bool(end.status_flags & _LAST_ROW_SENT))
        elif command == Command.COM_RESET_CONNECTION and not failed:
            self.client.reset()
            self.cache_of(backend).clear()
