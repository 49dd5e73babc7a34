"""The session-state model: learning from OK packets, pins, the give-back decision, the replay."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.proxy.session_state import (
    PinReason,
    SessionState,
    Settings,
    TrackedState,
    adopt,
    replay,
    text_pin_reason,
)
from tenantproxy.wire.mysql.constants import CapabilityFlags, ServerStatus
from tenantproxy.wire.mysql.response_tracker import ResponseEnd
from tenantproxy.wire.mysql.responses import OkPacket
from tenantproxy.wire.mysql.session_track import (
    Entry,
    Schema,
    StateChange,
    SystemVariable,
    TransactionCharacteristics,
    TransactionState,
    encode_entry,
)

AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT
CHANGED = StateChange(True)
TRACKING = CapabilityFlags.CLIENT_PROTOCOL_41 | CapabilityFlags.CLIENT_SESSION_TRACK


def ok_end(*entries: Entry, status: int = AUTOCOMMIT, last_insert_id: int = 0) -> ResponseEnd:
    if not entries:
        return ResponseEnd(status, last_insert_id=last_insert_id)
    flags = ServerStatus(status | ServerStatus.SERVER_SESSION_STATE_CHANGED)
    info = b"".join(encode_entry(e) for e in entries)
    ok = OkPacket(status_flags=flags, session_state_info=info).encode(TRACKING)
    return ResponseEnd(int(flags), None, True, (ok,), None, last_insert_id)


def query(sql: str) -> bytes:
    return b"\x03" + sql.encode()


def test_a_tracked_variable_is_carried_not_pinned():
    state = SessionState(Settings())
    end = ok_end(SystemVariable("time_zone", "+02:00"), CHANGED)
    assert state.observe(end, text_pin_reason(query("SET time_zone = '+02:00'"))) == []
    assert state.wanted.variables == {"time_zone": "+02:00"}
    assert state.may_give_back(end)


def test_an_unexplained_state_change_pins_with_the_hint_or_a_generic_reason():
    state = SessionState(Settings())
    assert state.observe(ok_end(CHANGED), PinReason.TEMPORARY_TABLE) == [PinReason.TEMPORARY_TABLE]
    assert SessionState(Settings()).observe(ok_end(CHANGED)) == [PinReason.STATE_CHANGE]
    # last_gtid comes with every write and explains nothing (CREATE TEMPORARY TABLE's answer)
    gtid = ok_end(SystemVariable("last_gtid", "0-1-5"), CHANGED)
    assert SessionState(Settings()).observe(gtid) == [PinReason.STATE_CHANGE]
    assert not state.may_give_back(ok_end())


def test_a_write_reports_last_gtid_without_a_state_change_and_does_not_pin():
    state = SessionState(Settings())
    assert state.observe(ok_end(SystemVariable("last_gtid", "0-1-5"))) == []
    assert state.wanted.variables == {}


def test_untracked_variables_pin_unless_variable_sets_are_excluded():
    end = ok_end(SystemVariable("sql_log_bin", "OFF"), CHANGED)
    assert SessionState(Settings()).observe(end) == [PinReason.UNTRACKED_VARIABLE]
    excluded = SessionState(Settings(exclude_variable_sets=True))
    assert excluded.observe(end) == []
    assert excluded.may_give_back(end)
    tracking = ok_end(SystemVariable("session_track_schema", "OFF"), CHANGED)
    assert SessionState(Settings(exclude_variable_sets=True)).observe(tracking) == [
        PinReason.SESSION_TRACKING
    ]


def test_statements_mariadb_does_not_report_pin_from_their_text_only_when_they_succeed():
    for sql, reason in [
        ("SELECT GET_LOCK('a', 1)", PinReason.GET_LOCK),
        ("select 1 into @x", PinReason.USER_VARIABLE),
        ("SELECT @n := @n + 1", PinReason.USER_VARIABLE),
        ("FLUSH TABLES WITH READ LOCK", PinReason.READ_LOCK),
    ]:
        assert text_pin_reason(query(sql)) is reason
        assert SessionState(Settings()).observe(ok_end(), reason) == [reason]
        failed = ResponseEnd(AUTOCOMMIT, error_code=1064)
        assert SessionState(Settings()).observe(failed, reason) == []


def test_system_variables_in_text_are_not_user_variables():
    assert text_pin_reason(query("SET @@session.wait_timeout = 5")) is None
    assert text_pin_reason(query("SELECT @@version")) is None
    assert text_pin_reason(query("UNLOCK TABLES")) is None
    assert text_pin_reason(query("SET @a = 1, @@sql_mode = ''")) is PinReason.USER_VARIABLE
    assert text_pin_reason(b"\x16SELECT GET_LOCK('a', 1)") is None  # only COM_QUERY


def test_lock_tables_holds_until_the_tables_are_unlocked():
    state = SessionState(Settings())
    locked = ok_end(TransactionState("_______L"))
    assert state.observe(locked) == [PinReason.LOCK_TABLES]
    assert not state.may_give_back(locked)
    unlocked = ok_end(TransactionState("________"))
    assert state.observe(unlocked) == []
    assert state.may_give_back(unlocked)


def test_pending_transaction_characteristics_hold_the_backend():
    state = SessionState(Settings())
    pending = ok_end(TransactionCharacteristics("SET TRANSACTION READ ONLY;"))
    state.observe(pending)
    assert not state.may_give_back(pending)
    done = ok_end(TransactionState("________"), TransactionCharacteristics(""))
    state.observe(done)
    assert state.may_give_back(done)


def test_status_flags_cursors_and_local_infile_hold_the_backend():
    state = SessionState(Settings())
    for flag in (
        ServerStatus.SERVER_STATUS_IN_TRANS,
        ServerStatus.SERVER_MORE_RESULTS_EXISTS,
        ServerStatus.SERVER_STATUS_CURSOR_EXISTS,
    ):
        assert not state.may_give_back(ok_end(status=AUTOCOMMIT | flag))
    assert not state.may_give_back(ok_end(), open_cursors=1)
    assert not state.may_give_back(ok_end(), local_infile=True)
    assert state.may_give_back(ok_end(status=0))  # autocommit off, no transaction open


def test_a_transaction_shown_only_by_the_status_flags_is_one():
    # A SELECT with autocommit = 0, answered to a client without CLIENT_DEPRECATE_EOF: its
    # EOF has SERVER_STATUS_IN_TRANS and no session tracking. A client leaving now must get
    # its backend reset (Multiplexer.end), or its locks stay on the idle backend.
    state = SessionState(Settings())
    in_transaction = ResponseEnd(int(ServerStatus.SERVER_STATUS_IN_TRANS))
    state.observe(in_transaction)
    assert state.is_in_transaction
    assert not state.may_give_back(in_transaction)
    state.observe(ResponseEnd(0))  # COMMIT's OK
    assert not state.is_in_transaction


def test_a_last_insert_id_holds_the_backend_for_the_next_statements():
    state = SessionState(Settings(last_insert_id_hold_statements=2))
    insert = ok_end(last_insert_id=7)
    state.observe(insert)
    assert not state.may_give_back(insert)
    state.observe(ok_end())
    assert not state.may_give_back(ok_end())
    state.observe(ok_end())
    assert state.may_give_back(ok_end())
    assert SessionState(Settings(last_insert_id_hold_statements=0)).may_give_back(insert)


def test_the_last_insert_id_hold_can_be_ended_by_its_timeout():
    state = SessionState(Settings(last_insert_id_hold_statements=5))
    state.observe(ok_end(last_insert_id=7))
    assert state.is_holding_last_insert_id
    state.end_last_insert_id_hold()
    assert not state.is_holding_last_insert_id
    assert state.may_give_back(ok_end())


def _utf8_session() -> SessionState:
    baseline = {"character_set_connection": "utf8mb4", "collation_connection": "utf8mb4_bin"}
    return SessionState(Settings(), TrackedState(None, dict(baseline)))


def test_set_names_with_collate_records_the_collation_mariadb_does_not_report():
    state = _utf8_session()
    names = ok_end(SystemVariable("character_set_connection", "latin1"), CHANGED)
    assert state.observe(names, None, query("SET NAMES latin1 COLLATE 'latin1_bin'")) == []
    assert state.wanted.variables["collation_connection"] == "latin1_bin"
    assert state.wanted.variables["character_set_connection"] == "latin1"


def test_set_names_without_collate_leaves_the_collation_to_the_character_set():
    state = _utf8_session()
    names = ok_end(SystemVariable("character_set_connection", "latin1"), CHANGED)
    state.observe(names, None, query("set names latin1"))
    assert "collation_connection" not in state.wanted.variables
    backend = TrackedState(
        variables={"character_set_connection": "latin1", "collation_connection": "latin1_bin"}
    )
    # Naming the character set again selects its default collation (DEFAULT would select the
    # server's global collation, of another character set).
    assert replay(state.wanted, backend) == [b"\x03SET SESSION character_set_connection = 'latin1'"]


def test_dropping_the_current_schema_pins():
    state = SessionState(Settings())
    state.observe(ok_end(Schema("db1"), CHANGED))
    assert state.wanted.schema == "db1"
    assert state.observe(ok_end(Schema(""))) == [PinReason.SCHEMA_DROPPED]


def test_replay_is_empty_when_equal_and_carries_schema_then_one_set():
    wanted = TrackedState("app", {"time_zone": "+02:00", "wait_timeout": "100"})
    assert replay(wanted, wanted.copy()) == []
    payloads = replay(wanted, TrackedState("other", {"wait_timeout": "100", "sql_mode": "ANSI"}))
    assert payloads == [b"\x02app", b"\x03SET SESSION sql_mode = DEFAULT, time_zone = '+02:00'"]


def test_replay_literals_quote_escape_and_keep_numbers_bare():
    wanted = TrackedState(
        None,
        {
            "sql_mode": "it's\\",
            "max_statement_time": "10.000000",
            "character_set_results": "",
            "auto_increment_offset": "-1",
        },
    )
    (payload,) = replay(wanted, TrackedState())
    assert payload == (
        b"\x03SET SESSION sql_mode = 'it''s\\\\', max_statement_time = 10.000000,"
        b" character_set_results = NULL, auto_increment_offset = -1"
    )
    no_backslash = TrackedState(variables={"sql_mode": "NO_BACKSLASH_ESCAPES"})
    (payload,) = replay(TrackedState(None, {"time_zone": "a\\b"}), no_backslash)
    assert payload.endswith(b"time_zone = 'a\\b'")


def test_replay_sends_both_of_a_coupled_pair_in_the_clients_order():
    wanted = TrackedState()
    wanted.set_variable("character_set_connection", "latin1")
    wanted.set_variable("collation_connection", "latin1_bin")
    backend = TrackedState(
        variables={"character_set_connection": "utf8mb4", "collation_connection": "latin1_bin"}
    )
    (payload,) = replay(wanted, backend)
    assert payload == (
        b"\x03SET SESSION character_set_connection = 'latin1', collation_connection = 'latin1_bin'"
    )


@given(
    st.dictionaries(
        st.sampled_from(["time_zone", "sql_mode", "wait_timeout", "tx_isolation"]),
        st.text(min_size=1),
    ),
    st.dictionaries(
        st.sampled_from(["time_zone", "sql_mode", "wait_timeout", "tx_isolation"]),
        st.text(min_size=1),
    ),
)
def test_after_adopting_a_replay_there_is_nothing_left_to_replay(wanted_vars, backend_vars):
    wanted = TrackedState("db", wanted_vars)
    backend = TrackedState(None, backend_vars)
    payloads = replay(wanted, backend)
    assert all(p[:1] in (b"\x02", b"\x03") for p in payloads)
    assert len(payloads) <= 2
    adopt(backend, wanted)
    assert replay(wanted, backend) == []
