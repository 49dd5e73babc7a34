"""The numbers of one load-test run: its samples, Locust's totals, and the summary of the stages.

A run folder holds ``samples.csv`` in long form (``time_s,source,instance,metric,value``, one row
per sampled value, a sweep every ~5 s, ``time_s`` counted from the start of the run; see
``samples.py``) and Locust's ``locust_stats.csv``. This module reads both and reduces them to a
:class:`Summary`: one :class:`StageSummary` per stage (``proxy``, ``noproxy``) and the ratio
between them. Any series may be missing; the figures that need it are then ``None``.

Database instances are named ``<cluster>-<role>[n]`` (``proxy-writer``, ``noproxy-replica2``): the
cluster is the prefix before the first ``-``, a replica is an instance whose name says ``replica``.
A cluster's figure at a moment is the sum over its instances of each one's latest value, counted
from the moment all of them have reported (so sweeps that stamp instances a little apart still add
up, and a cluster is never summed from half its members).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("proxy", "noproxy")

# (field, label) in the order the tables show them.
FIELDS: tuple[tuple[str, str], ...] = (
    ("requests_per_s", "requests/s"),
    ("requests", "requests"),
    ("failures", "failures"),
    ("failure_ratio", "failure ratio"),
    ("http_5xx_per_minute", "HTTP 5xx per minute"),
    ("median_ms", "median latency (ms)"),
    ("p90_ms", "p90 latency (ms)"),
    ("average_ms", "average latency (ms)"),
    ("replica_cpu_peak_percent", "replica CPU peak (%)"),
    ("replica_cpu_mean_percent", "replica CPU mean (%)"),
    ("db_connections_peak", "database connections peak"),
    ("db_new_connections_per_s", "new database connections/s (mean)"),
    ("db_new_connections_per_s_late", "new database connections/s (second half)"),
)
RATIO_LABEL = "ratio (proxy / noproxy)"
MISSING = "n/a"


@dataclass(frozen=True)
class Series:
    """One metric over time, sorted by time."""

    times_s: tuple[float, ...]
    values: tuple[float, ...]

    def peak(self) -> float | None:
        return max(self.values) if self.values else None

    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    def second_half_mean(self) -> float | None:
        """The mean of the points in the later half of the series' time span."""
        if not self.values:
            return None
        middle_s = (self.times_s[0] + self.times_s[-1]) / 2
        late = [v for t, v in zip(self.times_s, self.values, strict=True) if t >= middle_s]
        return sum(late) / len(late)

    def scaled(self, factor: float) -> Series:
        return Series(self.times_s, tuple(v * factor for v in self.values))


def cluster_of(instance: str) -> str:
    return instance.split("-", 1)[0]


def is_replica(instance: str) -> bool:
    return "replica" in instance


class RunSamples:
    """The series of ``samples.csv``, by (source, instance, metric)."""

    def __init__(self, series: Mapping[tuple[str, str, str], Series]) -> None:
        self._series = dict(series)

    @classmethod
    def read(cls, path: Path) -> RunSamples:
        """Reads ``samples.csv``; a missing file, or rows whose value is not a number, count as no
        samples."""
        points: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
        if path.exists():
            with path.open(newline="") as file:
                for row in csv.DictReader(file):
                    time_s, value = _number(row.get("time_s")), _number(row.get("value"))
                    if time_s is None or value is None:
                        continue
                    key = (row.get("source") or "", row.get("instance") or "", row["metric"] or "")
                    points[key].append((time_s, value))
        return cls({key: _series(pairs) for key, pairs in points.items()})

    def get(self, source: str, instance: str, metric: str) -> Series | None:
        return self._series.get((source, instance, metric))

    def cluster_sum(self, cluster: str, metric: str, *, replicas_only: bool) -> Series | None:
        """The sum of ``metric`` over the cluster's database instances (or its replicas)."""
        members = [
            series
            for (source, instance, name), series in sorted(self._series.items())
            if source == "database"
            and name == metric
            and cluster_of(instance) == cluster
            and (is_replica(instance) or not replicas_only)
        ]
        return sum_latest(members)


def sum_latest(members: list[Series]) -> Series | None:
    """At each time any member reports, the sum of every member's latest value (from the time all
    have reported)."""
    members = [m for m in members if m.times_s]
    if not members:
        return None
    all_reported_s = max(m.times_s[0] for m in members)
    latest = [0.0] * len(members)
    next_index = [0] * len(members)
    times: list[float] = []
    sums: list[float] = []
    for time_s in sorted({t for m in members for t in m.times_s}):
        for i, member in enumerate(members):
            while next_index[i] < len(member.times_s) and member.times_s[next_index[i]] <= time_s:
                latest[i] = member.values[next_index[i]]
                next_index[i] += 1
        if time_s >= all_reported_s:
            times.append(time_s)
            sums.append(sum(latest))
    return Series(tuple(times), tuple(sums))


@dataclass(frozen=True)
class LocustTotals:
    """One row of Locust's ``locust_stats.csv``."""

    requests: int | None
    failures: int | None
    requests_per_s: float | None
    median_ms: float | None
    p90_ms: float | None
    average_ms: float | None


