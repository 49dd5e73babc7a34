"""OpenTelemetry spans of the proxy over the stack's real databases: a client's ``traceparent``
connect attribute makes the proxy's spans (client login, token check, borrow wait, backend
query) children of the caller's span; an unsampled caller gets none."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tenantproxy.config import TracingConfig
from tenantproxy.observability.tracing import read_spans
from tests.integration.clients import ca_path, connector_connect
from tests.integration.conftest import RunningStack
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

USER = "user3"
# Traces the proxy starts itself are (almost) never sampled: what is recorded below comes from
# following the caller's decision.
TINY_RATIO = 1e-9
PROXY_SPANS = {"client login", "token check", "borrow wait", "backend query"}


def traced_query(stack: RunningStack, spans_file: Path, traceparent: str | None) -> list[Any]:
    tracing = TracingConfig(sample_ratio=TINY_RATIO, spans_file=spans_file)
    config = proxy_config_from_stack(stack.outputs, tracing=tracing)
    attributes = {"traceparent": traceparent} if traceparent else {}
    with ProxyThread(config) as proxy:
        connection = connector_connect(
            proxy.endpoint("read_only"),
            USER,
            stack.secret(USER).password,
            f"user_database{USER.removeprefix('user')}",
            ca_path(stack.outputs),
            conn_attrs=attributes,
        )
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT ID FROM mytable WHERE ID IN (1, 2, 3)")
            rows = cursor.fetchall()
            cursor.execute("SELECT 1")  # a second query: not traced
            cursor.fetchall()
        finally:
            connection.close()
    assert len(rows) == 3
    return read_spans([spans_file]) if spans_file.exists() else []


def test_a_sampled_traceparent_makes_the_proxy_spans_children_of_the_callers_span(
    stack: RunningStack, tmp_path: Path
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    spans = traced_query(stack, tmp_path / "spans.jsonl", f"00-{trace_id}-{parent_id}-01")

    by_name = {span["name"]: span for span in spans}
    assert sorted(by_name) == sorted(PROXY_SPANS) and len(spans) == len(PROXY_SPANS)
    assert {span["trace_id"] for span in spans} == {trace_id}
    assert {span["service"] for span in spans} == {"proxy"}
    login = by_name["client login"]
    assert login["parent_id"] == parent_id and login["kind"] == "SERVER"
    assert login["status"] == "OK" and login["attributes"]["db.user"] == USER
    for step in ("token check", "borrow wait"):
        assert by_name[step]["parent_id"] == login["span_id"]
        assert login["start_ns"] <= by_name[step]["start_ns"] <= by_name[step]["end_ns"]
        assert by_name[step]["end_ns"] <= login["end_ns"]
    query = by_name["backend query"]
    assert query["parent_id"] == parent_id and query["kind"] == "CLIENT"
    assert query["attributes"]["peer.service"] == "mariadb"
    assert login["end_ns"] <= query["start_ns"] < query["end_ns"]


def test_an_unsampled_traceparent_and_an_unsampled_root_record_no_span(
    stack: RunningStack, tmp_path: Path
) -> None:
    unsampled = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    assert traced_query(stack, tmp_path / "a.jsonl", unsampled) == []
    assert traced_query(stack, tmp_path / "b.jsonl", None) == []


def test_a_malformed_traceparent_is_ignored_and_the_login_works(
    stack: RunningStack, tmp_path: Path
) -> None:
    assert traced_query(stack, tmp_path / "spans.jsonl", "00-not-a-trace-context-01") == []
