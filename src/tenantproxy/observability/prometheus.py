"""Prometheus exposition of the proxy's (and the access API's) metrics.

Values are read when scraped (no work per query), by a collector over callables the process hands
in. Every scrape also carries the process's own ``process_*`` metrics (prometheus_client's
``ProcessCollector``: ``process_cpu_seconds_total``, resident memory, open fds), because on one
machine the processes share the CPU and a dashboard must show who used it. The proxy's HTTP side
(``serve_metrics``) is a minimal asyncio handler: GET /metrics answers the text format; anything
else answers 404. Names are RDS Proxy's CloudWatch names in Prometheus form
(``ClientConnectionsReceived`` → ``tenantproxy_client_connections_received_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

PREFIX = "tenantproxy_"
_REQUEST_LINE_LIMIT = 8192


def prometheus_name(cloudwatch_name: str) -> str:
    """``DatabaseConnectionsBorrowLatency`` → ``database_connections_borrow_latency``;
    ``ClientConnectionsNoTLS`` → ``client_connections_no_tls``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cloudwatch_name).lower()


@dataclass(frozen=True)
class Sample:
    """One value of a metric family; ``labels`` may be empty."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    # "gauge", "counter", "summary" (samples named "count" and "sum"), or "histogram" (samples
    # named "sum" and, per bucket, "bucket" with an "le" label: cumulative counts, "+Inf" last).
    kind: str
    samples: Callable[[], Iterable[Sample]]


class CallbackCollector(Collector):
    """Turns the families' callables into Prometheus metrics at scrape time."""

    def __init__(self, families: Iterable[Family]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            samples = list(family.samples())
            if family.kind == "histogram":
                yield from _histograms(family, samples)
                continue
            if family.kind == "summary":
                values = {sample.name: sample.value for sample in samples}
                yield SummaryMetricFamily(
                    PREFIX + family.name,
                    family.help,
                    count_value=int(values["count"]),
                    sum_value=values["sum"],
                )
                continue
            label_names = sorted({key for sample in samples for key in sample.labels})
            metric: GaugeMetricFamily | CounterMetricFamily
            if family.kind == "counter":
                metric = CounterMetricFamily(PREFIX + family.name, family.help, labels=label_names)
            else:
                metric = GaugeMetricFamily(PREFIX + family.name, family.help, labels=label_names)
            for sample in samples:
                metric.add_metric([sample.labels.get(n, "") for n in label_names], sample.value)
            yield metric


def _histograms(family: Family, samples: list[Sample]) -> Iterator[Metric]:
    """One HistogramMetricFamily, a metric per label set other than ``le``."""
    by_labels: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
    for sample in samples:
        key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        by_labels.setdefault(key, []).append(sample)
    label_names = sorted({name for key in by_labels for name, _ in key})
    metric = HistogramMetricFamily(PREFIX + family.name, family.help, labels=label_names)
    for key, group in by_labels.items():
        labels = dict(key)
        buckets = [(s.labels["le"], s.value) for s in group if s.name == "bucket"]
        total = next(s.value for s in group if s.name == "sum")
        metric.add_metric([labels.get(n, "") for n in label_names], buckets, total)
    yield metric


def render(families: Iterable[Family]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CallbackCollector(families))
    ProcessCollector(registry=registry)
    return generate_latest(registry)


# One process's metrics as plain data (JSON-able): [{"name", "help", "type", "samples":
# [[sample name, labels, value], ...]}, ...]. Worker processes hand theirs to the one that
# serves /metrics for all (proxy/coordination.py), which merges them (``merged``).
Collected = list[dict[str, Any]]

Combine = Callable[[Iterable[float]], float]
# How the processes' values of a sample combine when not by their sum.
_PROCESS_COMBINED: dict[str, Combine] = {"process_start_time_seconds": min, "process_max_fds": max}


def collected(families: Iterable[Family], *, with_process: bool = True) -> Collected:
    """What ``render`` would show, as data."""
    metrics = list(CallbackCollector(families).collect())
    if with_process:
        metrics += ProcessCollector(registry=None).collect()
    return [
        {
            "name": metric.name,
            "help": metric.documentation,
            "type": metric.type,
            "samples": [[s.name, dict(s.labels), s.value] for s in metric.samples],
        }
        for metric in metrics
    ]


def merged(parts: Iterable[Collected], combine: Mapping[str, Combine]) -> bytes:
    """Several processes' metrics as one exposition: each sample (name and labels) is the sum
    of the processes' values, or what ``combine`` names for its metric (e.g. ``min`` for a
    0/1 health every process must see as 1)."""
    order: dict[str, dict[str, Any]] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
    for part in parts:
        for metric in part:
            order.setdefault(metric["name"], metric)
            by_sample = values.setdefault(metric["name"], {})
            for name, labels, value in metric["samples"]:
                by_sample.setdefault((name, tuple(sorted(labels.items()))), []).append(value)
    rules: dict[str, Combine] = {**_PROCESS_COMBINED, **combine}
    metrics = []
    for name, metric in order.items():
        out = Metric(name, metric["help"], metric["type"])
        for (sample, labels), found in values[name].items():
            out.add_sample(sample, dict(labels), rules.get(name, _total)(found))
        metrics.append(out)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(metrics))
    return generate_latest(registry)


def _total(values: Iterable[float]) -> float:
    return sum(values)


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


async def serve_metrics(
    host: str, port: int, families: list[Family]
) -> tuple[asyncio.Server, tuple[str, int]]:
    """Starts GET /metrics on host:port (0: a free port); returns the server and its address."""

    async def body() -> bytes:
        return render(families)

    server = await asyncio.start_server(_handler(body), host, port, limit=_REQUEST_LINE_LIMIT)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    return server, (bound_host, bound_port)


async def serve_exposition(
    sock: socket.socket, body: Callable[[], Awaitable[bytes]]
) -> tuple[asyncio.Server, tuple[str, int]]:
    """GET /metrics on a bound socket answers what ``body`` renders (it may ask other
    processes); returns the server and its address."""
    server = await asyncio.start_server(_handler(body), sock=sock, limit=_REQUEST_LINE_LIMIT)
    bound_host, bound_port = sock.getsockname()[:2]
    return server, (bound_host, bound_port)


def _handler(
    body: Callable[[], Awaitable[bytes]],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            writer.close()
            return
        parts = request_line.decode("latin-1").split()
        if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics":
            text, status = await body(), "200 OK"
        else:
            text, status = b"not found\n", "404 Not Found"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode()
            + text
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    return handle
