"""The run report opens in a real browser (Debian's chromium, headless, no network) and every chart
draws its lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tenantproxy.loadtest.report import build_report
from tests.integration.browser import assert_every_chart_draws_lines, browser, charts_in

pytestmark = pytest.mark.integration

FIXTURE_RUN = Path(__file__).parents[1] / "unit" / "loadtest" / "fixtures" / "run"
__all__ = ["browser"]  # a fixture


def test_every_chart_of_the_report_draws_lines_with_points(
    browser: Browser, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run_dir)
    index = build_report(run_dir)

    charts = charts_in(browser, index, tmp_path / "report.png")

    assert len(charts) == 10
    assert_every_chart_draws_lines(charts)
    assert (tmp_path / "report.png").stat().st_size > 0