def read_locust_stats(path: Path) -> dict[str, LocustTotals]:
    """Locust's totals by request name (``proxy``, ``noproxy``, ``Aggregated``)."""
    if not path.exists():
        return {}
    totals: dict[str, LocustTotals] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            requests, failures = (
                _number(row.get("Request Count")),
                _number(row.get("Failure Count")),
            )
            totals[row.get("Name") or ""] = LocustTotals(
                requests=None if requests is None else int(requests),
                failures=None if failures is None else int(failures),
                requests_per_s=_number(row.get("Requests/s")),
                median_ms=_number(row.get("Median Response Time")),
                p90_ms=_number(row.get("90%")),
                average_ms=_number(row.get("Average Response Time")),
            )
    return totals


@dataclass(frozen=True)
class StageSummary:
    """One stage's figures; ``None`` where the run holds no data for it."""

    requests_per_s: float | None
    requests: int | None
    failures: int | None
    failure_ratio: float | None
    http_5xx_per_minute: float | None
    median_ms: float | None
    p90_ms: float | None
    average_ms: float | None
    replica_cpu_peak_percent: float | None
    replica_cpu_mean_percent: float | None
    db_connections_peak: float | None
    # The churn the proxy saves: MariaDB's Connections counter, summed over the cluster.
    db_new_connections_per_s: float | None
    # The same over the run's second half: the proxy's pools open their first connections
    # (one per tenant and replica) early in a run; what stays is the steady churn.
    db_new_connections_per_s_late: float | None = None


@dataclass(frozen=True)
class Summary:
    """The stages of one run side by side, and the run's parameters (``run.json``)."""

    stages: Mapping[str, StageSummary]
    run: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> dict[str, float | None]:
        """proxy / noproxy for each field; ``None`` where either is missing or noproxy is 0."""
        proxy, noproxy = self.stages.get("proxy"), self.stages.get("noproxy")
        return {name: _ratio(proxy, noproxy, name) for name, _ in FIELDS}

    def to_json(self) -> dict[str, Any]:
        return {
            "stages": {stage: asdict(figures) for stage, figures in self.stages.items()},
            "ratio": self.ratio,
            "run": dict(self.run),
        }


def summarize_stage(
    stage: str, samples: RunSamples, locust: Mapping[str, LocustTotals]
) -> StageSummary:
    totals = locust.get(stage, LocustTotals(None, None, None, None, None, None))
    http_5xx = samples.get("stage", stage, "http_5xx_per_s")
    replica_cpu = samples.cluster_sum(stage, "cpu_percent", replicas_only=True)
    connections = samples.cluster_sum(stage, "threads_connected", replicas_only=False)
    new_connections = samples.cluster_sum(stage, "connections_per_s", replicas_only=False)
    failure_ratio = None
    if totals.requests and totals.failures is not None:
        failure_ratio = totals.failures / totals.requests
    return StageSummary(
        requests_per_s=totals.requests_per_s,
        requests=totals.requests,
        failures=totals.failures,
        failure_ratio=failure_ratio,
        http_5xx_per_minute=_times(http_5xx.mean() if http_5xx else None, 60),
        median_ms=totals.median_ms,
        p90_ms=totals.p90_ms,
        average_ms=totals.average_ms,
        replica_cpu_peak_percent=replica_cpu.peak() if replica_cpu else None,
        replica_cpu_mean_percent=replica_cpu.mean() if replica_cpu else None,
        db_connections_peak=connections.peak() if connections else None,
        db_new_connections_per_s=new_connections.mean() if new_connections else None,
        db_new_connections_per_s_late=(
            new_connections.second_half_mean() if new_connections else None
        ),
    )


def summarize(
    samples: RunSamples, locust: Mapping[str, LocustTotals], run: Mapping[str, Any]
) -> Summary:
    return Summary({stage: summarize_stage(stage, samples, locust) for stage in STAGES}, run)


def summary_rows(summary: Summary) -> list[tuple[str, ...]]:
    """The summary table as text cells: a header, then one row per figure with a column per stage
    and the ratio."""
    ratio = summary.ratio
    rows: list[tuple[str, ...]] = [("", *summary.stages, RATIO_LABEL)]
    for name, label in FIELDS:
        cells = [format_value(getattr(figures, name), name) for figures in summary.stages.values()]
        rows.append((label, *cells, format_ratio(ratio[name])))
    return rows


def render_summary_text(summary: Summary) -> str:
    """The summary as a plain-text table for the terminal."""
    rows = summary_rows(summary)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        lines.append("  ".join([first, *rest]).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def render_summary_markdown(summary: Summary) -> str:
    rows = summary_rows(summary)
    header = ["figure", *rows[0][1:]]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines) + "\n"


def format_value(value: float | None, name: str) -> str:
    if value is None:
        return MISSING
    if name == "failure_ratio":
        return f"{value * 100:.2f} %"
    if name in ("requests", "failures"):
        return f"{int(value):,}"
    return _short(value)


def format_ratio(value: float | None) -> str:
    return MISSING if value is None else f"{_short(value)}x"


def _short(value: float) -> str:
    if abs(value) >= 100 or value.is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(proxy: StageSummary | None, noproxy: StageSummary | None, name: str) -> float | None:
    if proxy is None or noproxy is None:
        return None
    numerator, denominator = getattr(proxy, name), getattr(noproxy, name)
    if numerator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _number(text: str | None) -> float | None:
    """A finite float from a CSV cell, else ``None`` (empty, ``N/A``, ``nan``)."""
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _series(pairs: Iterable[tuple[float, float]]) -> Series:
    ordered = sorted(pairs)
    return Series(tuple(t for t, _ in ordered), tuple(v for _, v in ordered))
