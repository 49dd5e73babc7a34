"""Headless Debian chromium driven by Playwright, for the report tests (no network here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

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


def assert_every_chart_draws_lines(charts: list[dict[str, Any]]) -> None:
    assert charts, "the page has no charts"
    for chart in charts:
        assert chart["points"], f"{chart['id']}: no traces"
        assert all(count > 0 for count in chart["points"]), f"{chart['id']}: {chart['points']}"
        assert chart["paths"] >= len(chart["points"]), f"{chart['id']}: {chart['paths']} paths"
