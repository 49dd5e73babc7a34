"""The traces' breakdown: a trace rooted at Locust's span gets an "HTTP + queueing" step, the
steps and the "unexplained" row add up to the measured median; the map has locust → accessapi."""

from __future__ import annotations

from typing import Any

from tenantproxy.loadtest.report_traces import HTTP, UNEXPLAINED, breakdowns, service_map

MS = 1_000_000


def span(
    span_id: str,
    parent: str | None,
    service: str,
    name: str,
    start: int,
    end: int,
    **attributes: Any,
) -> dict[str, Any]:
    return {
        "trace_id": "t" * 32,
        "span_id": span_id,
        "parent_id": parent,
        "name": name,
        "service": service,
        "kind": "CLIENT",
        "start_ns": start * MS,
        "end_ns": end * MS,
        "attributes": attributes,
    }


def locust_trace() -> list[dict[str, Any]]:
    return [
        span("l", None, "locust", "request", 0, 20, **{"peer.service": "accessapi"}),
        span(
            "i",
            "l",
            "accessapi",
            "invoke",
            4,
            16,
            **{"tenantproxy.stage": "proxy", "http.response.status_code": 200},
        ),
        span("q", "i", "accessapi", "query", 5, 15, **{"peer.service": "proxy"}),
    ]


def test_a_locust_rooted_trace_adds_up_to_the_measured_median() -> None:
    (stage,) = breakdowns(locust_trace(), {"proxy": 21.0})
    steps = {(s.service, s.name): s for s in stage.steps}
    assert steps[HTTP].median_ms == 8.0
    assert steps[("accessapi", "query")].median_ms == 10.0
    assert stage.steps_sum_ms == 20.0
    assert steps[UNEXPLAINED].median_ms == 1.0
    shares = [s.share for s in stage.steps if s.share is not None]
    assert abs(sum(shares) - 1.0) < 1e-9
    assert stage.gap_ratio is not None and abs(stage.gap_ratio - 1 / 21) < 1e-9


def test_the_service_map_has_the_locust_to_accessapi_edge_once() -> None:
    edges = {(e.caller, e.callee): e.calls for e in service_map(locust_trace())}
    assert edges[("locust", "accessapi")] == 1


def sequential_trace(trace_id: str, steps: dict[str, int]) -> list[dict[str, Any]]:
    """Locust's span, 1 ms of HTTP each side of invoke, and the steps one after the other."""
    total = sum(steps.values())
    spans = [
        span("l", None, "locust", "request", 0, total + 2),
        span("i", "l", "accessapi", "invoke", 1, total + 1,
             **{"tenantproxy.stage": "proxy", "http.response.status_code": 200}),
    ]  # fmt: skip
    start = 1
    for n, (name, ms) in enumerate(steps.items()):
        spans.append(span(f"s{n}", "i", "accessapi", name, start, start + ms))
        start += ms
    return [{**s, "trace_id": trace_id} for s in spans]


def test_the_steps_of_a_median_request_add_up_even_when_each_step_is_skewed() -> None:
    # Every request takes 122 ms, slow in one of three steps: each step's median is its fast
    # 10 ms, and a sum of medians (32 ms) would be far below the median request.
    spans = []
    for i in range(9):
        slow = ("AssumeRole", "login", "query")[i % 3]
        durations = {name: 100 if name == slow else 10 for name in ("AssumeRole", "login", "query")}
        spans += sequential_trace(f"{i:032x}", durations)
    (stage,) = breakdowns(spans, {"proxy": 122.0})
    assert stage.gap_ratio is not None and abs(stage.gap_ratio) < 0.15
    assert abs(sum(s.median_ms for s in stage.steps) - 122.0) < 1e-9


def test_the_band_is_centred_on_the_measured_median_in_a_skewed_distribution() -> None:
    # 100 answered requests of i² ms (i = 1..100): their own median is ~2,500 ms; Locust's
    # measured median also counts fast 429s, which the traces leave out, and is 1,600 ms (i = 40).
    spans = []
    for i in range(1, 101):
        spans += sequential_trace(f"{i:032x}", {"login": i * i - 2})
    (stage,) = breakdowns(spans, {"proxy": 1600.0})
    assert stage.gap_ratio is not None and abs(stage.gap_ratio) < 0.05, stage.steps_sum_ms
    (own_median,) = breakdowns(spans, {"proxy": None})
    assert abs(own_median.steps_sum_ms - 2500) < 0.05 * 2500
