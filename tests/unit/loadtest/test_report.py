"""The run report, built from the synthetic run folder in ``fixtures/run``.

The fixture holds four sweeps (t = 0, 5, 10, 15 s) of every series the runner writes, Locust's stats
for 620 proxy and 600 no-proxy requests, and a ``run.json``. The expected figures below are worked
out by hand from those files.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tenantproxy.loadtest.report import (
    build_report,
    render_summary_text,
    summarize_run,
    summary_table,
)
from tenantproxy.loadtest.report_charts import dashboard_charts
from tenantproxy.loadtest.report_summary import FIELDS, RATIO_LABEL, RunSamples

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run"
PANELS = {
    "http_5xx",
    "latency",
    "replica_cpu",
    "db_connections",
    "in_flight",
    "requests",
    "db_new_connections",
    "db_queries",
    "proxy_connections",
    "borrow_latency",
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    return run


def record_noproxy_auth(run_dir: Path, auth: str) -> None:
    """As the runner records the stack's noproxy_auth in run.json's outputs."""
    path = run_dir / "run.json"
    run = json.loads(path.read_text())
    run["outputs"] = {"NoProxyAuth": auth}
    path.write_text(json.dumps(run))


def drop_samples(run_dir: Path, keep: Callable[[dict[str, str]], bool]) -> None:
    """Rewrites samples.csv without the rows for which ``keep(row)`` is false."""
    path = run_dir / "samples.csv"
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(
            file, fieldnames=["time_s", "source", "instance", "metric", "value"]
        )
        writer.writeheader()
        writer.writerows(row for row in rows if keep(row))


def chart_div(page: str, chart_id: str) -> str:
    start = page.index(f'data-chart="{chart_id}"')
    end = page.find('<div class="chart"', start)
    return page[start : end if end != -1 else len(page)]


def test_build_report_writes_the_summaries_and_the_page_into_the_run_folder(run_dir: Path) -> None:
    index = build_report(run_dir)

    assert index == run_dir / "index.html"
    for name in ("index.html", "summary.json", "summary.md"):
        assert (run_dir / name).stat().st_size > 0
    # The runner's files stay as they were.
    assert (run_dir / "samples.csv").read_bytes() == (FIXTURE_RUN / "samples.csv").read_bytes()


def test_summary_figures_are_those_worked_out_by_hand(run_dir: Path) -> None:
    stages = summarize_run(run_dir).stages
    proxy, noproxy = stages["proxy"], stages["noproxy"]

    # From locust_stats.csv.
    assert (proxy.requests, proxy.failures, proxy.requests_per_s) == (620, 0, 10.33)
    assert (noproxy.requests, noproxy.failures, noproxy.requests_per_s) == (600, 150, 10.0)
    assert proxy.failure_ratio == 0.0
    assert noproxy.failure_ratio == pytest.approx(150 / 600)
    assert (proxy.median_ms, proxy.p90_ms, proxy.average_ms) == (60, 110, 70.25)
    assert (noproxy.median_ms, noproxy.p90_ms, noproxy.average_ms) == (95, 240, 120.5)
    # http_5xx_per_s: proxy 0,0,0,0; no-proxy 1,2,3,2 -> mean 2/s = 120/min.
    assert proxy.http_5xx_per_minute == 0.0
    assert noproxy.http_5xx_per_minute == pytest.approx(120.0)
    # Replica CPU (writers at 90 % are left out): proxy 10+5, 20+5, 30+5, 20+5 = 15, 25, 35, 25;
    # no-proxy 40+40, 60+60, 80+80, 60+60 = 80, 120, 160, 120.
    assert proxy.replica_cpu_peak_percent == 35.0
    assert proxy.replica_cpu_mean_percent == pytest.approx(25.0)
    assert noproxy.replica_cpu_peak_percent == 160.0
    assert noproxy.replica_cpu_mean_percent == pytest.approx(120.0)
    # threads_connected over writer + replicas: proxy 3+12+10 at t=10; no-proxy 2+70+70.
    assert proxy.db_connections_peak == 25.0
    assert noproxy.db_connections_peak == 142.0


def test_ratio_is_proxy_over_noproxy_and_none_where_noproxy_is_zero(run_dir: Path) -> None:
    summary = summarize_run(run_dir)
    ratio = summary.ratio

    assert set(ratio) == {name for name, _ in FIELDS}
    assert ratio["requests_per_s"] == pytest.approx(10.33 / 10.0)
    assert ratio["median_ms"] == pytest.approx(60 / 95)
    assert ratio["replica_cpu_peak_percent"] == pytest.approx(35 / 160)
    assert ratio["db_connections_peak"] == pytest.approx(25 / 142)
    assert ratio["http_5xx_per_minute"] == 0.0

    drop_samples(
        run_dir, lambda row: row["metric"] != "http_5xx_per_s" or row["instance"] != "noproxy"
    )
    assert summarize_run(run_dir).ratio["http_5xx_per_minute"] is None


def test_summary_json_holds_each_stage_the_ratios_and_the_run(run_dir: Path) -> None:
    build_report(run_dir)
    written = json.loads((run_dir / "summary.json").read_text())

    assert set(written) == {"stages", "ratio", "run", "findings", "traces"}
    assert written["traces"] is None  # the fixture run has no traces.jsonl
    assert set(written["stages"]) == {"proxy", "noproxy"}
    assert set(written["stages"]["proxy"]) == {name for name, _ in FIELDS}
    assert written["stages"]["noproxy"]["http_5xx_per_minute"] == pytest.approx(120.0)
    assert written["ratio"]["replica_cpu_mean_percent"] == pytest.approx(25 / 120)
    assert written["run"]["options"]["users"] == 20


def test_summary_markdown_has_the_table_and_the_differences_from_aws(run_dir: Path) -> None:
    record_noproxy_auth(run_dir, "password")
    build_report(run_dir)
    markdown = (run_dir / "summary.md").read_text()

    assert f"| figure | proxy | noproxy | {RATIO_LABEL} |" in markdown
    assert "| HTTP 5xx per minute | 0 | 120 | 0x |" in markdown
    assert "2 cores" in markdown
    assert "ran the native-password variant (noproxy_auth = password)" in markdown
    assert "- options.users: 20" in markdown


def test_text_table_has_a_column_per_stage_the_ratio_and_a_row_per_figure(run_dir: Path) -> None:
    text = render_summary_text(summarize_run(run_dir))
    header, rule, *rows = text.splitlines()

    assert header.split() == ["proxy", "noproxy", *RATIO_LABEL.split()]
    assert set(rule) == {"-", " "}
    assert [row[: len(label)] for row, (_, label) in zip(rows, FIELDS, strict=True)] == [
        label for _, label in FIELDS
    ]
    cpu_peak = next(row for row in rows if row.startswith("replica CPU peak"))
    assert cpu_peak.split()[-3:] == ["35", "160", "0.22x"]
    assert summary_table(run_dir) == text


def test_page_has_one_chart_div_per_panel_and_the_summary_links_and_differences(
    run_dir: Path,
) -> None:
    record_noproxy_auth(run_dir, "token")
    page = build_report(run_dir).read_text()

    assert set(re.findall(r'<div class="chart" data-chart="([a-z0-9_]+)">', page)) == PANELS
    assert "No samples" not in page
    assert '<table class="summary">' in page
    assert '<table class="findings">' in page
    assert "ran the token variant (noproxy_auth = token)" in page
    for name in ("locust.html", "samples.csv", "locust_stats.csv", "summary.json", "run.json"):
        assert f'href="{name}"' in page
    # locust_stats_history.csv is not in this run, so it is not linked.
    assert 'href="locust_stats_history.csv"' not in page


def test_page_is_self_contained_with_plotly_embedded_once(run_dir: Path) -> None:
    page = build_report(run_dir).read_text()

    assert not re.search(r"<script[^>]*\ssrc=", page)
    assert not re.search(r"<link[^>]*\shref=", page)
    assert page.count("<script>") == 1 + len(PANELS)  # plotly.js, then one script per chart
    assert page.count("Plotly.newPlot(") == len(PANELS)


def test_run_parameters_are_escaped_in_the_page(run_dir: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info["options"]["host"] = "<script>alert(1)</script>"
    (run_dir / "run.json").write_text(json.dumps(info))

    page = build_report(run_dir).read_text()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


def test_a_secret_that_slipped_into_run_json_is_not_repeated(run_dir: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info["options"]["admin_password"] = "hunter2-not-a-real-one"
    (run_dir / "run.json").write_text(json.dumps(info))

    build_report(run_dir)

    assert "options.admin_password" in (run_dir / "index.html").read_text()
    for name in ("index.html", "summary.md", "summary.json"):
        assert "hunter2" not in (run_dir / name).read_text()


def test_an_unfinished_run_says_when_it_started(run_dir: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info["end"] = None
    (run_dir / "run.json").write_text(json.dumps(info))

    assert "Run started 2026-01-01T00:00:00+00:00." in build_report(run_dir).read_text()


def test_missing_series_leave_their_figures_empty_and_their_charts_say_so(run_dir: Path) -> None:
    drop_samples(
        run_dir,
        lambda row: (
            row["source"] not in ("proxy", "database")
            and not (row["instance"] == "noproxy" and row["metric"] == "p99_ms")
        ),
    )

    page = build_report(run_dir).read_text()
    summary = summarize_run(run_dir)

    assert summary.stages["proxy"].replica_cpu_peak_percent is None
    assert summary.stages["noproxy"].db_connections_peak is None
    assert summary.ratio["replica_cpu_mean_percent"] is None
    assert summary.stages["noproxy"].http_5xx_per_minute == pytest.approx(120.0)
    assert "No samples for this chart." in chart_div(page, "proxy_connections")
    assert "No samples for this chart." in chart_div(page, "replica_cpu")
    assert "No samples for: no proxy p99." in chart_div(page, "latency")
    assert "Plotly.newPlot(" in chart_div(page, "http_5xx")
    assert "n/a" in render_summary_text(summary)


def test_a_folder_without_samples_or_run_json_still_gets_a_report(run_dir: Path) -> None:
    (run_dir / "samples.csv").unlink()
    (run_dir / "run.json").unlink()

    page = build_report(run_dir).read_text()
    summary = summarize_run(run_dir)

    assert page.count("No samples for this chart.") == len(PANELS)
    assert summary.stages["proxy"].requests == 620
    assert summary.stages["proxy"].http_5xx_per_minute is None
    assert "share one machine's cores" in (run_dir / "summary.md").read_text()


def test_locust_rows_without_requests_give_no_latencies(run_dir: Path) -> None:
    stats = (run_dir / "locust_stats.csv").read_text().splitlines()
    na = ",".join(["N/A"] * 11)
    stats[2] = f"GET,proxy,0,0,0,0.0,0,0,0.0,0.0,0.0,{na}"
    (run_dir / "locust_stats.csv").write_text("\n".join(stats) + "\n")

    proxy = summarize_run(run_dir).stages["proxy"]

    assert (proxy.requests, proxy.failure_ratio, proxy.p90_ms) == (0, None, None)


def test_the_charts_draw_each_stage_in_its_own_colour_throughout(run_dir: Path) -> None:
    charts = dashboard_charts(RunSamples.read(run_dir / "samples.csv"))
    colours_by_stage: dict[str, set[str]] = {"proxy": set(), "no proxy": set()}
    for chart in charts:
        for line in chart.lines:
            stage = "no proxy" if line.name.startswith("no proxy") else "proxy"
            colours_by_stage[stage].add(line.colour)

    assert {chart.chart_id for chart in charts} == PANELS
    assert all(len(colours) == 1 for colours in colours_by_stage.values())
    assert colours_by_stage["proxy"] != colours_by_stage["no proxy"]


def test_new_database_connections_per_second_is_the_clusters_mean_churn(run_dir: Path) -> None:
    stages = summarize_run(run_dir).stages
    # noproxy: 8+8, 10+10, 12+12, 10+10 → mean 20; proxy: 0, 1+1, 0, 0 → mean 0.5.
    assert stages["noproxy"].db_new_connections_per_s == pytest.approx(20.0)
    assert stages["proxy"].db_new_connections_per_s == pytest.approx(0.5)
    # The second half (from the middle of the series' time span): 12+12, 10+10 and 0, 0.
    assert stages["noproxy"].db_new_connections_per_s_late == pytest.approx(22.0)
    assert stages["proxy"].db_new_connections_per_s_late == pytest.approx(0.0)


def test_findings_put_each_write_up_figure_beside_the_run_and_give_a_verdict(
    run_dir: Path,
) -> None:
    build_report(run_dir)
    markdown = (run_dir / "summary.md").read_text()
    written = json.loads((run_dir / "summary.json").read_text())["findings"]

    assert [f["name"] for f in written] == [
        "HTTP 5xx per minute",
        "replica CPU, no proxy / proxy",
        "proxy's database connections flat",
        "median latency",
        "p90 latency",
        "Lambda concurrency",
    ]
    assert "| HTTP 5xx per minute | no proxy ≈ 900, proxy 0 | no proxy 120.0, proxy 0.0 |" in (
        markdown
    )
    verdicts = {f["name"]: f["verdict"] for f in written}
    # The fixture: 120 5xx/min without the proxy, none with it; replica CPU 120 % against 25 %.
    assert verdicts["HTTP 5xx per minute"] == "reproduced"
    assert verdicts["replica CPU, no proxy / proxy"] == "reproduced"
    assert "4.80x" in written[1]["measured"]
    assert all(v in {"reproduced", "reversed", "not reproducible here"} for v in verdicts.values())
