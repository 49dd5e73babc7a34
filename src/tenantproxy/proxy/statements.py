"""Binary prepared statements without pinning (issue 9 item 5): the client sees proxy-assigned
statement ids; each statement is prepared lazily on whichever backend runs it.

Sans-IO. ``ClientStatements`` (one per client session) keeps each statement's text, parameter and
column counts and the parameter types once the client sent them; ``BackendStatements`` (one per
backend, kept with it across clients) maps (schema, text) to the server's statement id, bounded
with least-recently-used eviction. The relay feeds both and sends what they return.

Payload layouts (MariaDB's COM_STMT_* pages): every statement command and COM_STMT_PREPARE_OK
carry the statement id as int<4> at byte 1. COM_STMT_EXECUTE is

    int<1> 0x17, int<4> statement id, int<1> flags, int<4> iteration count (1),
    if params > 0: byte<(params + 7) / 8> null bitmap, int<1> send types (new-params-bound),
                   if send types: params x (int<1> field type, int<1> flag), values...

The server keeps a statement's types from its last execute that sent them, so a backend that did
not see the client's types gets them spliced in. Statement id 0xFFFFFFFF (MariaDB 10.2+) means
"the statement just prepared on this connection" (MariaDB 10.11 takes it in EXECUTE, SEND_LONG_DATA,
RESET, FETCH and CLOSE): a lazy prepare is pipelined with the command that needs it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from tenantproxy.wire.mysql.constants import Command
from tenantproxy.wire.mysql.errors import ProtocolError

LAST_PREPARED = 0xFFFFFFFF
# The commands that name a statement by its id (int<4> at byte 1).
ID_COMMANDS = frozenset(
    {
        Command.COM_STMT_EXECUTE,
        Command.COM_STMT_SEND_LONG_DATA,
        Command.COM_STMT_CLOSE,
        Command.COM_STMT_RESET,
        Command.COM_STMT_FETCH,
        Command.COM_STMT_BULK_EXECUTE,
    }
)
_EXECUTE_HEAD = 10  # command, statement id, flags, iteration count
_ER_UNKNOWN_STMT_HANDLER = 1243
_ER_MALFORMED_PACKET = 1835
_ER_WRONG_ARGUMENTS = 1210
# Shorter than this, MariaDB answers ER_MALFORMED_PACKET (command byte included): an execute
# without its flags and iteration count, a bulk execute without its flags.
_SHORTEST: dict[int, int] = {Command.COM_STMT_EXECUTE: 10, Command.COM_STMT_BULK_EXECUTE: 7}
_ID_END = 5  # command byte + int<4> statement id
_ER_STMT_HAS_NO_OPEN_CURSOR = 1421
_FUNCTION_OF: dict[int, str] = {
    Command.COM_STMT_EXECUTE: "mysqld_stmt_execute",
    Command.COM_STMT_FETCH: "mysqld_stmt_fetch",
    Command.COM_STMT_RESET: "mysqld_stmt_reset",
    Command.COM_STMT_SEND_LONG_DATA: "mysqld_stmt_send_long_data",
    Command.COM_STMT_BULK_EXECUTE: "mysqld_stmt_bulk_execute",
}

StatementKey = tuple[str | None, bytes]  # (schema at prepare, text): what a server id means


class UnknownStatement(Exception):
    """A client named a statement id it was not given: answered as MariaDB does."""

    code = _ER_UNKNOWN_STMT_HANDLER
    sql_state = "HY000"

    def __init__(self, statement_id: int, command: int) -> None:
        function = _FUNCTION_OF.get(command, "mysqld_stmt_execute")
        super().__init__(f"Unknown prepared statement handler ({statement_id}) given to {function}")


class MalformedCommand(UnknownStatement):
    """A COM_STMT_EXECUTE or BULK_EXECUTE too short for its header: MariaDB's answer."""

    code = _ER_MALFORMED_PACKET

    def __init__(self) -> None:
        Exception.__init__(self, "Malformed communication packet")


