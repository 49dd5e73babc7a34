"""The HTTP rules of a stage (400, 429, 500, 200) with a fake invocation, in process."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from tenantproxy.accessapi.api import StageEndpoint
from tenantproxy.accessapi.config import AccessApiConfig
from tenantproxy.accessapi.invocation_trace import NOT_TRACED, Steps
from tenantproxy.accessapi.metrics import StageMetrics
from tenantproxy.accessapi.stages import InvocationFailed, Rows

CONFIG = AccessApiConfig(
    tenants=10,
    rows=50,
    concurrency_limit=1,
    proxy_reader_endpoint="127.0.0.1:1",
    noproxy_replica_endpoints=["127.0.0.1:2"],
    ca_file="ca.pem",  # type: ignore[arg-type]
    secret_store="s.enc",  # type: ignore[arg-type]
    secrets_key_file="s.key",  # type: ignore[arg-type]
    identity_endpoint="http://127.0.0.1:3",
    region="us-east-1",
    account_id="123456789012",
    proxy_resource_id="prx",
    role_arn="arn:aws:iam::123456789012:role/tenant-access",
    access_principal_credentials="p.json",  # type: ignore[arg-type]
)


class FakeStage:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.is_blocking = False
        self.fails = False

    async def invoke(self, tenant: int, trace: Steps = NOT_TRACED) -> Rows:
        self.entered.set()
        if self.is_blocking:
            await self.release.wait()
        if self.fails:
            raise InvocationFailed("query: OperationalError: (1045, 'Access denied')")
        return [{"ID": tenant, "Column_A": "7"}]


def client_for(stage: FakeStage, metrics: StageMetrics) -> httpx.AsyncClient:
    endpoint = StageEndpoint("proxy", stage, metrics, CONFIG)
    app = Starlette(routes=[Route("/proxy_stage", endpoint.handle)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_a_valid_tenant_gets_the_rows_as_a_json_list_of_objects() -> None:
    async with client_for(FakeStage(), StageMetrics()) as client:
        response = await client.get("/proxy_stage?tenant=9")

    assert response.status_code == 200
    assert response.json() == [{"ID": 9, "Column_A": "7"}]


@pytest.mark.parametrize(
    "value", ["", "abc", "-1", "1.5", "10", "+1", " 1", "1e3", "0x1", "\u0661"]
)
async def test_a_bad_tenant_value_answers_400_naming_the_range(value: str) -> None:
    async with client_for(FakeStage(), StageMetrics()) as client:
        response = await client.get("/proxy_stage", params={"tenant": value})

    assert response.status_code == 400
    assert "expected ?tenant=N with N an integer from 0 to 9" in response.text


async def test_a_missing_tenant_answers_400() -> None:
    async with client_for(FakeStage(), StageMetrics()) as client:
        response = await client.get("/proxy_stage")

    assert response.status_code == 400
    assert response.text.startswith("missing tenant parameter")


async def test_a_failed_invocation_answers_500_and_logs_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = FakeStage()
    stage.fails = True
    metrics = StageMetrics()
    with caplog.at_level(logging.WARNING):
        async with client_for(stage, metrics) as client:
            response = await client.get("/proxy_stage?tenant=3")

    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert "proxy stage, tenant 3: query: OperationalError" in caplog.text
    assert metrics.errors_total == 1


async def test_past_the_concurrency_limit_a_request_answers_429_and_is_counted() -> None:
    stage = FakeStage()
    stage.is_blocking = True
    metrics = StageMetrics()
    async with client_for(stage, metrics) as client:
        held = asyncio.create_task(client.get("/proxy_stage?tenant=1"))
        await stage.entered.wait()
        throttled = await client.get("/proxy_stage?tenant=1")
        stage.release.set()
        first = await held

    assert throttled.status_code == 429
    assert first.status_code == 200
    assert (metrics.throttles_total, metrics.requests_total, metrics.in_flight) == (1, 2, 0)
