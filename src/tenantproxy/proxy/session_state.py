"""Session state for transaction multiplexing (issue 9 items 2-4): what a client's session wants,
what a backend is in, when a backend may go back, what pins a client, and the replay that makes a
backend match a client.

Sans-IO. State is learnt from what MariaDB reports in its OK packets (``ResponseEnd`` records of
the response tracker, decoded with ``session_track``), armed on every backend by
``ARMING_STATEMENT``.
docs/multiplexing.md has the table of what MariaDB 10.11 reports for each statement; two things it
does not report at all (``GET_LOCK`` and a user variable assigned inside a SELECT) are the only ones
taken from the statement's text (``text_pin_reason``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from tenantproxy.wire.mysql.constants import Command, ServerStatus
from tenantproxy.wire.mysql.response_tracker import ResponseEnd
from tenantproxy.wire.mysql.session_track import (
    Schema,
    StateChange,
    SystemVariable,
    TransactionCharacteristics,
    TransactionState,
    session_entries,
)

# Run by the proxy on every backend after connect and after every reset; its answer is the
# proxy's own. Transaction info (CHARACTERISTICS, which includes STATE) is what shows LOCK TABLES
# and a pending SET TRANSACTION: without it MariaDB reports neither.
ARMING_STATEMENT = (
    "SET SESSION session_track_schema = ON, session_track_state_change = ON,"
    " session_track_system_variables = '*', session_track_transaction_info = 'CHARACTERISTICS'"
)

# Carried from backend to backend: RDS Proxy's list (../shared/REFERENCE.md) with MariaDB's names
# (10.11 has only tx_isolation / tx_read_only; the transaction_* names are MySQL's and 11.1's).
TRACKED_VARIABLES = frozenset(
    {
        "autocommit",
        "auto_increment_increment",
        "auto_increment_offset",
        "character_set_client",
        "character_set_connection",
        "character_set_database",
        "character_set_results",
        "character_set_server",
        "collation_connection",
        "collation_database",
        "collation_server",
        "interactive_timeout",
        "max_statement_time",
        "net_read_timeout",
        "net_write_timeout",
        "query_cache_type",
        "sql_mode",
        "time_zone",
        "transaction_isolation",
        "transaction_read_only",
        "tx_isolation",
        "tx_read_only",
        "wait_timeout",
    }
)
# Reported but not session settings: last_gtid comes with every write.
IGNORED_VARIABLES = frozenset({"last_gtid"})
# A client that changes these would blind the proxy's tracking.
TRACKING_VARIABLES = frozenset(
    {
        "session_track_schema",
        "session_track_state_change",
        "session_track_system_variables",
        "session_track_transaction_info",
    }
)
# Setting one of a pair changes the other without MariaDB reporting it (SET NAMES x COLLATE y
# reports the character sets only): when one differs, both are replayed in the client's order.
_COUPLED = (
    ("character_set_connection", "collation_connection"),
    ("character_set_database", "collation_database"),
    ("character_set_server", "collation_server"),
)
_PARTNER = {a: b for pair in _COUPLED for a, b in (pair, pair[::-1])}
_COLLATIONS = frozenset(collation for _, collation in _COUPLED)
_NO_TRANSACTION = "________"
_LOCKED_TABLES = 7  # TRANSACTION_STATE's 8th character: L while LOCK TABLES holds
_BLOCKING_FLAGS = (
    ServerStatus.SERVER_STATUS_IN_TRANS
    | ServerStatus.SERVER_MORE_RESULTS_EXISTS
    | ServerStatus.SERVER_STATUS_CURSOR_EXISTS
)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# SET NAMES reports the character sets it changed but not collation_connection, which it sets
# too: to the COLLATE it names, else to the character set's default collation.
_SET_NAMES = re.compile(rb"\W*SET\s+NAMES\b", re.I)
_COLLATE = re.compile(rb"\bCOLLATE\s*=?\s*['\"`]?([A-Za-z0-9_]+)", re.I)
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class PinReason(enum.Enum):
    """Why a client keeps its backend; the values are the Prometheus label."""

    STATE_CHANGE = "state_change"  # reported, explained by no tracked variable or schema
    USER_VARIABLE = "user_variable"
    TEMPORARY_TABLE = "temporary_table"
    SQL_PREPARE = "sql_prepare"
    GET_LOCK = "get_lock"
    LOCK_TABLES = "lock_tables"
    READ_LOCK = "read_lock"  # FLUSH TABLES WITH READ LOCK
    UNTRACKED_VARIABLE = "untracked_variable"
    SESSION_TRACKING = "session_tracking"
    SCHEMA_DROPPED = "schema_dropped"


@dataclass(frozen=True, slots=True)
class Settings:
    # ProxySQL's auto_increment_delay_multiplex: responses after one with a last insert id that
    # keep the backend, so SELECT LAST_INSERT_ID() runs where the INSERT did.
    last_insert_id_hold_statements: int = 5
    # RDS Proxy's SessionPinningFilters = ["EXCLUDE_VARIABLE_SETS"]: untracked variables never
    # pin (and are not carried: the client's risk, as in RDS Proxy).
    exclude_variable_sets: bool = False


@dataclass(slots=True)
class TrackedState:
    """A schema and system variables; dict order is the order they were last set."""

    schema: str | None = None
    variables: dict[str, str] = field(default_factory=dict)

    def set_variable(self, name: str, value: str) -> None:
        self.variables.pop(name, None)
        self.variables[name] = value

    def copy(self) -> TrackedState:
        return TrackedState(self.schema, dict(self.variables))


# -- statement text: only what MariaDB does not report ------------------------------------

_TEXT_HINTS = (
    (re.compile(rb"\bGET_LOCK\s*\(", re.I), PinReason.GET_LOCK),
    (re.compile(rb"\bFLUSH\s+TABLES?\b.*\bREAD\s+LOCK\b", re.I | re.S), PinReason.READ_LOCK),
    (re.compile(rb"@[\w$.]+\s*:=|\bINTO\s+@", re.I), PinReason.USER_VARIABLE),
    (re.compile(rb"^\W*SET\b[^;]*(?<!@)@(?!@)", re.I | re.S), PinReason.USER_VARIABLE),
    (re.compile(rb"\bCREATE\s+(OR\s+REPLACE\s+)?TEMPORARY\b", re.I), PinReason.TEMPORARY_TABLE),
    (re.compile(rb"^\W*(PREPARE|EXECUTE|DEALLOCATE)\b", re.I), PinReason.SQL_PREPARE),
)
# Pins even when MariaDB reports nothing (a false match only pins, which is safe).
_UNREPORTED = frozenset({PinReason.GET_LOCK, PinReason.READ_LOCK, PinReason.USER_VARIABLE})


def text_pin_reason(payload: bytes) -> PinReason | None:
    """A COM_QUERY's likely pin reason: names a reported state change, and pins the statements
    MariaDB does not report (GET_LOCK, FLUSH TABLES WITH READ LOCK, SELECT @v := / INTO @v)."""
    if not payload or payload[0] != Command.COM_QUERY:
        return None
    sql = payload[1:4097]  # bounded cost; RDS Proxy pins longer statements anyway
    for pattern, reason in _TEXT_HINTS:
        if pattern.search(sql):
            return reason
    return None


class SessionState:
    """One client session: the state it wants, its pins and what holds its backend now."""

    def __init__(self, settings: Settings, wanted: TrackedState | None = None) -> None:
        self.settings = settings
        self.wanted = wanted or TrackedState()
        self.pins: set[PinReason] = set()
        self.transaction_state = _NO_TRANSACTION
        self.transaction_characteristics = ""
        # SERVER_STATUS_IN_TRANS of the last response: an EOF packet (a result set's end for a
        # client without CLIENT_DEPRECATE_EOF) has the flag but no session-state tracking, so
        # a transaction that a SELECT opened with autocommit = 0 shows only here.
        self._is_server_in_transaction = False
        self._hold_left = 0

    @property
    def is_pinned(self) -> bool:
        return bool(self.pins)

    @property
    def is_in_transaction(self) -> bool:
        """A transaction is open (or its characteristics are set for the next one), as the
        server's session tracking or the last response's status flags reported."""
        return bool(
            self.transaction_state.strip("_")
            or self.transaction_characteristics
            or self._is_server_in_transaction
        )

    def observe(
        self, end: ResponseEnd, hint: PinReason | None = None, statement: bytes = b""
    ) -> list[PinReason]:
        """Learns from one response's end; returns the pins it added (for the counters).
        ``hint`` is ``text_pin_reason`` of the command it answered, ``statement`` that
        command's first bytes (a COM_QUERY's)."""
        before = set(self.pins)
        self._is_server_in_transaction = bool(
            end.status_flags & ServerStatus.SERVER_STATUS_IN_TRANS
        )
        if end.last_insert_id:
            self._hold_left = self.settings.last_insert_id_hold_statements
        elif self._hold_left:
            self._hold_left -= 1
        for ok in end.state_change_oks:
            self._observe_ok(ok, hint)
        if end.state_change_oks and end.error_code is None:
            self._collation_of_set_names(statement)
        if hint in _UNREPORTED and end.error_code is None:
            self.pins.add(hint)
        return [reason for reason in PinReason if reason in self.pins - before]

    def _observe_ok(self, ok: bytes, hint: PinReason | None) -> None:
        is_changed = is_explained = False
        for entry in session_entries(ok):
            if isinstance(entry, StateChange):
                is_changed = is_changed or entry.is_changed
            elif isinstance(entry, Schema):
                is_explained = True
                self._schema_reported(entry.name)
            elif isinstance(entry, SystemVariable):
                is_explained = self._variable_reported(entry) or is_explained
            elif isinstance(entry, TransactionState):
                self.transaction_state = entry.state
                self._lock_tables_reported(entry.state)
            elif isinstance(entry, TransactionCharacteristics):
                self.transaction_characteristics = entry.sql
        if is_changed and not is_explained:
            self.pins.add(hint if hint is not None else PinReason.STATE_CHANGE)

    def _collation_of_set_names(self, statement: bytes) -> None:
        if statement[:1] != bytes((Command.COM_QUERY,)) or not _SET_NAMES.match(statement, 1):
            return
        collate = _COLLATE.search(statement, 1)
        if collate is not None:
            self.wanted.set_variable("collation_connection", collate.group(1).decode().lower())
        else:  # the default collation of the character set, which replay selects by naming it
            self.wanted.variables.pop("collation_connection", None)

    @property
    def is_holding_last_insert_id(self) -> bool:
        return self._hold_left > 0

    def end_last_insert_id_hold(self) -> None:
        """The client did not read its last insert id in time (last_insert_id_hold_timeout_s)."""
        self._hold_left = 0

    def _schema_reported(self, name: str) -> None:
        if name:
            self.wanted.schema = name
        elif self.wanted.schema is not None:  # DROP DATABASE of the current one: no COM_INIT_DB
            self.pins.add(PinReason.SCHEMA_DROPPED)  # can restore "no database"

    def _variable_reported(self, entry: SystemVariable) -> bool:
        """Records a variable; True when it explains a state change."""
        name = entry.name.lower()
        if name in IGNORED_VARIABLES:
            return False
        if name in TRACKED_VARIABLES:
            self.wanted.set_variable(name, entry.value)
        elif name in TRACKING_VARIABLES:
            self.pins.add(PinReason.SESSION_TRACKING)
        elif not self.settings.exclude_variable_sets:
            self.pins.add(PinReason.UNTRACKED_VARIABLE)
        return True

    def _lock_tables_reported(self, state: str) -> None:
        # Not a lasting pin: the backend may go once UNLOCK TABLES (or the end of the
        # transaction) clears the flag.
        if len(state) > _LOCKED_TABLES and state[_LOCKED_TABLES] == "L":
            self.pins.add(PinReason.LOCK_TABLES)
        else:
            self.pins.discard(PinReason.LOCK_TABLES)

    def may_give_back(
        self, end: ResponseEnd, *, open_cursors: int = 0, local_infile: bool = False
    ) -> bool:
        """Whether the backend may go back after this response (``observe`` it first)."""
        return not (
            end.status_flags & _BLOCKING_FLAGS
            or open_cursors
            or local_infile
            or self.pins
            or self._hold_left
            or self.is_in_transaction
        )


# -- replay ----------------------------------------------------------------------------------


def replay(wanted: TrackedState, backend: TrackedState) -> list[bytes]:
    """Command payloads that make ``backend`` match ``wanted``: COM_INIT_DB and one SET SESSION
    (none when equal). A variable the backend has and the client never set goes back to DEFAULT
    (the global value: seed ``wanted`` with the character sets the client logged in with)."""
    payloads = []
    if wanted.schema is not None and wanted.schema != backend.schema:
        payloads.append(
            bytes((Command.COM_INIT_DB,)) + wanted.schema.encode("utf-8", "surrogateescape")
        )
    assignments = _assignments(wanted, backend)
    if assignments:
        no_backslash = "NO_BACKSLASH_ESCAPES" in backend.variables.get("sql_mode", "").upper()
        parts = [f"{name} = {_literal(name, value, no_backslash)}" for name, value in assignments]
        sql = "SET SESSION " + ", ".join(parts)
        payloads.append(bytes((Command.COM_QUERY,)) + sql.encode("utf-8", "surrogateescape"))
    return payloads


def _assignments(wanted: TrackedState, backend: TrackedState) -> list[tuple[str, str | None]]:
    changed = {n for n, v in wanted.variables.items() if backend.variables.get(n) != v}
    changed |= {_PARTNER[n] for n in changed if n in _PARTNER and _PARTNER[n] in wanted.variables}
    # A collation the client left to its character set (SET NAMES without COLLATE): assigning
    # the character set selects its default collation; DEFAULT would select the global one.
    follows = {
        n
        for n in backend.variables
        if n in _COLLATIONS and n not in wanted.variables and _PARTNER[n] in wanted.variables
    }
    changed |= {_PARTNER[n] for n in follows}
    defaults: list[tuple[str, str | None]] = [
        (n, None) for n in backend.variables if n not in wanted.variables and n not in follows
    ]
    # DEFAULTs first: an explicit value of a coupled pair must come after them.
    return defaults + [(n, v) for n, v in wanted.variables.items() if n in changed]


def _literal(name: str, value: str | None, no_backslash_escapes: bool) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a system variable name: {name!r}")
    if value is None:
        return "DEFAULT"
    if value == "" and name == "character_set_results":
        return "NULL"  # MariaDB reports NULL as ''
    if _NUMBER.fullmatch(value):
        return value  # a quoted number is refused (ERROR 1232) for integer variables
    escaped = value.replace("'", "''")
    if not no_backslash_escapes:
        escaped = escaped.replace("\\", "\\\\")
    return f"'{escaped}'"


def adopt(backend: TrackedState, wanted: TrackedState) -> None:
    """The backend's state once a ``replay`` of ``wanted`` succeeded."""
    if wanted.schema is not None:
        backend.schema = wanted.schema
    backend.variables = dict(wanted.variables)
