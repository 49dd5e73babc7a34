"""`tenantproxy loadtest --sweep` against a real stack: two steps of 20 s, one session.

The sweep's table holds each step's figures for both stages, the no-proxy stage's token logins
show up as database-side login CPU (auth_pam_tool and the db-login checker) while the proxy's
cluster pays none, and the knee chart draws 5xx/min and p90 of both stages against users.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tenantproxy.cli import main as cli
from tests.integration.conftest import RunningStack
from tests.integration.tenant_secrets import tokens_required_for

pytestmark = pytest.mark.integration

STEPS = (2, 4)


@pytest.fixture(scope="module")
def sweep_dir(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    report_dir = tmp_path_factory.mktemp("sweep-reports")
    argv = [
        "loadtest", "--sweep", ",".join(map(str, STEPS)), "--run-time", "20s",
        "--wait-min-s", "0.5", "--wait-max-s", "1", "--sample-interval-s", "2",
        "--tenants", "5", "--report-dir", str(report_dir), "--state-dir", str(stack.state_dir),
    ]  # fmt: skip
    with tokens_required_for(stack.outputs, [f"user{i}" for i in range(5)]):
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    found = re.search(r"sweep report: (\S+index\.html)", result.output.replace("\n", ""))
    assert found, result.output
    yield Path(found.group(1)).parent


def test_each_step_holds_both_stages_figures(sweep_dir: Path) -> None:
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["noproxy_auth"] == "token"
    assert [step["users"] for step in sweep["steps"]] == list(STEPS)
    for step in sweep["steps"]:
        assert Path(step["run_dir"]).parent == sweep_dir
        for stage in ("proxy", "noproxy"):
            figures = step["stages"][stage]
            assert figures["requests_per_s"] > 0, (step["users"], stage)
            assert figures["median_ms"] > 0 and figures["p90_ms"] >= figures["median_ms"]
            assert figures["http_5xx_per_minute"] == 0
        # Token logins checked by MariaDB cost the no-proxy cluster CPU; the proxy's pooled
        # backends log in with passwords, once.
        assert step["stages"]["noproxy"]["login_cpu_percent"] > 0
        assert (
            step["stages"]["proxy"]["login_cpu_percent"]
            < (step["stages"]["noproxy"]["login_cpu_percent"])
        )
    markdown = (sweep_dir / "sweep.md").read_text()
    assert "| users | stage | requests/s | 5xx/min | p50 ms | p90 ms |" in markdown


def test_the_knee_chart_draws_5xx_and_p90_against_users_for_both_stages(sweep_dir: Path) -> None:
    # plotly escapes "/" in its JSON as \u002f.
    page = (sweep_dir / "index.html").read_text().replace("\\u002f", "/")
    assert 'data-chart="knee"' in page
    for name in ("proxy 5xx/min", "no proxy 5xx/min", "proxy p90 ms", "no proxy p90 ms"):
        assert f'"name":"{name}"' in page, name
    assert '"x":[2,4]' in page
