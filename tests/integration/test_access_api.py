"""The access API (API Gateway + Lambda of the write-up) over real HTTP, against the real stack.

The stack starts one API process (``APIGatewayURL``); this module starts two more with test-only
settings: one whose session policies are scoped to another tenant, one with a concurrency limit
of 1 and requests held open.
"""

from __future__ import annotations

import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest

from tenantproxy.stack.outputs import to_toml
from tenantproxy.stack.processes import free_ports, start_detached, stop, wait_for_port
from tests.integration.tenant_secrets import tokens_required_for

pytestmark = pytest.mark.integration

TENANT = 30
OTHER_TENANT = 31
USERS = [f"user{TENANT}", f"user{OTHER_TENANT}"]
COLUMNS = {"ID", "Column_A", "Column_B", "Column_C", "Column_D", "Column_E"}


@pytest.fixture(scope="module", autouse=True)
def tokens_required(stack: Any) -> Iterator[None]:
    with tokens_required_for(stack.outputs, USERS):
        yield


@pytest.fixture(scope="module")
def proxy_started(stack: Any) -> None:
    assert stack.outputs.get("ProxyPid") is not None, "the test stack runs no proxy"


@pytest.fixture(scope="module")
def api(stack: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.outputs["APIGatewayURL"], timeout=30) as client:
        yield client


def start_api(stack: Any, folder: Path, name: str, **overrides: Any) -> Iterator[httpx.Client]:
    """Another API process: the stack's config with ``overrides``; stopped afterwards."""
    state = Path(stack.outputs["StateDir"])
    config = tomllib.loads((state / "accessapi.toml").read_text())
    (port,) = free_ports(1)
    config.update(port=port, **overrides)
    config_file = folder / f"{name}.toml"
    config_file.write_text(to_toml(config))
    argv = [str(Path(sys.executable).parent / "tenantproxy"), "accessapi", "run", "--config"]
    record = start_detached(name, [*argv, str(config_file)], folder / f"{name}.log", port=port)
    try:
        wait_for_port(record, 30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        stop(record, 10)


@pytest.fixture(scope="module")
def other_scope_api(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("accessapi-scope")
    yield from start_api(stack, folder, "scoped-api", scope_override=f"user{OTHER_TENANT}")


@pytest.fixture(scope="module")
def limited_api(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("accessapi-limit")
    yield from start_api(stack, folder, "limited-api", concurrency_limit=1, hold_ms=1500)


def writer_rows(stack: Any, cluster: str, tenant: int, ids: list[int]) -> list[dict[str, Any]]:
    key = "ProxyClusterInstances" if cluster == "proxy" else "NoProxyClusterInstances"
    writer = next(i["endpoint"] for i in stack.outputs[key] if i["role"] == "writer")
    connection = stack.admin_connect(writer, cursorclass=pymysql.cursors.DictCursor)
    try:
        with connection.cursor() as cursor:
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(
                f"SELECT * FROM user_database{tenant}.mytable WHERE ID IN ({marks})", ids
            )
            return list(cursor.fetchall())
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "cluster"), [("/proxy_stage", "proxy"), ("/no_proxy_stage", "noproxy")]
)
def test_each_stage_answers_200_with_five_rows_the_writer_holds(
    stack: Any, api: httpx.Client, proxy_started: None, path: str, cluster: str
) -> None:
    response = api.get(path, params={"tenant": TENANT})

    assert response.status_code == 200, response.text
    rows = response.json()
    assert len(rows) == 5
    assert all(set(row) == COLUMNS for row in rows)
    ids = sorted(row["ID"] for row in rows)
    assert all(1 <= i <= stack.settings.rows for i in ids)
    assert sorted(rows, key=lambda r: r["ID"]) == writer_rows(stack, cluster, TENANT, ids)


def test_the_proxy_stage_answers_500_when_the_session_policy_names_another_tenant(
    other_scope_api: httpx.Client, proxy_started: None
) -> None:
    refused = other_scope_api.get("/proxy_stage", params={"tenant": TENANT})
    # The policy's own tenant still works: the 500 comes from the scope, not from the setup.
    allowed = other_scope_api.get("/proxy_stage", params={"tenant": OTHER_TENANT})

    assert (refused.status_code, refused.text) == (500, "Internal Server Error")
    assert allowed.status_code == 200, allowed.text
    metrics = other_scope_api.get("/metrics.json").json()["proxy"]
    assert metrics["errors_total"] == 1
    assert metrics["responses_total"] == {"200": 1, "500": 1}


@pytest.mark.parametrize("path", ["/proxy_stage", "/no_proxy_stage"])
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?tenant=", "invalid tenant ''"),
        ("?tenant=abc", "invalid tenant 'abc'"),
        ("?tenant=-1", "invalid tenant '-1'"),
        ("?tenant=1.5", "invalid tenant '1.5'"),
        ("?tenant=%D9%A1", "invalid tenant"),  # an Arabic-Indic digit one: not ASCII
        ("?tenant=110", "no tenant 110"),
        ("?tenant=1&tenant=2", "repeated tenant parameter"),
        ("", "missing tenant parameter"),
    ],
)
def test_a_bad_tenant_value_answers_400_with_a_clear_message(
    api: httpx.Client, path: str, query: str, message: str
) -> None:
    response = api.get(path + query)

    assert response.status_code == 400
    assert message in response.text
    assert "expected ?tenant=N with N an integer from 0 to 109" in response.text


