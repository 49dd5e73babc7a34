"""OpenTelemetry spans over the stack's real databases: a client's ``traceparent`` connect
attribute makes the proxy's spans (client login, token check, borrow wait, backend query) children
of the caller's span, an unsampled caller gets none; a request to the access API is one trace
across the access API (invoke → AssumeRole → token → connect → TLS → login → query → close) and
the proxy."""

from __future__ import annotations

import itertools
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantproxy.config import TracingConfig
from tenantproxy.observability.tracing import read_spans
from tests.integration.clients import ca_path, connector_connect
from tests.integration.conftest import RunningStack
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.tenant_secrets import tokens_required_for

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


# --- the stack's access API and proxy, one trace per request -----------------------------------

API_TENANT = 9
ACCESS_API_STEPS = ["AssumeRole", "db-auth token", "connect", "TLS", "login", "query", "close"]


def spans_of_trace(traces_dir: Path, stage: str, tenant: int) -> list[dict[str, Any]]:
    """The spans of the latest trace of this stage and tenant, from every spans file; waits for
    the batch processors to write them (they export every half second)."""
    deadline = time.monotonic() + 20
    while True:
        spans = read_spans(sorted(traces_dir.glob("*.jsonl")))
        roots = [
            s
            for s in spans
            if s["name"] == "invoke"
            and s["attributes"].get("tenantproxy.stage") == stage
            and s["attributes"].get("tenantproxy.tenant") == tenant
        ]
        if roots:
            trace_id = max(roots, key=lambda s: s["start_ns"])["trace_id"]
            found = [s for s in spans if s["trace_id"] == trace_id]
            if stage == "noproxy" or len({s["service"] for s in found}) == 2:
                return found
        assert time.monotonic() < deadline, "the trace's spans were not written"
        time.sleep(0.2)


def test_a_proxy_stage_request_is_one_trace_across_the_access_api_and_the_proxy(
    stack: RunningStack,
) -> None:
    with tokens_required_for(stack.outputs, [f"user{API_TENANT}"]):
        response = httpx.get(
            f"{stack.outputs['APIGatewayURL']}/proxy_stage",
            params={"tenant": API_TENANT},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    spans = spans_of_trace(Path(stack.outputs["TracesDir"]), "proxy", API_TENANT)

    by_name = {(s["service"], s["name"]): s for s in spans}
    root = by_name[("accessapi", "invoke")]
    steps = sorted((s for s in spans if s["parent_id"] == root["span_id"]
                    and s["service"] == "accessapi"), key=lambda s: s["start_ns"])  # fmt: skip
    assert [s["name"] for s in steps] == ACCESS_API_STEPS
    for earlier, later in itertools.pairwise(steps):
        assert earlier["end_ns"] <= later["start_ns"] + 1_000_000  # in order; 1 ms of clock skew
    assert root["start_ns"] <= steps[0]["start_ns"] and steps[-1]["end_ns"] <= root["end_ns"]
    assert by_name[("accessapi", "AssumeRole")]["attributes"]["peer.service"] == "identity"
    assert by_name[("accessapi", "login")]["attributes"]["peer.service"] == "proxy"
    assert root["attributes"]["http.response.status_code"] == 200
    # The proxy's spans are children of the invoke span: the connect attribute carried it.
    login = by_name[("proxy", "client login")]
    query = by_name[("proxy", "backend query")]
    assert login["parent_id"] == root["span_id"] == query["parent_id"]
    assert by_name[("proxy", "token check")]["parent_id"] == login["span_id"]
    # One clock (CLOCK_REALTIME) for both processes: the proxy accepts after the client began to
    # connect. (Ends are not compared across processes: the proxy may be preempted between
    # writing the OK and ending its span, while the client goes on.)
    assert by_name[("accessapi", "connect")]["start_ns"] <= login["start_ns"]
    assert login["end_ns"] <= query["start_ns"]


def test_a_no_proxy_stage_request_is_traced_by_the_access_api_alone(
    stack: RunningStack,
) -> None:
    response = httpx.get(
        f"{stack.outputs['APIGatewayURL']}/no_proxy_stage", params={"tenant": API_TENANT},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    spans = spans_of_trace(Path(stack.outputs["TracesDir"]), "noproxy", API_TENANT)

    assert {s["service"] for s in spans} == {"accessapi"}
    names = {s["name"] for s in spans}
    assert {"invoke", "connect", "TLS", "login", "query", "close"} <= names
    login = next(s for s in spans if s["name"] == "login")
    assert login["attributes"]["peer.service"] == "mariadb"


def test_a_traceparent_header_makes_invoke_a_child_of_the_callers_span(
    stack: RunningStack,
) -> None:
    # What Locust sends for a request it samples (loadtest/locustfile.py).
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    response = httpx.get(
        f"{stack.outputs['APIGatewayURL']}/no_proxy_stage", params={"tenant": API_TENANT},
        headers={"traceparent": f"00-{trace_id}-{caller_span}-01"}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    traces_dir, deadline = Path(stack.outputs["TracesDir"]), time.monotonic() + 20
    while not (roots := [s for s in read_spans(sorted(traces_dir.glob("*.jsonl")))
                         if s["name"] == "invoke" and s["trace_id"] == trace_id]):  # fmt: skip
        assert time.monotonic() < deadline, "no invoke span in the caller's trace"
        time.sleep(0.2)

    (root,) = roots
    assert root["parent_id"] == caller_span and root["service"] == "accessapi"
    assert root["attributes"]["tenantproxy.stage"] == "noproxy"


def test_a_request_locust_did_not_sample_leaves_no_span_in_the_access_api_or_the_proxy(
    stack: RunningStack,
) -> None:
    # What Locust sends for a request it does not sample: the stack traces every request
    # of its own (trace_sample_ratio = 1) but follows the caller's decision.
    with tokens_required_for(stack.outputs, [f"user{API_TENANT}"]):
        headers = {}
        for flags in ("00", "01"):  # the sampled one after: its spans come after any of the other
            trace_id = secrets.token_hex(16)
            headers[flags] = trace_id
            response = httpx.get(
                f"{stack.outputs['APIGatewayURL']}/proxy_stage", params={"tenant": API_TENANT},
                headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"},
                timeout=30,
            )  # fmt: skip
            assert response.status_code == 200, response.text
    traces_dir, deadline = Path(stack.outputs["TracesDir"]), time.monotonic() + 20
    # The proxy's spans of the sampled request: the proxy's exporter has passed the other's too.
    while {s["service"] for s in read_spans(sorted(traces_dir.glob("*.jsonl")))
           if s["trace_id"] == headers["01"]} != {"accessapi", "proxy"}:  # fmt: skip
        assert time.monotonic() < deadline, "the sampled request's spans never came"
        time.sleep(0.2)

    spans = read_spans(sorted(traces_dir.glob("*.jsonl")))
    assert [s for s in spans if s["trace_id"] == headers["00"]] == []