class IncorrectArguments(UnknownStatement):
    """A COM_STMT_EXECUTE without the parameter block its statement needs: MariaDB's answer."""

    code = _ER_WRONG_ARGUMENTS

    def __init__(self) -> None:
        Exception.__init__(self, "Incorrect arguments to mysqld_stmt_execute")


class NoOpenCursor(UnknownStatement):
    """A COM_STMT_FETCH of a statement whose cursor is gone (exhausted, closed or reset):
    MariaDB's ER_STMT_HAS_NO_OPEN_CURSOR, with the client's id."""

    code = _ER_STMT_HAS_NO_OPEN_CURSOR

    def __init__(self, statement_id: int) -> None:
        Exception.__init__(self, f"The statement ({statement_id}) has no open cursor")


# -- pure functions on payloads --------------------------------------------------------------


def _cut_short(payload: bytes) -> Routed:
    """A COM_STMT_* too short to name its statement (or, for an execute, to carry its header):
    what MariaDB does with it. Those it answers raise; those it does not answer send nothing."""
    command = payload[0]
    if command in _SHORTEST:
        raise MalformedCommand
    if command in (Command.COM_STMT_CLOSE, Command.COM_STMT_SEND_LONG_DATA):
        return Routed(None, None)
    # MariaDB reads the id's missing bytes from whatever its buffer holds; here they are zeros.
    raise UnknownStatement(int.from_bytes(payload[1:_ID_END].ljust(4, b"\0"), "little"), command)


def statement_id(payload: bytes) -> int:
    """The int<4> statement id at byte 1 of a COM_STMT_* command or a COM_STMT_PREPARE_OK."""
    if len(payload) < 5:
        raise ProtocolError(f"command 0x{payload[:1].hex()} too short for a statement id")
    return int.from_bytes(payload[1:5], "little")


def with_statement_id(payload: bytes, new_id: int) -> bytes:
    statement_id(payload)  # checks the length
    return payload[:1] + new_id.to_bytes(4, "little") + payload[5:]


def prepare_ok_counts(payload: bytes) -> tuple[int, int]:
    """(columns, params) of a COM_STMT_PREPARE_OK: 0x00, id<4>, columns<2>, params<2>, ..."""
    if len(payload) < 9 or payload[0] != 0:
        raise ProtocolError("not a COM_STMT_PREPARE_OK")
    return int.from_bytes(payload[5:7], "little"), int.from_bytes(payload[7:9], "little")


def _types_at(payload: bytes, params: int) -> int:
    """Offset of an execute's send-types byte; ProtocolError when the payload is too short."""
    at = _EXECUTE_HEAD + (params + 7) // 8
    if len(payload) <= at:
        raise ProtocolError("COM_STMT_EXECUTE too short for its parameters")
    return at


def param_types(payload: bytes, params: int) -> bytes | None:
    """The parameter types a COM_STMT_EXECUTE sends (2 bytes each), None when it sends none."""
    if not params:
        return None
    at = _types_at(payload, params)
    if not payload[at]:
        return None
    types = payload[at + 1 : at + 1 + 2 * params]
    if len(types) != 2 * params:
        raise ProtocolError("COM_STMT_EXECUTE too short for its parameter types")
    return types


def with_param_types(payload: bytes, params: int, types: bytes) -> bytes:
    """The COM_STMT_EXECUTE with its send-types flag set and ``types`` spliced in."""
    at = _types_at(payload, params)
    if payload[at]:
        return payload[: at + 1] + types + payload[at + 1 + 2 * params :]
    return payload[:at] + b"\x01" + types + payload[at + 1 :]


def close_payload(server_id: int) -> bytes:
    return bytes((Command.COM_STMT_CLOSE,)) + server_id.to_bytes(4, "little")


# -- the registry ----------------------------------------------------------------------------


@dataclass(slots=True)
class Statement:
    client_id: int
    key: StatementKey
    columns: int
    params: int
    types: bytes | None = None  # the last the client sent
    has_long_data: bool = False  # SEND_LONG_DATA sent, no execute or reset since
    has_cursor: bool = False


