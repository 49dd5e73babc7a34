"""OpenTelemetry traces, the write-up's X-Ray step: spans to a JSON-lines file, or to a collector.

One :class:`Tracing` per process (built by the process's composition root; no global provider).
Sampling is decided once per trace, at its root: ``ParentBased(TraceIdRatioBased(ratio))``, so a
service that receives a trace context follows its caller's decision and samples only its own
roots at ``sample_ratio``. Spans are handed to a batch processor (a background thread): the code
that records them only appends to a queue.

Spans are built from timestamps taken where the work happened (``time.time_ns()``), then recorded
with explicit start and end times: the work itself may run in a thread pool or in callbacks, and
needs no context variables.

The trace context reaches the proxy as a MySQL connect attribute (``CLIENT_CONNECT_ATTRS`` in the
HandshakeResponse41) named ``traceparent``, whose value is a W3C Trace Context ``traceparent``
header: ``00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>``.

The spans file holds one JSON object per line (:func:`span_record`)::

    {"trace_id": "…32 hex…", "span_id": "…16 hex…", "parent_id": "…16 hex…" | null,
     "name": "query", "service": "accessapi", "kind": "CLIENT", "start_ns": 1764…, "end_ns": 1764…,
     "status": "OK" | "ERROR", "attributes": {"tenantproxy.stage": "proxy", …}}
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    Span,
    SpanKind,
    Status,
    StatusCode,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# The connect attribute (and the W3C header) that carries the trace context.
TRACEPARENT = "traceparent"
# The batch processor's export interval: short, so that a run's last spans are on disk soon
# after it ends (the load test waits this long twice before it collects them).
FLUSH_INTERVAL_S = 0.5
_PROPAGATOR = TraceContextTextMapPropagator()
Attributes = Mapping[str, str | int | float | bool]


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered O_APPEND: each batch is one write(2) at the file's end, so the worker
        # processes of one proxy (workers = N) can share the file without splitting a line.
        self._file: BinaryIO = path.open("ab", buffering=0)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), separators=(",", ":")) + "\n" for s in spans)
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.write(lines.encode())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.context
    parent = span.parent
    return {
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "name": span.name,
        "service": span.resource.attributes.get("service.name"),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": "ERROR" if span.status.status_code is StatusCode.ERROR else "OK",
        "attributes": dict(span.attributes or {}),
    }


class Tracing:
    """One process's tracer, its exporters and the trace-context helpers."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("tenantproxy")

    def start_span(
        self,
        name: str,
        *,
        parent: Context | Span | None = None,
        start_ns: int | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes | None = None,
    ) -> Span:
        """A started span (not recording when the trace is not sampled); end it yourself."""
        context = set_span_in_context(parent) if isinstance(parent, Span) else parent
        return self._tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_ns
        )

    def record(
        self,
        name: str,
        parent: Span | Context,
        start_ns: int,
        end_ns: int,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes | None = None,
        error: str | None = None,
    ) -> None:
        """A finished child span of ``parent`` (a span, or a remote parent's context) from
        timestamps taken earlier."""
        span = self.start_span(name, parent=parent, start_ns=start_ns, kind=kind,
                               attributes=attributes)  # fmt: skip
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Exports what is queued and closes the exporters."""
        self._provider.shutdown()

    def flush(self, timeout_s: float = 5.0) -> bool:
        return self._provider.force_flush(int(timeout_s * 1000))


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` value naming ``span`` as the parent; None if it is not valid."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def context_from_traceparent(value: str | None) -> Context | None:
    """The remote parent a ``traceparent`` value names; None when absent or malformed."""
    if not value:
        return None
    context = _PROPAGATOR.extract({TRACEPARENT: value})
    return context if context else None


class PrivateRandomIds(IdGenerator):
    """Trace and span ids from a ``random.Random`` of the tracer's own (seeded from the OS), not
    the ``random`` module's: that one is the program's, which may seed it (a load test, for
    repeatable runs) and then must not see a tracer draw from it in between."""

    def __init__(self) -> None:
        self._random = random.Random()

    def generate_span_id(self) -> int:
        return self._nonzero_bits(64, INVALID_SPAN_ID)

    def generate_trace_id(self) -> int:
        return self._nonzero_bits(128, INVALID_TRACE_ID)

    def is_trace_id_random(self) -> bool:
        return True

    def _nonzero_bits(self, bits: int, invalid: int) -> int:
        value = self._random.getrandbits(bits)
        while value == invalid:
            value = self._random.getrandbits(bits)
        return value


def start_tracing(
    service_name: str,
    *,
    sample_ratio: float,
    spans_file: Path | None = None,
    otlp_endpoint: str | None = None,
    flush_interval_s: float = FLUSH_INTERVAL_S,
) -> Tracing | None:
    """A :class:`Tracing` exporting to ``spans_file`` and/or ``otlp_endpoint`` (OTLP/HTTP, e.g.
    ``http://127.0.0.1:4318/v1/traces``); None when tracing is off (ratio 0 or nowhere to send),
    so that callers do no tracing work at all."""
    if sample_ratio <= 0 or (spans_file is None and not otlp_endpoint):
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(min(sample_ratio, 1.0))),
        id_generator=PrivateRandomIds(),
    )
    delay_ms = flush_interval_s * 1000
    if spans_file is not None:
        exporter = JsonLinesSpanExporter(spans_file)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms))
    if otlp_endpoint:
        # Imported here: the protobuf stack is loaded only by processes that send to a collector.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=otlp_endpoint, timeout=5)
        provider.add_span_processor(BatchSpanProcessor(otlp, schedule_delay_millis=delay_ms))
    return Tracing(provider)


def read_spans(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every span of the given JSON-lines files (a torn last line is skipped)."""
    spans: list[dict[str, Any]] = []
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    span = json.loads(line)
                except ValueError:
                    continue
                if isinstance(span, dict):
                    spans.append(span)
    return spans
