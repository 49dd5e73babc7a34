"""The access API's spans of one invocation, the write-up's X-Ray segments of its Lambda function.

    invoke            the stage's handler, admission to answer (root, SERVER)
      AssumeRole      STS at the identity service (CLIENT, peer.service = identity)
      db-auth token   signing the token (local)
      read secret     the no-proxy stage's password variant: the secret store
      connect         TCP connect and the server's greeting (CLIENT, peer.service = proxy | mariadb)
      TLS             SSLRequest and the TLS handshake
      login           HandshakeResponse41 → OK, auth switch included (the proxy's token check and
                      borrow wait, or the database's own login, happen here)
      query           the SELECT and its rows
      close           COM_QUIT

A request with a W3C ``traceparent`` header (Locust sends one for the requests it samples) makes
``invoke`` a child of the caller's span. The ``invoke`` span's context goes to the database as the
``traceparent`` connect attribute, so the proxy's spans of the same request join the trace. Steps
may run in the STS thread pool: each is
recorded from timestamps, with explicit times (observability/tracing.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tenantproxy.observability.tracing import (
    Attributes,
    Tracing,
    context_from_traceparent,
    traceparent_of,
)

SERVICE_NAME = "accessapi"


class Steps(Protocol):
    """What a stage and its database work need: time a step, and the context to pass on."""

    @property
    def traceparent(self) -> str | None: ...

    def step(
        self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes | None = None
    ) -> AbstractContextManager[None]: ...

    def record(
        self, name: str, start_ns: int, end_ns: int, *, attributes: Attributes | None = None
    ) -> None: ...


class NotTraced:
    """An invocation whose trace is not sampled (or tracing is off): every step is free."""

    traceparent = None

    def step(
        self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes | None = None
    ) -> AbstractContextManager[None]:
        return nullcontext()

    def record(
        self, name: str, start_ns: int, end_ns: int, *, attributes: Attributes | None = None
    ) -> None:
        return None


NOT_TRACED = NotTraced()


class InvocationTrace:
    """The root span of one sampled invocation, and its steps."""

    def __init__(self, tracing: Tracing, root: Span) -> None:
        self._tracing = tracing
        self._root = root
        self.traceparent = traceparent_of(root)

    @classmethod
    def begin(
        cls, tracing: Tracing | None, stage: str, traceparent: str | None = None
    ) -> InvocationTrace | None:
        """The invocation's span; a child of the caller's (Locust's) span when the request
        carries a ``traceparent`` header, whose sampling decision it then follows."""
        if tracing is None:
            return None
        root = tracing.start_span(
            "invoke",
            parent=context_from_traceparent(traceparent),
            kind=SpanKind.SERVER,
            attributes={"tenantproxy.stage": stage},
        )
        return cls(tracing, root) if root.is_recording() else None

    @contextmanager
    def step(
        self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes | None = None
    ) -> Iterator[None]:
        started = time.time_ns()
        error: str | None = None
        try:
            yield
        except BaseException as exc:
            error = type(exc).__name__  # the type only: a message may hold a secret
            raise
        finally:
            self._tracing.record(name, self._root, started, time.time_ns(), kind=kind,
                                 attributes=attributes, error=error)  # fmt: skip

    def record(
        self, name: str, start_ns: int, end_ns: int, *, attributes: Attributes | None = None
    ) -> None:
        self._tracing.record(
            name, self._root, start_ns, end_ns, kind=SpanKind.CLIENT, attributes=attributes
        )

    def end(self, status_code: int, tenant: int | None) -> None:
        self._root.set_attribute("http.response.status_code", status_code)
        if tenant is not None:
            self._root.set_attribute("tenantproxy.tenant", tenant)
        if status_code >= 500:
            self._root.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
        self._root.end()