class BackendStatements:
    """One backend's prepared statements, bounded: adding past ``capacity`` closes the least
    recently used. Kept with the backend across clients; ``clear`` after a reset."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a backend's statement cache needs room for one statement")
        self.capacity = capacity
        self._ids: OrderedDict[StatementKey, int] = OrderedDict()
        self._types: dict[int, bytes] = {}  # server id -> the types it last received
        # The statement of the PREPARE sent last, while its answer is on its way or was OK:
        # statement id -1 names it on the server, before its id is known here.
        self._last_prepared: StatementKey | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def server_id(self, key: StatementKey) -> int | None:
        server_id = self._ids.get(key)
        if server_id is not None:
            self._ids.move_to_end(key)
        return server_id

    def add(self, key: StatementKey, server_id: int, types: bytes | None = None) -> list[bytes]:
        """Records a PREPARE_OK's id; returns the COM_STMT_CLOSE payloads to send (no answer)."""
        closes = []
        old = self._ids.pop(key, None)
        if old is not None and old != server_id:
            closes.append(self._forget(old))
        self._ids[key] = server_id
        if types is not None:
            self._types[server_id] = types
        while len(self._ids) > self.capacity:
            _, evicted = self._ids.popitem(last=False)
            closes.append(self._forget(evicted))
        return closes

    def _forget(self, server_id: int) -> bytes:
        self._types.pop(server_id, None)
        return close_payload(server_id)

    def drop(self, key: StatementKey) -> bytes | None:
        """Forgets a statement; its COM_STMT_CLOSE, None when the backend did not have it."""
        server_id = self._ids.pop(key, None)
        return None if server_id is None else self._forget(server_id)

    def prepare_sent(self, key: StatementKey) -> None:
        self._last_prepared = key

    def prepare_failed(self, key: StatementKey) -> None:
        """The server then has no last statement: -1 names none."""
        if self._last_prepared == key:
            self._last_prepared = None

    def is_last_prepared(self, key: StatementKey) -> bool:
        return self._last_prepared == key

    def types_of(self, server_id: int) -> bytes | None:
        return self._types.get(server_id)

    def types_sent(self, server_id: int, types: bytes) -> None:
        self._types[server_id] = types

    def clear(self) -> None:
        """A reset (COM_RESET_CONNECTION, COM_CHANGE_USER) closed them all on the server."""
        self._ids.clear()
        self._types.clear()
        self._last_prepared = None


@dataclass(frozen=True, slots=True)
class Routed:
    """What to send a backend for one client command, in order. ``prepare`` (when set) is a
    COM_STMT_PREPARE whose answer the relay hides, giving its id to ``BackendStatements.add``
    with ``key`` and ``types``; ``payload`` then names statement -1. ``payload`` None: nothing
    goes to the backend (a COM_STMT_CLOSE has no answer)."""

    prepare: bytes | None
    payload: bytes | None
    key: StatementKey | None = None
    types: bytes | None = None


@dataclass(slots=True)
class _Pending:
    """A client's COM_STMT_PREPARE on its way; ``client_id`` is reserved for it."""

    key: StatementKey
    client_id: int
    first_execute: bytes | None = None  # a pipelined EXECUTE -1: its types are learnt later
    has_long_data: bool = False
    is_closed: bool = False  # a pipelined CLOSE -1


