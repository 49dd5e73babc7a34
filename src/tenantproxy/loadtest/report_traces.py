"""The report's traces: where a request's time goes, per stage, and the service map.

The runner copies the spans of the run's window into ``traces.jsonl`` (format in
observability/tracing.py). A trace is one request: its root is Locust's span of the request
(locustfile.py) when Locust sampled it, else the access API's ``invoke`` span (attribute
``tenantproxy.stage``). Only traces answered 200 count. Per stage, each step (a child of
``invoke``, plus "HTTP + queueing" = Locust's span less ``invoke``, and the time inside
``invoke`` between the steps) gets its mean in ms over the traces around the median (the 10 % of
them whose end-to-end time ranks nearest the measured median), so the steps add up to about a
median request; its
share is of the measured (Locust) median, and "unexplained" is that median less the sum of the
steps, so the shares add up to 100 %; the report states how far the steps are off (the check:
within 15 %). The proxy's own spans (children of ``invoke`` in another service) are listed
beside, as "of which" lines: they happen inside the access API's login and query.
"""

from __future__ import annotations

import bisect
import html
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tenantproxy.observability.tracing import read_spans

TRACES_FILE = "traces.jsonl"
ROOT = "invoke"
# Time inside the invoke span in none of its steps: the hand-offs to and from the STS thread
# pool, and the event loop's queue between two awaits; a step of its own in the breakdown.
BETWEEN = ("accessapi", "between the steps (thread pool, event loop)")
# Locust's span of a sampled request (locustfile.py) is the trace's root when present: its time
# outside ``invoke`` is HTTP, the server's and Locust's queues; a step of its own.
LOCUST = "locust"
HTTP = (LOCUST, "HTTP + queueing (Locust span - invoke span)")
# The measured median less the sum of the steps' medians: medians do not add up exactly.
UNEXPLAINED = ("report", "unexplained (measured median - sum of the steps)")
OWN_SERVICES = ("accessapi", LOCUST, "report")


@dataclass(frozen=True)
class Step:
    service: str
    name: str
    median_ms: float
    share: float | None  # of the sum of the access API's steps; None for the proxy's
    traces: int


@dataclass(frozen=True)
class StageBreakdown:
    stage: str
    traces: int
    steps: tuple[Step, ...]
    steps_sum_ms: float
    invoke_median_ms: float
    measured_median_ms: float | None

    @property
    def gap_ratio(self) -> float | None:
        """(measured - sum of the steps) / measured."""
        if not self.measured_median_ms:
            return None
        return (self.measured_median_ms - self.steps_sum_ms) / self.measured_median_ms


@dataclass(frozen=True)
class Edge:
    caller: str
    callee: str
    calls: int


def _ms(span: Mapping[str, Any]) -> float:
    return (int(span["end_ns"]) - int(span["start_ns"])) / 1e6


def breakdowns(
    spans: Sequence[Mapping[str, Any]], measured_median_ms: Mapping[str, float | None]
) -> list[StageBreakdown]:
    by_trace: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[str(span.get("trace_id"))].append(span)
    per_stage: dict[str, list[list[Mapping[str, Any]]]] = defaultdict(list)
    for trace in by_trace.values():
        root = _invoke(trace)
        if root is None or root["attributes"].get("http.response.status_code") != 200:
            continue
        per_stage[str(root["attributes"].get("tenantproxy.stage"))].append(trace)
    return [
        _breakdown(stage, traces, measured_median_ms.get(stage))
        for stage, traces in sorted(per_stage.items())
    ]


