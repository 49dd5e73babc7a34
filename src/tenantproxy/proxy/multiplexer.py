"""Transaction multiplexing for one client session (pool_mode = "transaction").

The client holds a backend only while it needs one: a command that finds none attached leases
one (``attach_now``: the pool's idle backend at once, else a lease in the background while the
client's bytes wait in the relay), and the backend goes back at the end of the response after
which nothing holds it (``SessionState.may_give_back``: no transaction, no more results, no
cursor, no LOCAL INFILE, no pin, no last insert id still to be read).

What the client's session wants (schema, tracked variables) is learnt from the server's session
tracking (session_state.py) and replayed on the next backend, pipelined ahead of the client's
command with its answers hidden (ResponseEditor). State that cannot be carried pins the session
to its backend until it logs out, counted per tenant and reason. Binary prepared statements do
not pin: the relay routes them (statement_routing.py) and this multiplexer tells the registry
how each response ended.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.leasing import HeldBackend, LeaseRefused, give_back, lease_backend
from tenantproxy.proxy.session_state import (
    PinReason,
    SessionState,
    Settings,
    TrackedState,
    adopt,
    replay,
    text_pin_reason,
)
from tenantproxy.proxy.statement_routing import LazyPrepare, SessionStatements
from tenantproxy.wire.mysql.constants import Command
from tenantproxy.wire.mysql.response_editor import REPLAY, Hidden, ResponseEditor

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenantproxy.config import EndpointConfig
    from tenantproxy.proxy.backends import BackendConnection, BackendProfile
    from tenantproxy.proxy.mysql_errors import MysqlError
    from tenantproxy.proxy.relay import Relay
    from tenantproxy.proxy.server import ProxyContext
    from tenantproxy.wire.mysql.response_tracker import ResponseEnd

# Commands the server does not answer: no response end to learn from.
_UNANSWERED = frozenset((Command.COM_QUIT, Command.COM_STMT_CLOSE, Command.COM_STMT_SEND_LONG_DATA))
# Responses the prepared-statement registry learns from (ids, cursors, a reset).
_STATEMENT_ENDS = frozenset(
    (
        Command.COM_STMT_PREPARE,
        Command.COM_STMT_EXECUTE,
        Command.COM_STMT_FETCH,
        Command.COM_RESET_CONNECTION,
    )
)
# The first bytes of a statement that session_state reads (SET NAMES ... COLLATE).
_STATEMENT_START = 256


def session_settings(context: ProxyContext) -> Settings:
    config = context.config
    return Settings(
        last_insert_id_hold_statements=config.last_insert_id_hold_statements,
        exclude_variable_sets="EXCLUDE_VARIABLE_SETS" in config.session_pinning_filters,
    )


class Multiplexer:
    """Leases and gives back the backends of one session, and keeps its state between them."""

    def __init__(
        self,
        context: ProxyContext,
        endpoint: EndpointConfig,
        db_user: str,
        profile: BackendProfile,
        *,
        is_client_tracking: bool,
        on_failure: Callable[[MysqlError], None],
    ) -> None:
        self._context = context
        self._endpoint = endpoint
        self._db_user = db_user
        self._profile = profile
        self._is_client_tracking = is_client_tracking
        self._on_failure = on_failure
        self._check_after_idle_s = context.config.backend_check_after_idle_s
        self.state = SessionState(session_settings(context))
        self.statements = SessionStatements(
            context.config.backend_statement_cache_size, lambda: self.state.wanted.schema
        )
        self.held: HeldBackend | None = None
        self.relay: Relay | None = None
        # Per command sent and not yet answered: (command byte, its pin hint, its first bytes).
        self._sent: deque[tuple[int, PinReason | None, bytes]] = deque()
        self._hold_timeout_s = context.config.last_insert_id_hold_timeout_s
        self._hold_timer: asyncio.TimerHandle | None = None
        self._is_leasing = False
        # Set while the session answers a command itself: the backend stays attached.
        self.is_held_by_session = False
        self._is_state_changed = False
        self._needs_reset = False
        # Resends of unanswered commands after a backend's death (retries_on_backend_loss),
        # left until the next answer the client sees.
        self._retries = context.config.retries_on_backend_loss
        self._resends_left = self._retries

    @property
    def is_pinned(self) -> bool:
        return self.state.is_pinned

    @property
    def is_in_transaction(self) -> bool:
        return self.held is not None and not self.state.is_pinned

    def start(self, held: HeldBackend, relay: Relay, schema: str | None) -> None:
        """After the login (or COM_CHANGE_USER): the session's state is a fresh backend's on
        its database; ``held`` (the login's backend) is attached, and goes back at once."""
        baseline = held.connection.baseline
        self.state = SessionState(self.state.settings, TrackedState(schema, dict(baseline)))
        self.relay = relay
        self._attach(held)
        self.give_back_if_idle()

    # -- leasing a backend --------------------------------------------------------------------

    def attach_now(self) -> bool:
        """A backend for the client's next command: True when one is attached now. Otherwise
        one is leased in the background and the relay's waiting bytes go on once it is."""
        if self.held is not None:
            return True
        held = self._lease_idle()
        if held is not None:
            self._attach(held)
            return True
        if not self._is_leasing:
            self._is_leasing = True
            self._context.spawn(self._lease())
        return False

    def _lease_idle(self) -> HeldBackend | None:
        """The pool's idle backend, without an await; None when a lease must do more (no idle
        backend, one idle long enough to need a ping, no healthy target)."""
        context = self._context
        target = context.router.pick(self._endpoint.role)
        if target is None:
            return None
        pool = context.pools.pool_for(target, self._db_user, self._current_profile())
        lease = pool.lease_idle()
        if lease is None:
            return None
        if time.monotonic() - lease.connection.last_given_back_at >= self._check_after_idle_s:
            pool.give_back_clean(lease)  # lease_backend pings it first
            return None
        target.active_leases += 1
        return HeldBackend(lease, pool, target)

    async def _lease(self) -> None:
        try:
            held = await lease_backend(
                self._context,
                self._endpoint,
                self._db_user,
                self._current_profile(),
                self.state.wanted.schema,
            )
        except LeaseRefused as refused:
            self._on_failure(refused.error)
            return
        except Exception:
            # A bug below must not leave the client waiting forever for its answer.
            self._context.log.exception("lease for %s failed unexpectedly", self._db_user)
            self._on_failure(mysql_errors.backend_unavailable(self._endpoint.name))
            return
        finally:
            self._is_leasing = False
        relay = self.relay
        if relay is None or self.held is not None:  # the session ended meanwhile
            give_back(self._context, held, is_reusable=not held.connection.is_broken)
            return
        self._attach(held)
        relay.go_on()

    def _current_profile(self) -> BackendProfile:
        # A client without a database gets backends that have none; once it has chosen one,
        # backends of the pool with databases (COM_INIT_DB moves them to its schema).
        return self._profile.with_database(self.state.wanted.schema is not None)

    def _attach(self, held: HeldBackend) -> None:
        relay = self.relay
        assert relay is not None
        backend = held.connection
        editor = backend.editor
        if editor is None:
            editor = backend.editor = ResponseEditor(
                backend.negotiated_capabilities, is_client_tracking=self._is_client_tracking
            )
        else:
            editor.set_client_tracking(self._is_client_tracking)
        self.held = held
        relay.attach(backend, editor)
        wanted = self.state.wanted
        if backend.state != wanted:
            relay.send_hidden(replay(wanted, backend.state))
            adopt(backend.state, wanted)

    # -- what the relay tells ---------------------------------------------------------------

    def command_sent(self, payload: bytes) -> None:
        command = payload[0]
        if command in _UNANSWERED:
            return
        hint = text_pin_reason(payload) if command == Command.COM_QUERY else None
        self._sent.append((command, hint, payload[:_STATEMENT_START]))

    def responses_ended(self, ends: list[ResponseEnd]) -> None:
        last = None
        held = self.held
        assert held is not None
        backend = held.connection
        reasons = iter(backend.editor.hidden_reasons if backend.editor is not None else ())
        for end in ends:
            if end.is_hidden:
                if not self._hidden_ended(end, next(reasons, REPLAY), backend):
                    return
                continue
            command, hint, start = self._sent.popleft() if self._sent else (0, None, b"")
            self._resends_left = self._retries
            if command in _STATEMENT_ENDS:
                self.statements.response_ended(command, start, end, backend)
            self._count_pins(self.state.observe(end, hint, start))
            if end.is_state_changed:
                self._is_state_changed = True
            if command == Command.COM_RESET_CONNECTION and end.error_code is None:
                self._session_was_reset()
            last = end
        if last is None:
            return
        if self._hold_yields(held, last):
            self.state.end_last_insert_id_hold()
        if self.state.may_give_back(last):
            self.give_back_if_idle()
        elif self.state.is_holding_last_insert_id and self._hold_timer is None:
            self._hold_timer = asyncio.get_running_loop().call_later(
                self._hold_timeout_s, self._last_insert_id_hold_expired
            )

    def _hold_yields(self, held: HeldBackend, last: ResponseEnd) -> bool:
        """Whether the last-insert-id hold ends now, because other clients wait for a backend
        of the pool and the hold has served one response since the insert (enough for INSERT;
        SELECT LAST_INSERT_ID()). Renewed by every insert, a longer hold would keep the backend
        forever from the waiters of a client that inserts in every transaction (sysbench
        oltp_read_write: INSERT, COMMIT, BEGIN, ... INSERT)."""
        return (
            self.state.is_holding_last_insert_id
            and not last.last_insert_id
            and held.pool.has_waiters
        )

    def _hidden_ended(self, end: ResponseEnd, hidden: Hidden, backend: BackendConnection) -> bool:
        """A response the client does not see ended; False when the session cannot go on."""
        if isinstance(hidden.reason, LazyPrepare):
            # Failed, its ERR went to the client in place of its command's answer.
            self.statements.lazy_prepare_ended(hidden.reason, end, backend)
        elif hidden is REPLAY and end.error_code is not None:
            self._replay_failed(end.error_code)
            return False
        return True

    def _last_insert_id_hold_expired(self) -> None:
        # A client that never reads its last insert id must not keep a backend from the others.
        self._hold_timer = None
        self.state.end_last_insert_id_hold()
        self.give_back_if_idle()

    def _cancel_hold_timer(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def _count_pins(self, reasons: list[PinReason]) -> None:
        for reason in reasons:
            self._context.metrics.count_pin(self._db_user, reason.value)

    def _session_was_reset(self) -> None:
        """The client's COM_RESET_CONNECTION: its state is a fresh login's again (on its
        schema). Its backend lost session tracking with it: it goes back through a reset."""
        assert self.held is not None
        baseline = self.held.connection.baseline
        schema = self.state.wanted.schema
        self.state = SessionState(self.state.settings, TrackedState(schema, dict(baseline)))
        self._needs_reset = True

    def _replay_failed(self, error_code: int) -> None:
        self._context.log.warning(
            "backend refused a replay of session state: ERROR %d; the client is closed",
            error_code,
        )
        if self.held is not None:
            self.held.connection.mark_broken()
        self._on_failure(mysql_errors.backend_lost())

    # -- a backend that dies ---------------------------------------------------------------------

    def outlive_backend(self) -> bool:
        """The attached backend died: True when the session goes on without it. A client that
        is idle (only the last-insert-id hold kept the backend) loses nothing: its next command
        gets another backend. Unanswered commands go again, on another backend with the
        session's state replayed (ProxySQL's query retries). Neither when anything tied the
        session to the dead backend (a transaction, a pin, a prepared statement's cursor or
        long data), nor when a byte of the answer reached the client or the resends for this
        command are spent: the client then gets ERROR 2013."""
        relay, held = self.relay, self.held
        if (
            relay is None
            or held is None
            or self.state.is_pinned
            or self.state.is_in_transaction
            or self.statements.holds_backend
        ):
            return False
        if relay.is_idle:
            relay.detach()
            self._drop_dead(held)
            return True
        if self._resends_left <= 0 or not relay.take_unanswered():
            return False
        self._resends_left -= 1
        self._drop_dead(held)
        self._context.metrics.count("CommandsResentAfterBackendLoss", tenant=self._db_user)
        self._context.log.info(
            "backend on %s lost before it answered: the command goes to another backend",
            held.target.target.name,
        )
        if not self._is_leasing:
            self._is_leasing = True
            self._context.spawn(self._lease())
        return True

    def _drop_dead(self, held: HeldBackend) -> None:
        self.held = None
        self._sent.clear()
        self._cancel_hold_timer()
        self.state.end_last_insert_id_hold()
        held.connection.mark_broken()
        give_back(self._context, held, is_reusable=False)
        if held.target.request_check is not None:
            held.target.request_check()  # the target may have died with it

    # -- giving it back -------------------------------------------------------------------------

    def give_back_if_idle(self) -> None:
        """Gives the backend back when nothing holds it any more."""
        relay, held = self.relay, self.held
        if (
            held is None
            or relay is None
            or self.is_held_by_session
            or not relay.is_idle
            or self.statements.holds_backend
            or self.state.is_pinned
            or self.state.is_in_transaction
            or self.state.is_holding_last_insert_id
        ):
            return
        self._give_back(relay.detach())

    def hand_over(self) -> HeldBackend | None:
        """The session holds the attached backend itself (COM_CHANGE_USER resets it where it is),
        still attached to the relay; this multiplexer is done."""
        held, self.held = self.held, None
        self.relay = None
        self._sent.clear()
        return held

    @property
    def profile(self) -> BackendProfile:
        """The profile of the backends the session leases next."""
        return self._current_profile()

    def end(self) -> None:
        """The session is over: its backend goes back, reset when it holds state (a pin, or a
        transaction the client left open: its rows must not reach the next client)."""
        self._cancel_hold_timer()
        relay = self.relay
        held = self.held
        if held is None or relay is None:
            self.relay = None
            return
        is_idle = relay.detach()
        self.relay = None
        self.held = None
        if self.state.is_pinned or self.state.is_in_transaction or self._needs_reset or not is_idle:
            give_back(self._context, held, is_reusable=is_idle)
        else:
            self._give_back_clean(held)

    def _give_back(self, is_reusable: bool) -> None:
        held = self.held
        assert held is not None
        self.held = None
        self._sent.clear()
        self._cancel_hold_timer()
        if not is_reusable or self._needs_reset:
            self._needs_reset = False
            give_back(self._context, held, is_reusable=is_reusable)
            return
        self._give_back_clean(held)

    def _give_back_clean(self, held: HeldBackend) -> None:
        backend = held.connection
        if self._is_state_changed:
            self._is_state_changed = False
            adopt(backend.state, self.state.wanted)
        held.target.active_leases -= 1
        backend.last_given_back_at = time.monotonic()
        profile = backend.profile
        if profile is not None and not profile.has_database and backend.current_schema:
            # A database-less pool's backend that a client moved to a database: nothing can
            # unselect it, so the pool closes it instead of lending it again.
            backend.mark_broken()
        held.pool.give_back_clean(held.lease)
