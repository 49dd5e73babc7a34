"""One session's prepared statements between its relay and a backend (statement_routing.py):
what goes to the backend for each COM_STMT_*, and what each response's end teaches."""

from __future__ import annotations

from tenantproxy.proxy.backends import BackendConnection, Target
from tenantproxy.proxy.statement_routing import LazyPrepare, SessionStatements
from tenantproxy.proxy.statements import LAST_PREPARED, close_payload
from tenantproxy.wire.mysql.client_connection import ClientConnection
from tenantproxy.wire.mysql.constants import CapabilityFlags, Command, ServerStatus
from tenantproxy.wire.mysql.response_editor import ResponseEditor
from tenantproxy.wire.mysql.response_tracker import ResponseEnd

SQL = b"SELECT ?"
TYPES = b"\x08\x00"  # LONGLONG
VALUE = (5).to_bytes(8, "little")
OK = ResponseEnd(ServerStatus.SERVER_STATUS_AUTOCOMMIT.value)
CAPABILITIES = CapabilityFlags.CLIENT_PROTOCOL_41 | CapabilityFlags.CLIENT_DEPRECATE_EOF


def backend() -> BackendConnection:
    """A backend not connected anywhere: the routing only reads and fills its caches."""
    login = ClientConnection(username="u", password=b"", database=None, capabilities=CAPABILITIES)
    connection = BackendConnection(Target("writer", "writer", "127.0.0.1", 1), 1 << 24, login)
    connection.editor = ResponseEditor(CAPABILITIES, is_client_tracking=False)
    return connection


def execute(statement_id: int, types: bytes | None) -> bytes:
    head = b"\x17" + statement_id.to_bytes(4, "little") + b"\x00" + (1).to_bytes(4, "little")
    return head + b"\x00" + (b"\x01" + types if types else b"\x00") + VALUE


def prepare_ok(server_id: int) -> bytes:
    return b"\x00" + server_id.to_bytes(4, "little") + b"\x01\x00\x01\x00\x00"


def prepared(session: SessionStatements, connection: BackendConnection, server_id: int) -> int:
    """The client's own PREPARE, answered by the backend with ``server_id``."""
    client_id = session.prepare_sent(b"\x16" + SQL, connection)
    assert connection.editor is not None
    connection.editor.prepare_oks.append(prepare_ok(server_id))
    session.response_ended(Command.COM_STMT_PREPARE, b"\x16", OK, connection)
    return client_id


def test_an_execute_on_a_backend_that_lacks_the_statement_is_prepared_there_pipelined():
    session, first, second = SessionStatements(8, lambda: "db"), backend(), backend()
    client_id = prepared(session, first, server_id=40)
    assert session.route(execute(client_id, TYPES), first).payload == execute(40, TYPES)
    routed = session.route(execute(client_id, None), second)
    assert routed.prepare == b"\x16" + SQL
    assert routed.payload == execute(LAST_PREPARED, TYPES)  # the types it has not seen
    hidden = session.hidden_prepare(routed, Command.COM_STMT_EXECUTE)
    lazy = LazyPrepare(("db", SQL), TYPES)
    assert hidden.reason == lazy and hidden.shows_error
    session.lazy_prepare_ended(lazy, ResponseEnd(0, statement_id=7), second)
    assert session.route(execute(client_id, None), second).payload == execute(7, None)


def test_a_failed_lazy_prepare_is_forgotten_and_its_error_shown_only_where_answered():
    session, first, second = SessionStatements(8, lambda: None), backend(), backend()
    client_id = prepared(session, first, server_id=40)
    long_data = b"\x18" + client_id.to_bytes(4, "little") + b"\x00\x00blob"
    routed = session.route(long_data, second)
    assert not session.hidden_prepare(routed, Command.COM_STMT_SEND_LONG_DATA).shows_error
    assert routed.key is not None
    session.lazy_prepare_ended(LazyPrepare(routed.key, None), ResponseEnd(0, 1064), second)
    cache = session.cache_of(second)
    assert len(cache.statements) == 0 and not cache.statements.is_last_prepared(routed.key)


def test_evictions_wait_as_due_closes_and_a_close_without_a_backend_sends_nothing():
    session, connection = SessionStatements(1, lambda: "db"), backend()
    first_id = prepared(session, connection, server_id=1)
    prepared(session, connection, server_id=2)
    assert session.cache_of(connection).due_closes == [close_payload(1)]
    close = b"\x19" + first_id.to_bytes(4, "little")
    routed = session.route(close, None)
    assert (routed.prepare, routed.payload) == (None, None)
    assert len(session.client) == 1


def test_a_cursor_holds_the_backend_until_a_fetch_sends_the_last_row():
    session, connection = SessionStatements(8, lambda: "db"), backend()
    client_id = prepared(session, connection, server_id=3)
    cursor = ResponseEnd(ServerStatus.SERVER_STATUS_CURSOR_EXISTS.value)
    session.response_ended(Command.COM_STMT_EXECUTE, execute(client_id, TYPES), cursor, connection)
    assert session.holds_backend
    fetch = b"\x1c" + client_id.to_bytes(4, "little") + (10).to_bytes(4, "little")
    session.response_ended(Command.COM_STMT_FETCH, fetch, OK, connection)
    assert session.holds_backend
    last = ResponseEnd(ServerStatus.SERVER_STATUS_LAST_ROW_SENT.value)
    session.response_ended(Command.COM_STMT_FETCH, fetch, last, connection)
    assert not session.holds_backend


def test_a_reset_connection_clears_the_client_and_the_backends_statements():
    session, connection = SessionStatements(1, lambda: "db"), backend()
    prepared(session, connection, server_id=1)
    prepared(session, connection, server_id=2)
    session.response_ended(Command.COM_RESET_CONNECTION, b"\x1f", OK, connection)
    cache = session.cache_of(connection)
    assert (len(session.client), len(cache.statements), cache.due_closes) == (0, 0, [])
    prepared(session, connection, server_id=5)
    failed = ResponseEnd(0, error_code=1047)  # a reset refused keeps everything
    session.response_ended(Command.COM_RESET_CONNECTION, b"\x1f", failed, connection)
    assert len(session.client) == 1 and len(cache.statements) == 1
