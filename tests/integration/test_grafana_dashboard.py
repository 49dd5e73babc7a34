"""docs/grafana-dashboard.json against what the stack's real proxy and access API expose.

Every panel's PromQL must name metrics (and labels) found in a scrape of the running processes'
``/metrics``, so that the dashboard a user imports draws lines rather than "No data". Labels
that Prometheus adds itself (``job``, ``instance``) and a histogram's ``le`` are allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tenantproxy.loadtest.report_charts import dashboard_charts
from tenantproxy.loadtest.report_summary import RunSamples
from tests.integration.tenant_secrets import tokens_required_for

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
TENANT = 32
SCRAPE_LABELS = {"job", "instance"}
# The live dashboard's panels on the database servers' side: they need an exporter on each
# mariadbd (mysqld_exporter, a process exporter), which the stack does not run (docs/prometheus.md).
NEEDS_A_DATABASE_EXPORTER = {"replica_cpu", "db_connections", "db_new_connections", "db_queries"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
PROMQL_WORDS |= {"and", "or", "unless", "inf", "nan"}


def exposed_labels(text: str) -> dict[str, set[str]]:
    """Sample name (``_total``, ``_bucket``, … included) → the label names it carries."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL expression uses."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels = set(
        re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", "".join(re.findall(r"{[^}]*}", expr)))
    )
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {name.strip() for name in grouping.split(",") if name.strip()}
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    bare = re.sub(r"{[^}]*}|\[[^\]]*\]", " ", bare)
    words = re.finditer(r"[a-zA-Z_:][\w:]*(\s*\()?", bare)
    metrics = {
        m.group(0) for m in words if m.group(1) is None and m.group(0).lower() not in PROMQL_WORDS
    }
    return metrics, labels


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            yield panel["title"], target


@pytest.fixture(scope="module")
def exposed(stack: Any) -> dict[str, set[str]]:
    """One scrape each of the stack's access API and proxy, after a request to each stage (so
    that the metrics labelled by status code and tenant exist)."""
    api_url = stack.outputs["APIGatewayURL"].rstrip("/")
    proxy_url = stack.outputs.get("ProxyMetricsEndpoint")
    assert proxy_url, "the test stack runs no proxy with metrics"
    with (
        tokens_required_for(stack.outputs, [f"user{TENANT}"]),
        httpx.Client(timeout=30, trust_env=False) as client,
    ):
        for path in ("/proxy_stage", "/no_proxy_stage"):
            answer = client.get(f"{api_url}{path}", params={"tenant": TENANT})
            assert answer.status_code == 200, answer.text
        labels = exposed_labels(client.get(f"{api_url}/metrics").text)
        for name, names in exposed_labels(client.get(proxy_url).text).items():
            labels.setdefault(name, set()).update(names)
    return labels


def test_names_in_reads_metrics_and_labels_out_of_promql() -> None:
    expr = 'histogram_quantile(0.9, sum by (stage, le) (rate(a_bucket{code=~"5.."}[1m]))) / b'

    assert names_in(expr) == ({"a_bucket", "b"}, {"stage", "le", "code"})


def test_every_panel_queries_metrics_and_labels_the_real_processes_expose(
    exposed: dict[str, set[str]],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    problems = []
    for title, target in panel_targets(dashboard):
        metrics, labels = names_in(target["expr"])
        assert metrics, f"{title!r}: no metric in {target['expr']!r}"
        missing = sorted(metrics - set(exposed))
        carried = set().union(*(exposed.get(name, set()) for name in metrics))
        legend = set(re.findall(r"{{\s*(\w+)\s*}}", target.get("legendFormat", "")))
        unknown = sorted((labels | legend) - carried - SCRAPE_LABELS - {"le"})
        if missing or unknown:
            problems.append(
                f"{title!r}: metrics not exposed {missing}, labels not carried {unknown}"
            )

    assert not problems, "\n".join(problems)


def test_the_dashboard_has_the_live_dashboard_s_panels_but_the_database_side() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    described = " ".join(panel.get("description", "") for panel in dashboard["panels"])
    live = {chart.chart_id for chart in dashboard_charts(RunSamples({}))} | {"process_cpu"}

    covered = {chart for chart in live if f"live dashboard's panel {chart}." in described}

    assert live - covered == NEEDS_A_DATABASE_EXPORTER
    assert all(panel["datasource"]["uid"] == "${DS_PROMETHEUS}" for panel in dashboard["panels"])
