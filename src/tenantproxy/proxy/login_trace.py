"""The proxy's spans of one sampled login: client login, token check, borrow wait, backend query.

Spans are per login, never per packet. A session is traced only when tracing is on and its trace
is sampled: the client's ``traceparent`` connect attribute names the parent (observability/
tracing.py), and its flags decide. Otherwise the session holds no trace and the code paths below
are not entered. For a traced session the first command after the login is watched, and only it:
its relay methods are wrapped until its response has ended, then put back.

    client login   accept → OK (or the refusal)
      token check  the credentials check, the auth switch round trip included
      borrow wait  leasing a backend (pool wait, liveness ping, COM_INIT_DB)
    backend query  the first command relayed → the end of its response (a sibling of client
                   login: both are children of the caller's span)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tenantproxy.observability.tracing import TRACEPARENT, Tracing, context_from_traceparent

if TYPE_CHECKING:
    from tenantproxy.proxy.relay import Relay
    from tenantproxy.wire.mysql.events import LoginRequested

SERVICE_NAME = "proxy"


def traced(trace: LoginTrace | None, name: str) -> AbstractContextManager[None]:
    """``trace.step(name)``, or nothing when the session is not traced."""
    return nullcontext() if trace is None else trace.step(name)


class LoginTrace:
    """The spans of one session's login and first query."""

    def __init__(self, tracing: Tracing, login_span: Span, parent: Context | None) -> None:
        self._tracing = tracing
        self._login = login_span
        self._parent = parent  # the caller's span, or None for a trace that starts here

    @classmethod
    def begin(
        cls, tracing: Tracing | None, login: LoginRequested, accepted_ns: int, endpoint: str
    ) -> LoginTrace | None:
        """The trace of this login, or None when tracing is off or the trace is not sampled."""
        if tracing is None:
            return None
        parent = context_from_traceparent(login.response.connect_attrs.get(TRACEPARENT))
        span = tracing.start_span(
            "client login",
            parent=parent,
            start_ns=accepted_ns,
            kind=SpanKind.SERVER,
            attributes={"db.user": login.username, "tenantproxy.endpoint": endpoint},
        )
        return cls(tracing, span, parent) if span.is_recording() else None

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.time_ns()
        try:
            yield
        finally:
            self._tracing.record(name, self._login, started, time.time_ns())

    def login_ended(self, *, is_accepted: bool) -> None:
        if not is_accepted:
            self._login.set_status(Status(StatusCode.ERROR, "login refused or abandoned"))
        self._login.end()

    def watch_first_query(self, relay: Relay) -> None:
        """Records the first command's span: from its bytes to the end of its response (the
        relay's from_client is shadowed by an instance attribute for that one call)."""
        relay_from_client = relay.from_client

        def first_from_client(data: bytes) -> None:
            started_ns = time.time_ns()
            del relay.from_client
            relay.when_idle(lambda target: self._end_query(started_ns, target))
            relay_from_client(data)

        relay.from_client = first_from_client  # type: ignore[method-assign]

    def _end_query(self, started_ns: int, target: str) -> None:
        attributes = {"peer.service": "mariadb", "tenantproxy.target": target}
        parent = self._parent if self._parent is not None else self._login
        self._tracing.record("backend query", parent, started_ns, time.time_ns(),
                             kind=SpanKind.CLIENT, attributes=attributes)  # fmt: skip
