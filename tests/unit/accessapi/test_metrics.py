from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tenantproxy.accessapi.metrics import AccessApiMetrics, StageMetrics, prometheus_families
from tenantproxy.observability.prometheus import render


def test_a_scrape_reports_totals_by_status_and_starts_a_new_latency_window() -> None:
    metrics = StageMetrics()
    for status, ms in [(200, 10.0), (500, 20.0), (429, 0.1), (200, 30.0)]:
        metrics.received()
        metrics.answered(status, ms)

    first = metrics.scrape()
    second = metrics.scrape()

    assert first["requests_total"] == 4
    assert first["responses_total"] == {"200": 2, "429": 1, "500": 1}
    assert (first["throttles_total"], first["errors_total"]) == (1, 1)
    assert first["latency_ms"] == [10.0, 20.0, 0.1, 30.0]
    assert first["latency_ms_count"] == 4
    assert second["requests_total"] == 4
    assert (second["latency_ms"], second["latency_ms_count"]) == ([], 0)


def test_the_in_flight_peak_is_per_scrape_and_restarts_from_the_current_value() -> None:
    metrics = StageMetrics()
    for _ in range(3):
        metrics.admitted()
    metrics.released()
    metrics.released()

    first = metrics.scrape()
    second = metrics.scrape()

    assert (first["in_flight"], first["in_flight_peak_since_last_scrape"]) == (1, 3)
    assert (second["in_flight"], second["in_flight_peak_since_last_scrape"]) == (1, 1)


def test_latencies_past_the_sample_size_are_a_uniform_sample_of_the_window() -> None:
    metrics = StageMetrics(sample_size=100, seed=7)
    for i in range(10_000):
        metrics.answered(200, float(i))

    scraped = metrics.scrape()

    assert len(scraped["latency_ms"]) == 100
    assert scraped["latency_ms_count"] == 10_000
    # A uniform sample of 0..9999 has its mean near 5000; the first 100 would average 49.5.
    assert 3500 < sum(scraped["latency_ms"]) / 100 < 6500


def test_the_api_metrics_have_one_entry_per_stage() -> None:
    assert set(AccessApiMetrics().scrape()) == {"proxy", "noproxy"}


def scraped_text(metrics: AccessApiMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The Prometheus view parsed back: sample name → labels → value."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    text = render(prometheus_families(metrics)).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def test_the_prometheus_view_counts_each_stage_by_status_and_buckets_latency() -> None:
    metrics = AccessApiMetrics()
    noproxy = metrics.stages["noproxy"]
    for status, ms in [(200, 3.0), (200, 40.0), (500, 2000.0), (429, 0.1)]:
        noproxy.received()
        noproxy.answered(status, ms)
    noproxy.admitted()

    samples = scraped_text(metrics)

    stage = (("stage", "noproxy"),)
    assert samples["tenantproxy_accessapi_requests_total"][stage] == 4
    assert samples["tenantproxy_accessapi_requests_total"][(("stage", "proxy"),)] == 0
    responses = samples["tenantproxy_accessapi_responses_total"]
    assert responses[(("code", "200"), ("stage", "noproxy"))] == 2
    assert responses[(("code", "500"), ("stage", "noproxy"))] == 1
    assert samples["tenantproxy_accessapi_throttles_total"][stage] == 1
    assert samples["tenantproxy_accessapi_errors_total"][stage] == 1
    assert samples["tenantproxy_accessapi_in_flight"][stage] == 1
    buckets = samples["tenantproxy_accessapi_request_duration_seconds_bucket"]
    # 0.1 ms and 3 ms fall in le=0.005; 40 ms in le=0.05; 2 s in le=2.5. Buckets are cumulative.
    assert buckets[(("le", "0.005"), ("stage", "noproxy"))] == 2
    assert buckets[(("le", "0.025"), ("stage", "noproxy"))] == 2
    assert buckets[(("le", "0.05"), ("stage", "noproxy"))] == 3
    assert buckets[(("le", "2.5"), ("stage", "noproxy"))] == 4
    assert buckets[(("le", "+Inf"), ("stage", "noproxy"))] == 4
    assert samples["tenantproxy_accessapi_request_duration_seconds_count"][stage] == 4
    assert samples["tenantproxy_accessapi_request_duration_seconds_sum"][stage] == pytest.approx(
        2.0431
    )
    assert "process_cpu_seconds_total" in samples


def test_scraping_the_prometheus_view_leaves_the_sampler_s_window_alone() -> None:
    metrics = AccessApiMetrics()
    proxy = metrics.stages["proxy"]
    proxy.admitted()
    proxy.admitted()
    proxy.released()
    proxy.answered(200, 12.0)

    scraped_text(metrics)
    window = metrics.scrape()["proxy"]

    assert (window["latency_ms"], window["in_flight_peak_since_last_scrape"]) == ([12.0], 2)
