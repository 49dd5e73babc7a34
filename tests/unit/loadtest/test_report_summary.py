"""Reading samples.csv and adding a cluster's instances up."""

from __future__ import annotations

from pathlib import Path

from tenantproxy.loadtest.report_summary import (
    RunSamples,
    Series,
    cluster_of,
    format_value,
    is_replica,
    sum_latest,
)

HEADER = "time_s,source,instance,metric,value\n"


def write_samples(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "samples.csv"
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def test_instance_names_give_the_cluster_and_the_role() -> None:
    assert cluster_of("noproxy-replica2") == "noproxy"
    assert cluster_of("proxy-writer") == "proxy"
    assert is_replica("proxy-replica1")
    assert not is_replica("proxy-writer")


def test_samples_are_sorted_by_time_and_unreadable_values_skipped(tmp_path: Path) -> None:
    path = write_samples(
        tmp_path,
        [
            "10,stage,proxy,p50_ms,3",
            "0,stage,proxy,p50_ms,1",
            "5,stage,proxy,p50_ms,",
            "5,stage,proxy,p50_ms,nan",
            "5,stage,proxy,p50_ms,2",
        ],
    )

    series = RunSamples.read(path).get("stage", "proxy", "p50_ms")

    assert series == Series((0.0, 5.0, 10.0), (1.0, 2.0, 3.0))


def test_a_missing_samples_file_reads_as_no_samples(tmp_path: Path) -> None:
    samples = RunSamples.read(tmp_path / "samples.csv")

    assert samples.get("stage", "proxy", "p50_ms") is None
    assert samples.cluster_sum("proxy", "cpu_percent", replicas_only=True) is None


def test_cluster_sum_adds_each_members_latest_value_from_when_all_have_reported() -> None:
    # Two replicas sampled 0.2 s apart: each sum takes the other's latest value.
    first = Series((0.0, 5.0, 10.0), (10.0, 20.0, 30.0))
    second = Series((0.2, 5.2, 10.2), (1.0, 2.0, 3.0))

    total = sum_latest([first, second])

    assert total == Series((0.2, 5.0, 5.2, 10.0, 10.2), (11.0, 21.0, 22.0, 32.0, 33.0))


def test_cluster_sum_of_replicas_leaves_the_writer_and_the_other_cluster_out(
    tmp_path: Path,
) -> None:
    path = write_samples(
        tmp_path,
        [
            "0,database,proxy-writer,cpu_percent,90",
            "0,database,proxy-replica1,cpu_percent,10",
            "0,database,proxy-replica2,cpu_percent,5",
            "0,database,noproxy-replica1,cpu_percent,70",
        ],
    )
    samples = RunSamples.read(path)

    replicas = samples.cluster_sum("proxy", "cpu_percent", replicas_only=True)
    everything = samples.cluster_sum("proxy", "cpu_percent", replicas_only=False)

    assert replicas == Series((0.0,), (15.0,))
    assert everything == Series((0.0,), (105.0,))


def test_values_are_formatted_for_people() -> None:
    assert format_value(None, "median_ms") == "n/a"
    assert format_value(0.25, "failure_ratio") == "25.00 %"
    assert format_value(12345, "requests") == "12,345"
    assert format_value(1234.5, "median_ms") == "1,234"
    assert format_value(12.345, "median_ms") == "12.3"
    assert format_value(1.2345, "median_ms") == "1.23"
    assert format_value(35.0, "replica_cpu_peak_percent") == "35"


def test_the_second_half_mean_keeps_the_points_from_the_middle_of_the_time_span_on() -> None:
    warming = Series((0.0, 5.0, 10.0, 15.0, 20.0), (9.0, 7.0, 1.0, 1.0, 2.0))
    assert warming.second_half_mean() == (1.0 + 1.0 + 2.0) / 3
    assert Series((), ()).second_half_mean() is None
