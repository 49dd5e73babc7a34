"""The proxy's Prometheus metrics, scraped from the stack's proxy while clients are connected."""

from __future__ import annotations

from typing import Any

import httpx
import pymysql
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.clients import ca_path, pymysql_connect

pytestmark = pytest.mark.integration


def scrape(stack: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(stack.outputs["ProxyMetricsEndpoint"], timeout=10).text
    return {
        sample.name: [(s.labels, s.value) for s in family.samples if s.name == sample.name]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    samples = metrics.get(name, [])
    return sum(v for found, v in samples if all(found.get(k) == w for k, w in labels.items()))


def test_metrics_show_open_clients_backends_and_counters(stack):
    before = scrape(stack)
    settings = {
        "endpoint": stack.outputs["ProxyEndpoint"],
        "user": "user1",
        "password": stack.secret("user1").password,
        "database": "user_database1",
        "ca_file": ca_path(stack.outputs),
    }
    with pymysql_connect(**settings) as connection, connection.cursor() as cursor:
        # An open transaction holds a backend in either pool mode (in transaction mode an idle
        # client holds none).
        cursor.execute("BEGIN")
        cursor.execute("SELECT 1")
        during = scrape(stack)
        connection.rollback()
    assert value(during, "tenantproxy_client_connections") >= 1
    assert value(during, "tenantproxy_database_connections", target="proxy-writer") >= 1
    assert value(during, "tenantproxy_database_connections_currently_borrowed") >= 1
    assert value(during, "tenantproxy_max_database_connections_allowed", target="proxy-writer") == (
        180
    )
    for counter in (
        "tenantproxy_client_connections_received_total",
        "tenantproxy_client_connections_setup_succeeded_total",
        "tenantproxy_client_connections_tls_total",
        "tenantproxy_database_connections_borrow_latency_us_count",
    ):
        assert value(during, counter) > value(before, counter), counter


def test_anything_but_get_metrics_is_not_found(stack):
    base = stack.outputs["ProxyMetricsEndpoint"].removesuffix("/metrics")
    assert httpx.get(base + "/other", timeout=10).status_code == 404


def test_metrics_carry_a_tenant_label_for_logged_in_tenants_only(stack):
    before = scrape(stack)
    settings = {
        "endpoint": stack.outputs["ProxyEndpoint"],
        "user": "user2",
        "password": stack.secret("user2").password,
        "database": "user_database2",
        "ca_file": ca_path(stack.outputs),
    }
    with pytest.raises(pymysql.err.OperationalError):
        pymysql_connect(**(settings | {"user": "sprayed-name-42", "password": "x"}))
    with pymysql_connect(**settings) as connection, connection.cursor() as cursor:
        # An open transaction holds a backend in either pool mode (in transaction mode an idle
        # client holds none).
        cursor.execute("BEGIN")
        cursor.execute("SELECT 1")
        during = scrape(stack)
        connection.rollback()
    assert value(during, "tenantproxy_tenant_client_connections", tenant="user2") >= 1
    assert (
        value(
            during, "tenantproxy_tenant_database_connections", tenant="user2", target="proxy-writer"
        )
        >= 1
    )
    succeeded = "tenantproxy_tenant_client_connections_setup_succeeded_total"
    assert value(during, succeeded, tenant="user2") == value(before, succeeded, tenant="user2") + 1
    labels = {found.get("tenant") for samples in during.values() for found, _ in samples}
    assert "sprayed-name-42" not in labels
