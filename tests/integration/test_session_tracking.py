"""What MariaDB 10.11 reports in its OK packets, with the proxy's arming statement, for each
statement multiplexing must know about (docs/multiplexing.md has the table). The proxy's
session-state model (proxy/session_state.py) is built on these facts: this test fails when the
server behaves otherwise. Straight to the stack's writer, as its admin (LOCK TABLES, XA, DROP
DATABASE), with our own sans-IO client so the session-state bytes are seen as sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantproxy.proxy.session_state import (
    ARMING_STATEMENT,
    PinReason,
    SessionState,
    Settings,
    TrackedState,
    replay,
    text_pin_reason,
)
from tenantproxy.stack.outputs import read_admin_credentials
from tenantproxy.wire.mysql.constants import CapabilityFlags, Command
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.response_tracker import ResponseEnd, ResponseTracker
from tenantproxy.wire.mysql.session_track import (
    Entry,
    Schema,
    StateChange,
    SystemVariable,
    TransactionCharacteristics,
    TransactionState,
    session_entries,
)
from tests.integration.raw_client import RawClient

pytestmark = pytest.mark.integration

DATABASE = "p6state_tracking"
CHANGED = StateChange(True)
IDLE = TransactionState("________")
IN_TRANS = 0x0001


class Tracked:
    """A raw admin session to the writer, armed as the proxy arms its backends."""

    def __init__(self, stack: Any) -> None:
        admin = read_admin_credentials(Path(stack.outputs["AdminCredentials"]))
        self.client = RawClient(stack.proxy_writer, stack.outputs["CACertificate"])
        login = self.client.log_in(
            admin.user, admin.password, None, CapabilityFlags.CLIENT_SESSION_TRACK
        )
        self.capabilities = login.capability_flags
        self.run(ARMING_STATEMENT)

    def run(self, sql: str) -> tuple[ResponseEnd, list[Entry]]:
        payload = bytes((Command.COM_QUERY,)) + sql.encode()
        tracker = ResponseTracker(self.capabilities)
        tracker.command_sent(payload[:16])
        self.client.send(encode_packet(payload, 0)[0])
        while True:
            chunk = self.client.sock.recv(65536)
            assert chunk, "closed before the answer ended"
            if tracker.server_data(chunk):
                end = tracker.ends[-1]
                return end, [e for ok in end.state_change_oks for e in session_entries(ok)]


@pytest.fixture()
def session(stack: Any) -> Iterator[Tracked]:
    tracked = Tracked(stack)
    tracked.run(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    tracked.run(f"CREATE TABLE IF NOT EXISTS {DATABASE}.t (id INT AUTO_INCREMENT PRIMARY KEY)")
    tracked.run(f"USE {DATABASE}")
    try:
        yield tracked
    finally:
        tracked.client.close()


def without_gtid(entries: list[Entry]) -> list[Entry]:
    """The entries but last_gtid, sorted: MariaDB's order of variables is its hash's."""
    kept = [e for e in entries if not (isinstance(e, SystemVariable) and e.name == "last_gtid")]
    return sorted(kept, key=repr)


# (statement, the entries MariaDB reports apart from last_gtid), run in this order on one session.
REPORTS: list[tuple[str, list[Entry]]] = [
    ("SELECT 1", []),
    ("SET @u = 1", [CHANGED]),
    ("SELECT @v := 2", []),  # a user variable, and nothing reported
    ("SELECT 3 INTO @w", []),
    ("CREATE TEMPORARY TABLE tt (a INT)", [CHANGED]),
    ("DROP TEMPORARY TABLE tt", [CHANGED]),
    ("SELECT GET_LOCK('p6state', 0)", []),  # a user lock, and nothing reported
    ("SELECT RELEASE_LOCK('p6state')", []),
    ("LOCK TABLES t READ", [TransactionState("_______L")]),
    ("UNLOCK TABLES", [IDLE]),
    ("FLUSH TABLES WITH READ LOCK", []),  # nothing reported
    ("UNLOCK TABLES", []),
    ("PREPARE s FROM 'SELECT 1'", [CHANGED]),
    ("DEALLOCATE PREPARE s", [CHANGED]),
    (
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        [TransactionCharacteristics("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;")],
    ),
    (
        "BEGIN",
        [
            TransactionState("T_______"),
            TransactionCharacteristics(
                "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION;"
            ),
        ],
    ),
    ("COMMIT", [IDLE, TransactionCharacteristics("")]),
    (
        "XA START 'p6x'",
        [TransactionState("T_______"), TransactionCharacteristics("XA START 'p6x';")],
    ),
    ("XA END 'p6x'", []),
    ("XA ROLLBACK 'p6x'", [IDLE, TransactionCharacteristics("")]),
    ("SET autocommit = 0", [SystemVariable("autocommit", "OFF"), CHANGED]),
    ("SELECT 1", []),  # no table: no transaction either
    ("SET autocommit = 1", [SystemVariable("autocommit", "ON"), CHANGED]),
    (
        "SET NAMES latin1 COLLATE latin1_bin",
        [
            SystemVariable("character_set_client", "latin1"),
            SystemVariable("character_set_connection", "latin1"),
            SystemVariable("character_set_results", "latin1"),
            CHANGED,
        ],
    ),  # no collation_connection
    (
        "SET SESSION collation_connection = 'utf8mb4_unicode_ci'",
        [SystemVariable("collation_connection", "utf8mb4_unicode_ci"), CHANGED],
    ),  # no character_set_connection
    (
        "SET SESSION character_set_results = NULL",
        [SystemVariable("character_set_results", ""), CHANGED],
    ),
    ("SET SESSION sql_mode = 'ANSI_QUOTES'", [SystemVariable("sql_mode", "ANSI_QUOTES"), CHANGED]),
    ("SET SESSION time_zone = '+02:00'", [SystemVariable("time_zone", "+02:00"), CHANGED]),
    (
        "SET SESSION tx_isolation = 'READ-COMMITTED'",
        [SystemVariable("tx_isolation", "READ-COMMITTED"), CHANGED],
    ),
    ("SET SESSION TRANSACTION READ ONLY", [SystemVariable("tx_read_only", "ON"), CHANGED]),
    ("SET SESSION tx_read_only = 0", [SystemVariable("tx_read_only", "OFF"), CHANGED]),
    ("SET SESSION wait_timeout = 100", [SystemVariable("wait_timeout", "100"), CHANGED]),
    (
        "SET SESSION max_statement_time = 10",
        [SystemVariable("max_statement_time", "10.000000"), CHANGED],
    ),
    ("SET SESSION sql_log_bin = 0", [SystemVariable("sql_log_bin", "OFF"), CHANGED]),
    ("USE mysql", [Schema("mysql"), CHANGED]),
    (f"USE {DATABASE}", [Schema(DATABASE), CHANGED]),
]


def test_mariadb_reports_what_the_session_state_model_expects(session):
    reported = [(sql, without_gtid(session.run(sql)[1])) for sql, _ in REPORTS]
    assert reported == [(sql, sorted(entries, key=repr)) for sql, entries in REPORTS]


def test_transaction_isolation_names_are_mysqls_not_mariadb_10_11s(session):
    for sql in [
        "SET SESSION transaction_isolation = 'READ-COMMITTED'",
        "SET SESSION transaction_read_only = 1",
    ]:
        assert session.run(sql)[0].error_code == 1193  # ER_UNKNOWN_SYSTEM_VARIABLE


def test_drop_database_reports_an_empty_schema_without_a_state_change(session):
    session.run("CREATE DATABASE IF NOT EXISTS p6state_drop")
    session.run("USE p6state_drop")
    end, entries = session.run("DROP DATABASE p6state_drop")
    assert without_gtid(entries) == [Schema("")]
    assert end.status_flags & 0x0100  # SERVER_STATUS_DB_DROPPED


def test_an_insert_reports_its_id_and_a_transaction_its_status(session):
    begin, _ = session.run("BEGIN")
    insert, _ = session.run("INSERT INTO t () VALUES ()")
    commit, _ = session.run("COMMIT")
    assert begin.status_flags & IN_TRANS and insert.status_flags & IN_TRANS
    assert insert.last_insert_id > 0
    assert not commit.status_flags & IN_TRANS


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SET @u = 1", PinReason.USER_VARIABLE),
        ("SELECT @v := 2", PinReason.USER_VARIABLE),
        ("CREATE TEMPORARY TABLE tt (a INT)", PinReason.TEMPORARY_TABLE),
        ("SELECT GET_LOCK('p6state', 0)", PinReason.GET_LOCK),
        ("LOCK TABLES t READ", PinReason.LOCK_TABLES),
        ("FLUSH TABLES WITH READ LOCK", PinReason.READ_LOCK),
        ("PREPARE s FROM 'SELECT 1'", PinReason.SQL_PREPARE),
        ("SET SESSION sql_log_bin = 0", PinReason.UNTRACKED_VARIABLE),
        ("DO 1 /* nothing */; SET SESSION foreign_key_checks = 0", PinReason.UNTRACKED_VARIABLE),
    ],
)
def test_the_model_pins_what_it_cannot_carry(session, sql, reason):
    state = SessionState(Settings())
    end, _ = session.run(sql)
    if end.error_code == 1064:  # no multi-statements on this login: the SET alone
        end, _ = session.run(sql.split("; ")[1])
    assert state.observe(end, text_pin_reason(b"\x03" + sql.encode())) == [reason]
    assert not state.may_give_back(end)
    session.run("UNLOCK TABLES")


def test_the_model_carries_tracked_variables_and_releases(session):
    state = SessionState(Settings())
    for sql in ["SET SESSION time_zone = '+03:00'", "SET NAMES utf8mb4", f"USE {DATABASE}"]:
        end, _ = session.run(sql)
        assert state.observe(end, text_pin_reason(b"\x03" + sql.encode())) == []
        assert state.may_give_back(end)
    assert state.wanted.schema == DATABASE
    assert state.wanted.variables["time_zone"] == "+03:00"


def test_a_replay_gives_another_connection_the_same_values(stack, session):
    statements = [
        "SET NAMES latin1",
        "SET SESSION collation_connection = 'latin1_bin'",
        "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES'",
        "SET SESSION time_zone = '-04:30'",
        "SET SESSION character_set_results = NULL",
        "SET SESSION max_statement_time = 2.5",
        "SET SESSION wait_timeout = 321",
        "SET autocommit = 0",
        "SET SESSION tx_isolation = 'SERIALIZABLE'",
        "USE mysql",
    ]
    state = SessionState(Settings())
    for sql in statements:
        state.observe(session.run(sql)[0])
    names = sorted(state.wanted.variables)
    expected = stack.admin_connect(stack.proxy_writer)
    target = stack.admin_connect(stack.proxy_writer)
    try:
        with expected.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
        with target.cursor() as cursor:
            cursor.execute("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")  # escaping follows it
            for payload in replay(
                state.wanted, TrackedState(variables={"sql_mode": "NO_BACKSLASH_ESCAPES"})
            ):
                if payload[0] == Command.COM_INIT_DB:
                    target.select_db(payload[1:].decode())
                else:
                    cursor.execute(payload[1:].decode())
        query = "SELECT DATABASE(), " + ", ".join(f"@@session.{n}" for n in names)
        rows = []
        for connection in (expected, target):
            with connection.cursor() as cursor:
                cursor.execute(query)
                rows.append(cursor.fetchone())
        assert rows[1] == rows[0]
    finally:
        expected.close()
        target.close()
