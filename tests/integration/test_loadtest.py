"""`tenantproxy loadtest` against a real stack: Locust's files, samples.csv and run.json appear,
the report opens in a browser with every chart drawn, and Locust's master/worker mode counts the
workers' requests.

The runs use tenants 0-4, switched to token login (iam_auth = "required") for the module, so
that the proxy stage does what the write-up's does. Set TENANTPROXY_TEST_LOADTEST_STATE_DIR to
run them against a stack brought up by hand.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from tenantproxy.loadtest.runner import LoadTestOptions, RunResult, run
from tenantproxy.loadtest.samples import read_samples
from tests.integration.browser import assert_every_chart_draws_lines, browser, charts_in
from tests.integration.tenant_secrets import tokens_required_for

pytestmark = pytest.mark.integration

STATE_DIR_ENV = "TENANTPROXY_TEST_LOADTEST_STATE_DIR"
QUICK = {
    "wait_min_s": 0.5,
    "wait_max_s": 1.0,
    "sample_interval_s": 2.0,
    "stop_timeout_s": 2,
    "tenants": 5,
}
__all__ = ["browser"]  # a fixture


@pytest.fixture(scope="module", autouse=True)
def tenants_log_in_with_tokens(stack_state_dir: Path) -> Iterator[None]:
    outputs = json.loads((stack_state_dir / "outputs.json").read_text())
    with tokens_required_for(outputs, [f"user{i}" for i in range(5)]):
        yield


@pytest.fixture(scope="module")
def stack_state_dir(request: pytest.FixtureRequest) -> Path:
    by_hand = os.environ.get(STATE_DIR_ENV)
    if by_hand:
        return Path(by_hand)
    stack = request.getfixturevalue("stack")
    assert stack.outputs.get("APIGatewayURL"), "the test stack runs no access API"
    state_dir: Path = stack.state_dir
    return state_dir


@pytest.fixture(scope="module")
def headless_run(stack_state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    options = LoadTestOptions(
        users=20,
        spawn_rate=10,
        run_time_s=20,
        report_dir=tmp_path_factory.mktemp("reports"),
        state_dir=stack_state_dir,
        **QUICK,  # type: ignore[arg-type]
    )
    return run(options, say=lambda line: None)


def instance_names(state_dir: Path) -> set[str]:
    outputs = json.loads((state_dir / "outputs.json").read_text())
    return {
        instance["name"]
        for key in ("ProxyClusterInstances", "NoProxyClusterInstances")
        for instance in outputs[key]
    }


def test_a_headless_run_leaves_locusts_report_and_csvs(headless_run: RunResult) -> None:
    run_dir = headless_run.run_dir
    assert headless_run.locust_exit_code == 0
    for name in ("locust.html", "locust_stats.csv", "locust_stats_history.csv"):
        assert (run_dir / name).stat().st_size > 0, name
    assert headless_run.report_index.is_file()


def test_samples_hold_series_for_both_stages_and_every_database_instance(
    headless_run: RunResult, stack_state_dir: Path
) -> None:
    series: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for sample in read_samples(headless_run.run_dir / "samples.csv"):
        series[(sample.source, sample.instance, sample.metric)].append(sample.value)
    for stage in ("proxy", "noproxy"):
        assert any(v > 0 for v in series[("stage", stage, "requests_per_s")]), stage
        assert series[("stage", stage, "p50_ms")], stage
        assert sum(series[("stage", stage, "http_5xx_per_s")]) == 0, stage
    for name in instance_names(stack_state_dir):
        for metric in ("cpu_percent", "threads_connected", "queries_per_s",
                       "connections_per_s", "innodb_rows_read_per_s"):  # fmt: skip
            assert series[("database", name, metric)], (name, metric)
    # A run of 20 s sampled every 2 s: about ten ticks per series, not one.
    assert len(series[("stage", "noproxy", "requests_per_s")]) >= 5


def test_the_runs_report_opens_in_a_browser_with_every_chart_drawn(
    headless_run: RunResult, browser: Browser, tmp_path: Path
) -> None:
    charts = charts_in(browser, headless_run.report_index, tmp_path / "report.png")
    assert_every_chart_draws_lines(charts)


def test_run_json_records_the_options_the_stack_and_the_machine(headless_run: RunResult) -> None:
    record = json.loads((headless_run.run_dir / "run.json").read_text())
    assert record["start"] < record["end"]
    assert record["options"]["users"] == 20 and record["options"]["wait_max_s"] == 1.0
    assert record["tenants"] >= 1
    assert "APIGatewayURL" in record["outputs"]
    assert "AdminCredentials" not in record["outputs"]
    assert record["machine"]["nproc"] >= 1


def test_workers_mode_runs_a_master_and_two_workers_whose_requests_count(
    stack_state_dir: Path, tmp_path: Path
) -> None:
    options = LoadTestOptions(
        users=10,
        spawn_rate=10,
        run_time_s=8,
        workers=2,
        report_dir=tmp_path,
        state_dir=stack_state_dir,
        **QUICK,  # type: ignore[arg-type]
    )
    result = run(options, say=lambda line: None)
    master_log = (result.run_dir / "locust-master.log").read_text()
    assert "2 workers connected" in master_log
    with (result.run_dir / "locust_stats.csv").open() as stats:
        aggregated = next(line for line in stats if ",Aggregated," in line)
    assert int(aggregated.split(",")[2]) > 0
    assert sorted(p.name for p in result.run_dir.glob("locust-worker*.log")) == [
        "locust-worker1.log",
        "locust-worker2.log",
    ]


def test_web_mode_serves_locusts_ui_at_the_address_written_to_outputs(
    stack_state_dir: Path, tmp_path: Path
) -> None:
    options = LoadTestOptions(
        users=4,
        spawn_rate=4,
        run_time_s=8,
        web=True,
        report_dir=tmp_path,
        state_dir=stack_state_dir,
        **QUICK,  # type: ignore[arg-type]
    )
    said: list[str] = []
    finished: list[RunResult] = []
    runner = threading.Thread(target=lambda: finished.append(run(options, say=said.append)))
    runner.start()
    outputs_file = stack_state_dir / "outputs.json"
    address = None
    deadline = time.monotonic() + 30
    while address is None and time.monotonic() < deadline and runner.is_alive():
        address = json.loads(outputs_file.read_text()).get("LocustAddress")
        time.sleep(0.2)
    assert address is not None, said
    page = None
    while page is None and time.monotonic() < deadline:  # written just before Locust listens
        try:
            page = httpx.get(address, timeout=10)
        except httpx.ConnectError:
            time.sleep(0.2)
    runner.join(timeout=120)
    assert page is not None and page.status_code == 200 and "locust" in page.text.lower()
    assert any(address in line for line in said)
    assert finished and finished[0].report_index.is_file()
    assert "LocustAddress" not in json.loads(outputs_file.read_text())


def test_the_traces_break_each_stages_median_into_steps_with_shares_and_a_service_map(
    headless_run: RunResult,
) -> None:
    run_dir = headless_run.run_dir
    assert (run_dir / "traces.jsonl").stat().st_size > 0
    traces = json.loads((run_dir / "summary.json").read_text())["traces"]
    by_stage = {b["stage"]: b for b in traces["breakdown"]}
    assert set(by_stage) == {"proxy", "noproxy"}
    for stage, breakdown in by_stage.items():
        names = {(s["service"], s["name"]) for s in breakdown["steps"]}
        for step in ("connect", "TLS", "login", "query", "close"):
            assert ("accessapi", step) in names, (stage, step)
        assert breakdown["traces"] >= 20, stage
        shares = [s["share"] for s in breakdown["steps"] if s["share"] is not None]
        assert abs(sum(shares) - 1) < 1e-6
        # Locust's spans root the traces: HTTP + queueing is a step, and the steps plus
        # "unexplained" are the measured median (how far off the steps are is reported, not
        # asserted: a figure of the run).
        assert ("locust", "HTTP + queueing (Locust span - invoke span)") in names, stage
        unexplained = [s for s in breakdown["steps"] if s["service"] == "report"]
        assert len(unexplained) == 1 and breakdown["gap_ratio"] is not None, stage
        total = sum(s["median_ms"] for s in breakdown["steps"] if s["share"] is not None)
        assert abs(total - breakdown["measured_median_ms"]) < 1e-6, (stage, breakdown)
    proxy_steps = {s["name"] for s in by_stage["proxy"]["steps"] if s["service"] == "proxy"}
    assert {"client login", "token check", "borrow wait", "backend query"} <= proxy_steps
    edges = {(e["caller"], e["callee"]) for e in traces["service_map"]}
    assert {("accessapi", "identity"), ("accessapi", "proxy"), ("proxy", "mariadb"),
            ("accessapi", "mariadb"), ("locust", "accessapi")} <= edges  # fmt: skip
    page = headless_run.report_index.read_text()
    assert 'class="breakdown" data-stage="proxy"' in page and "Service map" in page