def _invoke(trace: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The access API's ``invoke`` span: the root, or the child of Locust's span."""
    roots = {s.get("span_id") for s in trace if s.get("service") == LOCUST}
    return next(
        (s for s in trace if s["name"] == ROOT and s.get("parent_id") in roots | {None}), None
    )


def _locust(trace: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((s for s in trace if s.get("service") == LOCUST and not s.get("parent_id")), None)


def _breakdown(
    stage: str, traces: list[list[Mapping[str, Any]]], measured_ms: float | None
) -> StageBreakdown:
    per_trace: list[tuple[float, dict[tuple[str, str], float]]] = []
    order: dict[tuple[str, str], float] = {}
    roots: list[float] = []
    for trace in traces:
        root = _invoke(trace)
        assert root is not None  # breakdowns kept only the traces that have one
        roots.append(_ms(root))
        per_step: dict[tuple[str, str], float] = defaultdict(float)
        for span in trace:
            if span is root or span.get("parent_id") is None:
                continue
            key = (str(span["service"]), str(span["name"]))
            per_step[key] += _ms(span)
            offset = (int(span["start_ns"]) - int(root["start_ns"])) / 1e6
            order[key] = min(order.get(key, offset), offset)
        own_ms = sum(ms for (service, _), ms in per_step.items() if service == "accessapi")
        per_step[BETWEEN] = max(0.0, _ms(root) - own_ms)
        order[BETWEEN] = float("inf")
        locust = _locust(trace)
        if locust is not None:
            per_step[HTTP] = max(0.0, _ms(locust) - _ms(root))
            order[HTTP] = -1.0
        per_trace.append((_ms(locust if locust is not None else root), per_step))
    band = _median_band(per_trace, measured_ms)
    medians = {key: sum(steps.get(key, 0.0) for steps in band) / len(band) for key in order}
    counts = {key: sum(key in steps for steps in band) for key in order}
    own = {key: ms for key, ms in medians.items() if key[0] in OWN_SERVICES}
    total = sum(own.values())
    if measured_ms:
        medians[UNEXPLAINED] = measured_ms - total
        order[UNEXPLAINED] = float("inf")
        counts[UNEXPLAINED] = 0
    whole = measured_ms or total  # the shares add up to 100 % of it
    steps = tuple(
        Step(
            service,
            name,
            ms,
            ms / whole if service in OWN_SERVICES and whole else None,
            counts[(service, name)],
        )
        for (service, name), ms in sorted(medians.items(), key=lambda item: order[item[0]])
    )
    return StageBreakdown(stage, len(traces), steps, total, statistics.median(roots), measured_ms)


# The band's half width, in traces: this share of them, and no fewer than BAND_MIN_HALF.
BAND_HALF = 0.05
BAND_MIN_HALF = 5


def _median_band(
    per_trace: list[tuple[float, dict[tuple[str, str], float]]], measured_ms: float | None
) -> list[dict[tuple[str, str], float]]:
    """The steps of the traces whose end-to-end time ranks nearest the measured median (the
    traces' own median without one): the 5 % of them each side. Their means add up to those
    traces' mean time, the median: medians of the steps would not (a skewed step's median is far
    below its share of a median request). Centred on the measured median, not the traces' own:
    Locust's median counts the fast 429s that the traces (200s only) leave out, and a band wide
    in rank is wide in ms where the distribution is skewed (the traces' 40th-60th percentile
    missed the median by 19-21 % in a demo run whose p90 was 2.6-2.8x its p50)."""
    ranked = sorted(per_trace, key=lambda item: item[0])
    times = [total_ms for total_ms, _ in ranked]
    centre = len(ranked) // 2 if not measured_ms else bisect.bisect_left(times, measured_ms)
    half = max(BAND_MIN_HALF, round(len(ranked) * BAND_HALF))
    low = max(0, min(centre - half, len(ranked) - 2 * half))
    return [steps for _, steps in ranked[low : low + 2 * half]]


LISTED_BY_CHILD = ("TLS", "close", "query", "request")


def service_map(spans: Sequence[Mapping[str, Any]]) -> list[Edge]:
    """Caller → callee with the number of calls: a child span in another service, or a CLIENT
    span's ``peer.service``."""
    by_id = {span.get("span_id"): span for span in spans}
    calls: Counter[tuple[str, str]] = Counter()
    for span in spans:
        service = str(span.get("service"))
        parent = by_id.get(span.get("parent_id"))
        if parent is not None and parent.get("service") != service:
            calls[(str(parent.get("service")), service)] += 1
        peer = span.get("attributes", {}).get("peer.service")
        # Locust's request is already its invoke child's edge.
        if span.get("kind") == "CLIENT" and peer and span["name"] not in LISTED_BY_CHILD:
            calls[(service, str(peer))] += 1
    return [Edge(a, b, n) for (a, b), n in sorted(calls.items())]


def traces_json(run_dir: Path, measured: Mapping[str, float | None]) -> dict[str, Any] | None:
    path = run_dir / TRACES_FILE
    if not path.exists():
        return None
    spans = read_spans([path])
    return {
        "breakdown": [asdict(b) | {"gap_ratio": b.gap_ratio} for b in breakdowns(spans, measured)],
        "service_map": [asdict(edge) for edge in service_map(spans)],
    }


def step_ms_at_median(data: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """Per stage, the ms at the median of each step of the request's own services (Locust's
    HTTP + queueing and the access API's steps), from ``traces_json``; "unexplained" left out."""
    if data is None:
        return {}
    return {
        stage["stage"]: {
            step["name"]: step["median_ms"]
            for step in stage["steps"]
            if step["service"] in OWN_SERVICES and step["service"] != UNEXPLAINED[0]
        }
        for stage in data["breakdown"]
    }


def render_traces_html(data: Mapping[str, Any] | None) -> str:
    if data is None:
        return '<p class="no-data">No traces in this run (trace_sample_ratio = 0?).</p>'
    edges = "".join(
        f"<tr><td>{html.escape(e['caller'])} → {html.escape(e['callee'])}</td>"
        f"<td>{e['calls']}</td></tr>"
        for e in data["service_map"]
    )
    parts = [
        "<h3>Service map</h3>",
        f'<table class="service-map"><thead><tr><th>call</th><th>spans</th></tr></thead>'
        f"<tbody>{edges}</tbody></table>",
    ]
    for stage in data["breakdown"]:
        parts.append(_stage_html(stage))
    return "\n".join(parts)


def _stage_html(stage: Mapping[str, Any]) -> str:
    rows = []
    for step in stage["steps"]:
        is_own = step["service"] in OWN_SERVICES
        label = step["name"] if is_own else f"… of which {step['service']}: {step['name']}"
        share = f"{step['share'] * 100:.0f} %" if step["share"] is not None else ""
        rows.append(
            f"<tr><td>{html.escape(label)}</td><td>{step['median_ms']:.2f}</td>"
            f"<td>{share}</td></tr>"
        )
    measured = stage["measured_median_ms"]
    rows.append(f"<tr><th>sum of the steps</th><th>{stage['steps_sum_ms']:.2f}</th><th></th></tr>")
    rows.append(f"<tr><td>invoke span (median)</td><td>{stage['invoke_median_ms']:.2f}</td>"
                "<td></td></tr>")  # fmt: skip
    if measured:
        gap = stage["gap_ratio"] * 100
        verdict = "within" if abs(gap) <= 15 else "NOT within"
        rows.append(
            f"<tr><td>measured median (Locust)</td><td>{measured:.2f}</td>"
            f"<td>steps off by {gap:.1f} %: {verdict} 15 %</td></tr>"
        )
    title = (
        f"{html.escape(stage['stage'])} stage: {stage['traces']} traces, ms per step at the median"
    )
    return (
        f'<h3>{title}</h3><table class="breakdown" data-stage="{html.escape(stage["stage"])}">'
        f"<thead><tr><th>step</th><th>median ms</th><th>share</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def collect_traces(traces_dir: Path, run_dir: Path, start_ns: int, end_ns: int) -> int:
    """Copies the spans of the stack's processes that started in [start_ns, end_ns] into the
    run folder's ``traces.jsonl``; returns how many."""
    files = sorted(traces_dir.glob("*.jsonl")) if traces_dir.is_dir() else []
    kept = [s for s in read_spans(files) if start_ns <= int(s.get("start_ns") or 0) <= end_ns]
    with (run_dir / TRACES_FILE).open("w", encoding="utf-8") as out:
        for span in kept:
            out.write(json.dumps(span, separators=(",", ":")) + "\n")
    return len(kept)
