"""Every ``interval_s``, what the stack does under load, appended to samples.csv.

Three sources (names in ``samples``): the access API's stages (its ``/metrics`` JSON), every
database instance of both clusters (``SHOW GLOBAL STATUS`` on one admin connection each, and the
CPU of its mariadbd process), and the proxy (its Prometheus text). Counters become rates from the
difference between two scrapes; the first scrape is only the baseline. A source that fails once
is skipped for that tick, not for the run.

The access API's latency list and in-flight peak are "since the previous scrape": the sampler must
be their only reader while a run lasts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
from prometheus_client.parser import text_string_to_metric_families

from tenantproxy.loadtest.samples import (
    PROXY_INSTANCE,
    SOURCE_DATABASE,
    SOURCE_PROXY,
    SOURCE_STAGE,
    STAGES,
    Sample,
    SamplesWriter,
)

log = logging.getLogger(__name__)

# MariaDB 10.6+ has no Innodb_rows_read; Rows_read (every engine; the tenants' tables are InnoDB)
# stands in for it there.
STATUS_VARIABLES = (
    "Threads_connected",
    "Connections",
    "Queries",
    "Innodb_rows_read",
    "Rows_read",
    "Aborted_connects",
)
_RATES = {
    "Connections": "connections_per_s",
    "Queries": "queries_per_s",
    "Innodb_rows_read": "innodb_rows_read_per_s",
    "Aborted_connects": "aborted_connects_per_s",
}
CLIENT_CONNECTIONS = "tenantproxy_client_connections"
DATABASE_CONNECTIONS = "tenantproxy_database_connections"
BORROW_LATENCY_SUM = "tenantproxy_database_connections_borrow_latency_us_sum"
BORROW_LATENCY_COUNT = "tenantproxy_database_connections_borrow_latency_us_count"


# --- the math, pure ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``values`` not empty."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def per_second(previous: float, current: float, elapsed_s: float) -> float:
    """The rate of a counter; a counter that went back (a restart) counts from zero."""
    if elapsed_s <= 0:
        return 0.0
    delta = current - previous if current >= previous else current
    return delta / elapsed_s


@dataclass(frozen=True)
class StageScrape:
    """One stage's part of the access API's /metrics."""

    requests_total: float
    responses_total: Mapping[int, float]
    throttles_total: float
    in_flight_peak: float
    latency_ms: Sequence[float]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageScrape:
        peak = data.get("in_flight_peak_since_last_scrape", data.get("in_flight", 0))
        return cls(
            requests_total=float(data.get("requests_total", 0)),
            responses_total={int(k): float(v) for k, v in data.get("responses_total", {}).items()},
            throttles_total=float(data.get("throttles_total", 0)),
            in_flight_peak=float(peak),
            latency_ms=[float(v) for v in data.get("latency_ms", data.get("latency", []))],
        )

    def count(self, is_counted: Callable[[int], bool]) -> float:
        return sum(n for code, n in self.responses_total.items() if is_counted(code))


def stage_samples(
    time_s: float, stage: str, previous: StageScrape, current: StageScrape, elapsed_s: float
) -> list[Sample]:
    def rate(old: float, new: float) -> float:
        return per_second(old, new, elapsed_s)

    def is_failure(code: int) -> bool:
        return not 200 <= code < 300

    def is_5xx(code: int) -> bool:
        return 500 <= code < 600

    values = {
        "requests_per_s": rate(previous.requests_total, current.requests_total),
        "failures_per_s": rate(previous.count(is_failure), current.count(is_failure)),
        "http_5xx_per_s": rate(previous.count(is_5xx), current.count(is_5xx)),
        "throttles_per_s": rate(previous.throttles_total, current.throttles_total),
        "in_flight": current.in_flight_peak,
    }
    if current.latency_ms:
        for name, fraction in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99)):
            values[name] = percentile(current.latency_ms, fraction)
    return [Sample(time_s, SOURCE_STAGE, stage, k, v) for k, v in values.items()]


def database_samples(
    time_s: float,
    instance: str,
    previous: Mapping[str, float],
    current: Mapping[str, float],
    elapsed_s: float,
    cpu_percent: float | None,
) -> list[Sample]:
    values: dict[str, float] = {}
    if cpu_percent is not None:
        values["cpu_percent"] = cpu_percent
    if "Threads_connected" in current:
        values["threads_connected"] = current["Threads_connected"]
    for variable, metric in _RATES.items():
        if variable == "Innodb_rows_read" and variable not in current:
            variable = "Rows_read"
        if variable in previous and variable in current:
            values[metric] = per_second(previous[variable], current[variable], elapsed_s)
    return [Sample(time_s, SOURCE_DATABASE, instance, k, v) for k, v in values.items()]


@dataclass(frozen=True)
class ProxyScrape:
    client_connections: float
    backend_connections: float
    borrow_latency_sum_us: float
    borrow_count: float

    @classmethod
    def from_text(cls, text: str) -> ProxyScrape:
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + float(sample.value)
        return cls(
            client_connections=sums.get(CLIENT_CONNECTIONS, 0.0),
            backend_connections=sums.get(DATABASE_CONNECTIONS, 0.0),
            # As a summary's _sum/_count, or as two counters (whose samples end in _total).
            borrow_latency_sum_us=sums.get(
                BORROW_LATENCY_SUM, sums.get(f"{BORROW_LATENCY_SUM}_total", 0.0)
            ),
            borrow_count=sums.get(
                BORROW_LATENCY_COUNT, sums.get(f"{BORROW_LATENCY_COUNT}_total", 0.0)
            ),
        )


def proxy_samples(time_s: float, previous: ProxyScrape, current: ProxyScrape) -> list[Sample]:
    values = {
        "client_connections": current.client_connections,
        "backend_connections": current.backend_connections,
    }
    borrows = current.borrow_count - previous.borrow_count
    if borrows > 0:
        spent = current.borrow_latency_sum_us - previous.borrow_latency_sum_us
        values["borrow_latency_us"] = spent / borrows
    return [Sample(time_s, SOURCE_PROXY, PROXY_INSTANCE, k, v) for k, v in values.items()]


# --- the sources, with I/O -----------------------------------------------------------------------


class Source(Protocol):
    """One thing the sampler scrapes: ``sample`` returns rows since its previous call."""

    name: str

    def sample(self, time_s: float, elapsed_s: float) -> list[Sample]: ...

    def close(self) -> None: ...


class StagesSource:
    """The access API's /metrics (JSON with one object per stage)."""

    name = "access API"

    def __init__(
        self,
        fetch_json: Callable[[], Mapping[str, Any]],
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._fetch = fetch_json
        self._close = close
        self._previous: dict[str, StageScrape] = {}

    def sample(self, time_s: float, elapsed_s: float) -> list[Sample]:
        data = self._fetch()
        stages = data.get("stages", data)
        rows: list[Sample] = []
        for stage in STAGES:
            if stage not in stages:
                continue
            current = StageScrape.from_json(stages[stage])
            previous = self._previous.get(stage)
            if previous is not None:
                rows += stage_samples(time_s, stage, previous, current, elapsed_s)
            self._previous[stage] = current
        return rows

    def close(self) -> None:
        self._close()


class StatusConnection(Protocol):
    def show_global_status(self) -> dict[str, float]: ...

    def close(self) -> None: ...


@dataclass
class DatabaseSource:
    """One instance: SHOW GLOBAL STATUS on a kept connection, and its mariadbd's CPU."""

    name: str
    connect: Callable[[], StatusConnection]
    pid_file: Path | None
    _connection: StatusConnection | None = None
    _process: psutil.Process | None = None
    _previous: dict[str, float] = field(default_factory=dict)

    def sample(self, time_s: float, elapsed_s: float) -> list[Sample]:
        cpu = self._cpu_percent()
        if self._connection is None:
            self._connection = self.connect()
        try:
            current = self._connection.show_global_status()
        except Exception:
            self._drop_connection()
            raise
        rows = database_samples(time_s, self.name, self._previous, current, elapsed_s, cpu)
        self._previous = current
        return rows

    def _cpu_percent(self) -> float | None:
        """CPU % since the previous call (100 = one core); None on the first call or no PID."""
        if self._process is None:
            if self.pid_file is None:
                return None
            try:
                pid = int(self.pid_file.read_text().strip())
                self._process = psutil.Process(pid)
                self._process.cpu_percent(None)  # the baseline
            except (OSError, ValueError, psutil.Error) as exc:
                log.warning("%s: no mariadbd process to sample CPU from: %s", self.name, exc)
                self._process = None
            return None
        try:
            return self._process.cpu_percent(None)
        except psutil.Error:
            self._process = None
            return None

    def _drop_connection(self) -> None:
        if self._connection is not None:
            # A broken connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def close(self) -> None:
        self._drop_connection()


class ProxySource:
    """The proxy's Prometheus text."""

    name = "proxy"

    def __init__(
        self, fetch_text: Callable[[], str], close: Callable[[], None] = lambda: None
    ) -> None:
        self._fetch = fetch_text
        self._close = close
        self._previous: ProxyScrape | None = None

    def sample(self, time_s: float, elapsed_s: float) -> list[Sample]:
        current = ProxyScrape.from_text(self._fetch())
        previous, self._previous = self._previous, current
        return [] if previous is None else proxy_samples(time_s, previous, current)

    def close(self) -> None:
        self._close()


# --- the loop ------------------------------------------------------------------------------------


class Sampler:
    """Scrapes every source each ``interval_s`` in a thread, from ``start()`` to ``stop()``."""

    def __init__(
        self,
        sources: Iterable[Source],
        writer: SamplesWriter,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources = list(sources)
        self.writer = writer
        self.interval_s = interval_s
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._started_at = 0.0
        self._last_tick: dict[str, float] = {}
        self.errors: dict[str, int] = {}

    def start(self, started_at: float | None = None) -> None:
        """``started_at`` (on ``clock``) is the run's time zero; default now."""
        self._started_at = self._clock() if started_at is None else started_at
        self.tick()  # the baselines
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._thread.ident is not None:
            self.tick()  # the tail since the last tick
        for source in self.sources:
            source.close()

    def tick(self) -> None:
        for source in self.sources:
            now = self._clock()
            elapsed_s = now - self._last_tick.get(source.name, now)
            try:
                rows = source.sample(now - self._started_at, elapsed_s)
            except Exception as exc:
                self.errors[source.name] = self.errors.get(source.name, 0) + 1
                if self.errors[source.name] == 1:
                    log.warning("sampling %s failed (skipped this time): %s", source.name, exc)
                continue
            self._last_tick[source.name] = now
            self.writer.write(rows)

    def _run(self) -> None:
        next_at = self._clock() + self.interval_s
        while not self._stopping.wait(max(0.0, next_at - self._clock())):
            self.tick()
            next_at += self.interval_s
            if next_at < self._clock():  # fell behind: skip, don't burst
                next_at = self._clock() + self.interval_s
