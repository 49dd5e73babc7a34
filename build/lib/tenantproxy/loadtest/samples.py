"""``samples.csv``: what the sampler records, in long format, one measurement a row.

The contract (the report reads it)::

    time_s,source,instance,metric,value
    5.003,stage,proxy,requests_per_s,11.4
    5.003,database,noproxy-replica1,cpu_percent,37.5
    5.003,proxy,proxy,backend_connections,12

``time_s`` is seconds since the run started. ``source``/``instance``/``metric`` take the names
below, and nothing else.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

SAMPLES_FILE = "samples.csv"
COLUMNS = ("time_s", "source", "instance", "metric", "value")

SOURCE_STAGE = "stage"
SOURCE_DATABASE = "database"
SOURCE_PROXY = "proxy"
STAGES = ("proxy", "noproxy")
PROXY_INSTANCE = "proxy"

STAGE_METRICS = (
    "requests_per_s",
    "failures_per_s",
    "http_5xx_per_s",
    "throttles_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "in_flight",
)
DATABASE_METRICS = (
    "cpu_percent",
    "threads_connected",
    "connections_per_s",
    "queries_per_s",
    "innodb_rows_read_per_s",
    "aborted_connects_per_s",
)
PROXY_METRICS = ("client_connections", "backend_connections", "borrow_latency_us")
METRICS = {
    SOURCE_STAGE: STAGE_METRICS,
    SOURCE_DATABASE: DATABASE_METRICS,
    SOURCE_PROXY: PROXY_METRICS,
}


@dataclass(frozen=True)
class Sample:
    """One row of samples.csv."""

    time_s: float
    source: str
    instance: str
    metric: str
    value: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS.get(self.source, ()):
            raise ValueError(f"unknown metric {self.source}/{self.metric}")


class SamplesWriter:
    """Appends samples to samples.csv, header first, flushed after each batch.

    Thread-safe: the sampler's thread writes while the runner may read the path.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        self._file.flush()
        self.rows_written = 0

    def write(self, samples: Iterable[Sample]) -> None:
        rows = [
            (f"{s.time_s:.3f}", s.source, s.instance, s.metric, _format_value(s.value))
            for s in samples
        ]
        with self._lock:
            self._writer.writerows(rows)
            self._file.flush()
            self.rows_written += len(rows)

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> SamplesWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_samples(path: Path) -> list[Sample]:
    """Every row of a samples.csv, typed."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {COLUMNS}")
        return [
            Sample(
                float(row["time_s"]),
                row["source"],
                row["instance"],
                row["metric"],
                float(row["value"]),
            )
            for row in reader
        ]


def _format_value(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.1f}"
