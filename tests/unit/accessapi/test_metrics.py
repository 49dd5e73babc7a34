from __future__ import annotations

from tenantproxy.accessapi.metrics import AccessApiMetrics, StageMetrics


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
