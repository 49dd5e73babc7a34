"""samples.csv: the long-format contract the report reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantproxy.loadtest.samples import COLUMNS, Sample, SamplesWriter, read_samples


def test_the_file_starts_with_the_contract_header(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    with SamplesWriter(path):
        pass
    assert path.read_text().splitlines() == [",".join(COLUMNS)]
    assert COLUMNS == ("time_s", "source", "instance", "metric", "value")


def test_rows_written_read_back_the_same(tmp_path: Path) -> None:
    rows = [
        Sample(5.0021, "stage", "proxy", "requests_per_s", 11.4),
        Sample(5.0021, "database", "noproxy-replica1", "cpu_percent", 37.5),
        Sample(5.0021, "proxy", "proxy", "backend_connections", 12),
    ]
    path = tmp_path / "samples.csv"
    with SamplesWriter(path) as writer:
        writer.write(rows[:1])
        writer.write(rows[1:])
        assert writer.rows_written == 3
    assert read_samples(path) == [
        Sample(5.002, "stage", "proxy", "requests_per_s", 11.4),
        Sample(5.002, "database", "noproxy-replica1", "cpu_percent", 37.5),
        Sample(5.002, "proxy", "proxy", "backend_connections", 12.0),
    ]
    assert path.read_text().splitlines()[1:] == [
        "5.002,stage,proxy,requests_per_s,11.4",
        "5.002,database,noproxy-replica1,cpu_percent,37.5",
        "5.002,proxy,proxy,backend_connections,12",
    ]


def test_each_batch_is_on_disk_before_the_writer_closes(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    with SamplesWriter(path) as writer:
        writer.write([Sample(1.0, "stage", "noproxy", "p99_ms", 250.0)])
        assert len(read_samples(path)) == 1


@pytest.mark.parametrize(
    ("source", "metric"), [("stage", "cpu_percent"), ("database", "rps"), ("nothing", "x")]
)
def test_a_sample_with_a_name_outside_the_contract_is_refused(source: str, metric: str) -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        Sample(0.0, source, "proxy", metric, 1.0)