def test_a_request_past_the_concurrency_limit_answers_429_and_is_counted(
    limited_api: httpx.Client,
) -> None:
    held: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: held.append(limited_api.get("/no_proxy_stage", params={"tenant": TENANT}))
    )
    first.start()
    try:
        # Wait (on the API's own gauge) until the first request holds the one slot.
        while limited_api.get("/metrics.json").json()["noproxy"]["in_flight"] == 0:
            assert first.is_alive(), "the first request finished before it was seen in flight"
        throttled = limited_api.get("/no_proxy_stage", params={"tenant": TENANT})
    finally:
        first.join()

    assert throttled.status_code == 429
    assert "concurrency_limit" in throttled.text
    assert held[0].status_code == 200
    metrics = limited_api.get("/metrics.json").json()["noproxy"]
    assert metrics["throttles_total"] == 1
    assert metrics["responses_total"] == {"200": 1, "429": 1}


def test_metrics_count_each_stage_s_requests_by_status(
    api: httpx.Client, proxy_started: None
) -> None:
    before = api.get("/metrics.json").json()
    for _ in range(3):
        assert api.get("/no_proxy_stage", params={"tenant": TENANT}).status_code == 200
    assert api.get("/no_proxy_stage", params={"tenant": "x"}).status_code == 400
    assert api.get("/proxy_stage", params={"tenant": TENANT}).status_code == 200
    after = api.get("/metrics.json").json()

    assert set(after) == {"proxy", "noproxy"}
    noproxy, proxy = after["noproxy"], after["proxy"]
    assert set(noproxy) == {
        "requests_total",
        "responses_total",
        "in_flight",
        "in_flight_peak_since_last_scrape",
        "throttles_total",
        "errors_total",
        "latency_ms",
        "latency_ms_count",
        "window_s",
    }
    assert noproxy["requests_total"] - before["noproxy"]["requests_total"] == 4
    assert proxy["requests_total"] - before["proxy"]["requests_total"] == 1
    codes_before = before["noproxy"]["responses_total"]
    assert noproxy["responses_total"]["200"] - codes_before.get("200", 0) == 3
    assert noproxy["responses_total"]["400"] - codes_before.get("400", 0) == 1
    assert len(noproxy["latency_ms"]) == noproxy["latency_ms_count"] == 4
    assert all(ms > 0 for ms in noproxy["latency_ms"])
    assert len(proxy["latency_ms"]) == 1
    assert noproxy["in_flight"] == 0
    assert noproxy["in_flight_peak_since_last_scrape"] == 1
    assert api.get("/healthz").status_code == 200


def _replica_status(stack: Any) -> dict[str, tuple[int, int]]:
    """Per no-proxy replica: (Threads_connected, Aborted_clients), the admin's own included."""
    figures = {}
    for endpoint in stack.outputs["NoProxyReplicaEndpoints"]:
        connection = stack.admin_connect(endpoint)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN "
                    "('Threads_connected', 'Aborted_clients')"
                )
                status = {name: int(value) for name, value in cursor.fetchall()}
        finally:
            connection.close()
        figures[endpoint] = (status["Threads_connected"], status["Aborted_clients"])
    return figures


def test_each_invocation_says_goodbye_with_com_quit_and_leaves_no_connection(
    stack: Any, api: httpx.Client
) -> None:
    # The invocation answers without waiting for the server's side of the close; the server
    # must still get COM_QUIT (MariaDB counts a client gone without it in Aborted_clients).
    before = _replica_status(stack)
    for _ in range(6):
        assert api.get("/no_proxy_stage", params={"tenant": TENANT}).status_code == 200
    for _ in range(50):  # the connections end in the background: 5 s at most
        after = _replica_status(stack)
        if all(after[e][0] <= before[e][0] for e in before):
            break
        threading.Event().wait(0.1)
    assert {e: figures[0] for e, figures in after.items()} == {
        e: figures[0] for e, figures in before.items()
    }
    assert {e: figures[1] for e, figures in after.items()} == {
        e: figures[1] for e, figures in before.items()
    }
