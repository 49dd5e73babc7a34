"""The live dashboard: during a short real load test, chromium opens the address ``loadtest``
wrote to outputs.json and sees the report's charts gain points as samples arrive."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tenantproxy.loadtest.runner import LoadTestOptions, RunResult, run
from tests.integration.browser import browser
from tests.integration.tenant_secrets import tokens_required_for

pytestmark = pytest.mark.integration

__all__ = ["browser"]  # a fixture
SCREENSHOT_ENV = "TENANTPROXY_DASHBOARD_SCREENSHOT"
POINTS_PER_CHART_JS = """
() => Object.fromEntries(Array.from(document.querySelectorAll('.chart'))
    .map(chart => [chart.dataset.chart, Number(chart.dataset.points || 0)]))
"""

PROCESS_LINES_JS = """
() => document.querySelector('[data-chart="process_cpu"]').data.map(trace => trace.name)
"""


@pytest.fixture(scope="module")
def stack_state_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    stack = request.getfixturevalue("stack")
    assert stack.outputs.get("APIGatewayURL"), "the test stack runs no access API"
    state_dir: Path = stack.state_dir
    outputs = json.loads((state_dir / "outputs.json").read_text())
    with tokens_required_for(outputs, [f"user{i}" for i in range(5)]):
        yield state_dir


def test_the_dashboard_charts_gain_points_while_the_load_test_runs(
    stack_state_dir: Path, browser: Browser, tmp_path: Path
) -> None:
    options = LoadTestOptions(
        users=10, spawn_rate=10, run_time_s=25, report_dir=tmp_path, state_dir=stack_state_dir,
        wait_min_s=0.5, wait_max_s=1.0, sample_interval_s=1.0, stop_timeout_s=2, tenants=5,
    )  # fmt: skip
    said: list[str] = []
    finished: list[RunResult] = []
    runner = threading.Thread(target=lambda: finished.append(run(options, say=said.append)))
    runner.start()
    try:
        address = _dashboard_address(stack_state_dir / "outputs.json", runner)
        assert address is not None, said
        assert any(address in line for line in said)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(address)
        first = _points_once_drawn(page)
        page.wait_for_timeout(6_000)
        second = page.evaluate(POINTS_PER_CHART_JS)
        for chart in ("http_5xx", "latency", "replica_cpu", "db_connections",
                      "db_new_connections", "in_flight", "process_cpu"):  # fmt: skip
            assert second[chart] > first[chart], (chart, first, second)
        processes = page.evaluate(PROCESS_LINES_JS)
        assert any(name.startswith("locust") for name in processes), processes
        assert {"proxy", "accessapi"} <= set(processes), processes
        assert sum(name.startswith("mariadb") or "replica" in name for name in processes) >= 2
        page.screenshot(path=str(_screenshot_path(tmp_path)), full_page=True)
    finally:
        runner.join(timeout=120)
    assert finished and finished[0].report_index.is_file()
    assert "DashboardAddress" not in json.loads((stack_state_dir / "outputs.json").read_text())


def _dashboard_address(outputs_file: Path, runner: threading.Thread) -> str | None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and runner.is_alive():
        address = json.loads(outputs_file.read_text()).get("DashboardAddress")
        if address:
            return str(address)
        time.sleep(0.2)
    return None


def _points_once_drawn(page: Page) -> dict[str, int]:
    """The points per chart once every chart has at least one, i.e. samples have arrived."""
    page.wait_for_function(
        f"() => {{ const p = ({POINTS_PER_CHART_JS})(); const v = Object.values(p);"
        " return v.length > 0 && p.latency > 0 && p.replica_cpu > 0; }",
        timeout=30_000,
    )
    points: dict[str, int] = page.evaluate(POINTS_PER_CHART_JS)
    return points


def _screenshot_path(tmp_path: Path) -> Path:
    import os

    return Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "live-dashboard.png")
