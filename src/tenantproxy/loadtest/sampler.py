"""Every ``interval_s``, what the stack does under load, appended to samples.csv.

Three sources (names in ``samples``): the access API's stages (its ``/metrics.json``), every
database instance of both clusters (``SHOW GLOBAL STATUS`` on one admin connection each, and the
CPU of its mariadbd process), and the proxy (its Prometheus text). Counters become rates from the
difference between two scrapes; the first scrape is only the baseline (the math: scrapes.py). A
source that fails once is skipped for that tick, not for the run.

The access API's latency list and in-flight peak are "since the previous scrape": the sampler must
be their only reader while a run lasts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from tenantproxy.loadtest.samples import STAGES, Sample, SamplesWriter
from tenantproxy.loadtest.scrapes import (
    STATUS_VARIABLES as STATUS_VARIABLES,  # re-exported: sources.py imports it from here
)
from tenantproxy.loadtest.scrapes import (
    ProxyScrape,
    StageScrape,
    database_samples,
    proxy_samples,
    stage_samples,
)

log = logging.getLogger(__name__)

# --- the sources, with I/O -----------------------------------------------------------------------


class Source(Protocol):
    """One thing the sampler scrapes: ``sample`` returns rows since its previous call."""

    name: str

    def sample(self, time_s: float, elapsed_s: float) -> list[Sample]: ...

    def close(self) -> None: ...


class StagesSource:
    """The access API's /metrics.json (one object per stage)."""

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
