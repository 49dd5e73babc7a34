"""The sampler's math on made-up scrapes: rates, percentiles, and the rows they make."""

from __future__ import annotations

import pytest

from tenantproxy.loadtest.samples import Sample
from tenantproxy.loadtest.scrapes import (
    ProxyScrape,
    StageScrape,
    database_samples,
    per_second,
    percentile,
    proxy_samples,
    stage_samples,
)


def by_metric(rows: list[Sample]) -> dict[str, float]:
    return {row.metric: row.value for row in rows}


def test_percentile_interpolates_between_closest_ranks_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.9) == pytest.approx(90.1)
    assert percentile(values, 0.99) == pytest.approx(99.01)


def test_percentile_of_one_value_is_that_value_and_of_none_is_an_error() -> None:
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_percentile_does_not_depend_on_the_order_of_the_values() -> None:
    assert percentile([30.0, 10.0, 20.0], 0.5) == 20.0


def test_per_second_is_the_counter_difference_over_the_elapsed_time() -> None:
    assert per_second(100, 160, 5.0) == pytest.approx(12.0)


def test_per_second_counts_a_counter_that_went_back_from_zero() -> None:
    # A restarted server's counter starts over: what it counted since is the rate's best guess.
    assert per_second(1000, 20, 5.0) == pytest.approx(4.0)


def test_per_second_over_no_time_is_zero() -> None:
    assert per_second(1, 5, 0.0) == 0.0


def stage(requests: int, responses: dict[str, int], latency: list[float], **kw: int) -> StageScrape:
    return StageScrape.from_json(
        {"requests_total": requests, "responses_total": responses, "latency_ms": latency, **kw}
    )


def test_stage_rows_take_rates_from_differences_and_percentiles_from_the_window() -> None:
    before = stage(100, {"200": 80, "500": 20}, [], throttles_total=0)
    after = stage(
        150,
        {"200": 110, "429": 5, "500": 35},
        [float(v) for v in range(1, 101)],
        throttles_total=5,
        in_flight_peak_since_last_scrape=9,
    )
    values = by_metric(stage_samples(10.0, "noproxy", before, after, 5.0))
    assert values == pytest.approx(
        {
            "requests_per_s": 10.0,
            "failures_per_s": 4.0,  # (5 + 15) non-2xx in 5 s
            "http_5xx_per_s": 3.0,
            "throttles_per_s": 1.0,
            "in_flight": 9.0,
            "p50_ms": 50.5,
            "p90_ms": 90.1,
            "p99_ms": 99.01,
        }
    )


def test_stage_rows_omit_percentiles_when_no_request_finished() -> None:
    quiet = stage(10, {"200": 10}, [])
    values = by_metric(stage_samples(5.0, "proxy", quiet, quiet, 5.0))
    assert not {"p50_ms", "p90_ms", "p99_ms"} & values.keys()
    assert values["requests_per_s"] == 0.0


def test_stage_rows_carry_time_source_and_instance() -> None:
    row = stage_samples(12.5, "proxy", stage(0, {}, []), stage(5, {"200": 5}, [3.0]), 5.0)[0]
    assert (row.time_s, row.source, row.instance) == (12.5, "stage", "proxy")


def test_database_rows_are_gauges_as_read_and_counters_as_rates() -> None:
    before = {"Threads_connected": 3, "Connections": 10, "Queries": 1000,
              "Innodb_rows_read": 0, "Aborted_connects": 1}  # fmt: skip
    after = {"Threads_connected": 7, "Connections": 60, "Queries": 6000,
             "Innodb_rows_read": 25000, "Aborted_connects": 6}  # fmt: skip
    rows = database_samples(5.0, "noproxy-replica1", before, after, 5.0, cpu_percent=42.0)
    assert {r.source for r in rows} == {"database"}
    assert {r.instance for r in rows} == {"noproxy-replica1"}
    assert by_metric(rows) == pytest.approx(
        {
            "cpu_percent": 42.0,
            "threads_connected": 7.0,
            "connections_per_s": 10.0,
            "queries_per_s": 1000.0,
            "innodb_rows_read_per_s": 5000.0,
            "aborted_connects_per_s": 1.0,
        }
    )


def test_database_rows_at_the_baseline_hold_only_the_gauges() -> None:
    rows = database_samples(0.0, "proxy-writer", {}, {"Threads_connected": 2, "Queries": 9},
                            0.0, cpu_percent=None)  # fmt: skip
    assert by_metric(rows) == {"threads_connected": 2.0}


PROMETHEUS_TEXT = """\
# TYPE tenantproxy_client_connections gauge
tenantproxy_client_connections 12
# TYPE tenantproxy_database_connections gauge
tenantproxy_database_connections{target="proxy-replica1"} 3
tenantproxy_database_connections{target="proxy-replica2"} 4
# TYPE tenantproxy_database_connections_borrow_latency_us summary
tenantproxy_database_connections_borrow_latency_us_sum {sum}
tenantproxy_database_connections_borrow_latency_us_count {count}
"""


def proxy_text(latency_sum_us: float, count: int) -> str:
    return PROMETHEUS_TEXT.replace("{sum}", str(latency_sum_us)).replace("{count}", str(count))


def test_proxy_scrape_sums_backend_connections_over_targets() -> None:
    scrape = ProxyScrape.from_text(proxy_text(0, 0))
    assert (scrape.client_connections, scrape.backend_connections) == (12.0, 7.0)


def test_proxy_borrow_latency_is_the_mean_of_the_interval_from_sum_and_count_deltas() -> None:
    before = ProxyScrape.from_text(proxy_text(1000.0, 10))
    after = ProxyScrape.from_text(proxy_text(4000.0, 30))
    values = by_metric(proxy_samples(5.0, before, after))
    assert values == {
        "client_connections": 12.0,
        "backend_connections": 7.0,
        "borrow_latency_us": 150.0,
    }


def test_proxy_borrow_latency_is_omitted_when_nothing_was_borrowed() -> None:
    same = ProxyScrape.from_text(proxy_text(1000.0, 10))
    assert "borrow_latency_us" not in by_metric(proxy_samples(5.0, same, same))


def test_a_proxy_without_those_metrics_reads_as_zeros() -> None:
    scrape = ProxyScrape.from_text("# TYPE other gauge\nother 1\n")
    assert scrape == ProxyScrape(0.0, 0.0, 0.0, 0.0)


def test_rows_read_stands_in_for_innodb_rows_read_on_mariadb_without_it() -> None:
    rows = database_samples(5.0, "proxy-replica1", {"Rows_read": 100}, {"Rows_read": 600}, 5.0,
                            cpu_percent=None)  # fmt: skip
    assert by_metric(rows) == {"innodb_rows_read_per_s": 100.0}


def test_borrow_latency_also_reads_as_two_counters_with_the_total_suffix() -> None:
    def text(latency_sum_us: float, count: int) -> str:
        return (
            "# TYPE tenantproxy_database_connections_borrow_latency_us_sum_total counter\n"
            f"tenantproxy_database_connections_borrow_latency_us_sum_total {latency_sum_us}\n"
            "# TYPE tenantproxy_database_connections_borrow_latency_us_count_total counter\n"
            f"tenantproxy_database_connections_borrow_latency_us_count_total {count}\n"
        )

    before, after = ProxyScrape.from_text(text(100.0, 1)), ProxyScrape.from_text(text(700.0, 4))
    assert by_metric(proxy_samples(5.0, before, after))["borrow_latency_us"] == 200.0
