"""The run report opens in a real browser (Debian's chromium, headless, no network) and every chart
draws its lines."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from tenantproxy.loadtest.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FIXTURE_RUN = Path(__file__).parents[1] / "unit" / "loadtest" / "fixtures" / "run"

# Every chart div holds a plotly plot; per chart: its traces' point counts and its SVG line paths.
CHARTS_DRAWN_JS = """
() => Array.from(document.querySelectorAll('.chart')).map(chart => {
    const plot = chart.querySelector('.js-plotly-plot');
    return {
        id: chart.dataset.chart,
        points: plot && plot.data ? plot.data.map(t => (t.x ? t.x.length : 0)) : [],
        paths: plot ? plot.querySelectorAll('.scatterlayer path.js-line').length : 0,
    };
})
"""
ALL_PLOTTED_JS = """
() => Array.from(document.querySelectorAll('.chart')).every(chart => {
    const plot = chart.querySelector('.js-plotly-plot');
    return plot && plot._fullLayout && plot.querySelector('.scatterlayer path.js-line');
})
"""

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/setup.sh)"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def charts_in(browser: Browser, index: Path, screenshot: Path) -> list[dict[str, Any]]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(index.as_uri())
        page.wait_for_function(ALL_PLOTTED_JS, timeout=30_000)
        page.screenshot(path=str(screenshot), full_page=True)
        charts: list[dict[str, Any]] = page.evaluate(CHARTS_DRAWN_JS)
        return charts
    finally:
        page.close()


def test_every_chart_of_the_report_draws_lines_with_points(
    browser: Browser, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run_dir)
    index = build_report(run_dir)

    charts = charts_in(browser, index, tmp_path / "report.png")

    assert len(charts) == 10
    for chart in charts:
        assert chart["points"], f"{chart['id']}: no traces"
        assert all(count > 0 for count in chart["points"]), f"{chart['id']}: {chart['points']}"
        assert chart["paths"] >= len(chart["points"]), f"{chart['id']}: {chart['paths']} paths"
    assert (tmp_path / "report.png").stat().st_size > 0