class ClientStatements:
    """One client session's prepared statements, under the ids the proxy gave it."""

    def __init__(self) -> None:
        self._statements: dict[int, Statement] = {}
        self._next_id = 1
        self._pending: list[_Pending] = []  # PREPAREs sent, not yet answered
        self._last_prepared: int | None = None

    def __len__(self) -> int:
        return len(self._statements)

    @property
    def holds_backend(self) -> bool:
        """Long data waiting for its execute, or an open cursor, or a PREPARE in flight."""
        return bool(self._pending) or any(
            s.has_long_data or s.has_cursor for s in self._statements.values()
        )

    @property
    def open_cursors(self) -> int:
        return sum(s.has_cursor for s in self._statements.values())

    def prepare_sent(
        self, schema: str | None, payload: bytes, backend: BackendStatements | None = None
    ) -> int:
        """The client's COM_STMT_PREPARE went to a backend: the id its PREPARE_OK shows."""
        client_id = self._next_id
        self._next_id = self._next_id % (LAST_PREPARED - 1) + 1  # never 0 nor 0xFFFFFFFF
        key = (schema, payload[1:])
        self._pending.append(_Pending(key, client_id))
        if backend is not None:
            backend.prepare_sent(key)
        return client_id

    def prepare_failed(self) -> StatementKey:
        """The oldest pending PREPARE was answered with ERR (the server forgets its last)."""
        pending = self._take_pending()
        self._last_prepared = None
        return pending.key

    def _take_pending(self) -> _Pending:
        if not self._pending:
            raise ProtocolError("a PREPARE answer with no PREPARE sent")
        return self._pending.pop(0)

    def prepared(self, prepare_ok: bytes, backend: BackendStatements) -> list[bytes]:
        """The backend answered the oldest pending PREPARE (``prepare_ok``: the server's first
        9 bytes of it): the COM_STMT_CLOSE payloads the backend's cache evicted, to send."""
        pending = self._take_pending()
        columns, params = prepare_ok_counts(prepare_ok)
        statement = Statement(pending.client_id, pending.key, columns, params)
        statement.has_long_data = pending.has_long_data
        if pending.first_execute is not None:
            statement.types = param_types(pending.first_execute, params)
        closes = backend.add(pending.key, statement_id(prepare_ok), statement.types)
        if pending.is_closed:
            self._last_prepared = None
            return closes
        self._statements[pending.client_id] = statement
        self._last_prepared = pending.client_id
        return closes

    def reset(self) -> None:
        """The client's COM_RESET_CONNECTION: the server closed every statement."""
        self._statements.clear()
        self._pending.clear()
        self._last_prepared = None

    def _statement(self, payload: bytes) -> Statement:
        client_id = statement_id(payload)
        if client_id == LAST_PREPARED and self._last_prepared is not None:
            client_id = self._last_prepared
        statement = self._statements.get(client_id)
        if statement is None:
            raise UnknownStatement(client_id, payload[0])
        return statement

    def route(self, payload: bytes, backend: BackendStatements) -> Routed:
        """A client's COM_STMT_EXECUTE / SEND_LONG_DATA / RESET / CLOSE / FETCH / BULK_EXECUTE
        for this backend. Raises ``UnknownStatement`` for an id the client was not given (and
        ``MalformedCommand`` for an execute cut short), as MariaDB answers them; a
        SEND_LONG_DATA for such an id is dropped, unanswered, as MariaDB does."""
        if payload[:1] == b"" or payload[0] not in ID_COMMANDS:
            raise ProtocolError("not a prepared-statement command")
        command = payload[0]
        if len(payload) < _SHORTEST.get(command, _ID_END):
            return _cut_short(payload)
        if command == Command.COM_STMT_SEND_LONG_DATA and not self._names_a_statement(payload):
            return Routed(None, None)
        if self._pending and statement_id(payload) == LAST_PREPARED:
            return self._for_pending(payload)  # the client's own PREPARE is ahead, pipelined
        if command == Command.COM_STMT_CLOSE:
            return Routed(None, self.close(payload, backend))
        statement = self._statement(payload)
        server_id = backend.server_id(statement.key)
        if command == Command.COM_STMT_EXECUTE:
            return self._execute(statement, payload, backend, server_id)
        if command == Command.COM_STMT_RESET:
            statement.has_long_data = statement.has_cursor = False
        elif command == Command.COM_STMT_SEND_LONG_DATA:
            statement.has_long_data = True
        elif command == Command.COM_STMT_FETCH and server_id is None:
            raise NoOpenCursor(statement.client_id)  # its cursor ended (an open one holds)
        if server_id is None:  # prepared here now, pipelined: the command names it -1
            prepare = self._lazy_prepare(statement, backend)
            return Routed(prepare, with_statement_id(payload, LAST_PREPARED), statement.key)
        return Routed(None, with_statement_id(payload, server_id))

    def _names_a_statement(self, payload: bytes) -> bool:
        if self._pending and statement_id(payload) == LAST_PREPARED:
            return True
        return self._find(payload) is not None

    def _for_pending(self, payload: bytes) -> Routed:
        pending = self._pending[-1]
        command = payload[0]
        if command == Command.COM_STMT_EXECUTE and pending.first_execute is None:
            pending.first_execute = payload
            pending.has_long_data = False
        elif command == Command.COM_STMT_SEND_LONG_DATA:
            pending.has_long_data = True
        elif command == Command.COM_STMT_CLOSE:
            pending.is_closed = True
        return Routed(None, payload)

    def _execute(
        self,
        statement: Statement,
        payload: bytes,
        backend: BackendStatements,
        server_id: int | None,
    ) -> Routed:
        try:
            sent = param_types(payload, statement.params)
        except ProtocolError:
            raise IncorrectArguments from None
        if sent is not None:
            statement.types = sent
        statement.has_long_data = False
        if server_id is None:  # prepared here now, pipelined: the execute names it -1
            out = with_statement_id(payload, LAST_PREPARED)
            if statement.types is not None and sent is None:
                out = with_param_types(out, statement.params, statement.types)
            prepare = self._lazy_prepare(statement, backend)
            return Routed(prepare, out, statement.key, statement.types)
        out = with_statement_id(payload, server_id)
        types = statement.types
        if types is not None:
            if sent is None and types != backend.types_of(server_id):
                out = with_param_types(out, statement.params, types)
            backend.types_sent(server_id, types)
        return Routed(None, out)

    def close(self, payload: bytes, backend: BackendStatements | None) -> bytes | None:
        """A client's COM_STMT_CLOSE (no answer, even for an id it was not given, as MariaDB):
        the COM_STMT_CLOSE for the backend, None when nothing is to be sent. ``backend`` None:
        none is attached (then no cursor nor long data can be open: they hold it)."""
        if len(payload) < _ID_END:  # cut short: names no statement
            return None
        try:
            statement = self._statement(payload)
        except UnknownStatement:
            return None
        del self._statements[statement.client_id]
        if backend is not None and (statement.has_cursor or statement.has_long_data):
            # the server statement holds this client's cursor or data: close it there too
            return backend.drop(statement.key)
        return None  # stays in the backend's cache for the next client

    @staticmethod
    def _lazy_prepare(statement: Statement, backend: BackendStatements) -> bytes | None:
        """The COM_STMT_PREPARE to send first; None when the last one sent was this statement's
        (its answer on its way): -1 names it already. A PREPARE in between would lose the long
        data sent to the first."""
        if backend.is_last_prepared(statement.key):
            return None
        backend.prepare_sent(statement.key)
        return bytes((Command.COM_STMT_PREPARE,)) + statement.key[1]

    def executed(self, payload: bytes, *, has_cursor: bool) -> None:
        """An execute (its client payload's first bytes) was answered: with
        SERVER_STATUS_CURSOR_EXISTS it left a cursor open (a new execute closes the old)."""
        statement = self._find(payload)
        if statement is not None:
            statement.has_cursor = has_cursor

    def fetched(self, payload: bytes, *, is_done: bool) -> None:
        """A fetch was answered; ``is_done``: SERVER_STATUS_LAST_ROW_SENT (or an error)."""
        statement = self._find(payload)
        if statement is not None and is_done:
            statement.has_cursor = False

    def _find(self, payload: bytes) -> Statement | None:
        try:
            return self._statement(payload)
        except UnknownStatement:
            return None  # closed meanwhile (pipelined)
