"""Several processes' metrics as one exposition: summed, or combined as the caller names."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tenantproxy.observability.prometheus import Family, Sample, collected, merged


def part(open_now: int, healthy: int, received: int) -> list[dict[str, object]]:
    return collected(
        [
            Family("open", "open now", "gauge", lambda: [Sample("", open_now, {"target": "a"})]),
            Family("healthy", "1: up", "gauge", lambda: [Sample("", healthy, {"target": "a"})]),
            Family("received", "so far", "counter", lambda: [Sample("", received)]),
            Family(
                "latency_us", "µs", "summary", lambda: [Sample("count", 2), Sample("sum", 10.0)]
            ),
        ]
    )


def samples(text: bytes) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_workers_values_are_summed_unless_a_rule_says_otherwise():
    text = merged([part(3, 1, 10), part(4, 0, 5)], {"tenantproxy_healthy": min})
    found = samples(text)
    assert found["tenantproxy_open"] == 7
    assert found["tenantproxy_healthy"] == 0
    assert found["tenantproxy_received_total"] == 15
    assert found["tenantproxy_latency_us_count"] == 4
    assert found["tenantproxy_latency_us_sum"] == 20
    assert found["process_cpu_seconds_total"] > 0
    assert found["process_start_time_seconds"] > 0  # the earliest, not a sum of dates
