"""The HTTP side: API Gateway's two stages and Lambda's reserved concurrency, as one Starlette app.

Routes: ``GET /proxy_stage?tenant=N``, ``GET /no_proxy_stage?tenant=N`` (200 with the rows as a
JSON list of objects; 400 for a bad ``tenant``; 429 past the stage's concurrency limit; 500
``Internal Server Error`` when the invocation fails, the cause in the log), ``GET /metrics``
(Prometheus text) and ``GET /metrics.json`` (the load test's sampler; both in ``metrics.py``),
``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tenantproxy.accessapi.config import AccessApiConfig
from tenantproxy.accessapi.database import tls_context
from tenantproxy.accessapi.invocation_trace import (
    NOT_TRACED,
    SERVICE_NAME,
    InvocationTrace,
    Steps,
)
from tenantproxy.accessapi.metrics import AccessApiMetrics, StageMetrics, prometheus_families
from tenantproxy.accessapi.stages import (
    InvocationFailed,
    LoginSecret,
    NoProxyStage,
    ProxyStage,
    Stage,
    StoredPassword,
    TokenForReplica,
)
from tenantproxy.identity.access import TenantAccess
from tenantproxy.observability.prometheus import render
from tenantproxy.observability.tracing import TRACEPARENT, Tracing, start_tracing
from tenantproxy.secretstore import FileSecretStore

log = logging.getLogger("tenantproxy.accessapi")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class _RowsResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # default=str: DECIMAL or DATE columns would otherwise fail; mytable has neither.
        return json.dumps(content, separators=(",", ":"), default=str).encode()


class StageEndpoint:
    """One stage: admission against its concurrency limit, the invocation, its metrics."""

    def __init__(
        self,
        name: str,
        stage: Stage,
        metrics: StageMetrics,
        config: AccessApiConfig,
        tracing: Tracing | None = None,
    ) -> None:
        self.name = name
        self._stage = stage
        self._metrics = metrics
        self._tracing = tracing
        self._limit = config.concurrency_limit
        self._tenants = config.tenants
        self._hold_s = config.hold_ms / 1000

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        trace = InvocationTrace.begin(self._tracing, self.name, request.headers.get(TRACEPARENT))
        self._metrics.received()
        response = await self._answer(request, trace or NOT_TRACED)
        self._metrics.answered(response.status_code, (time.perf_counter() - started) * 1000)
        if trace is not None:
            tenant = self._tenant(request)
            trace.end(response.status_code, tenant if isinstance(tenant, int) else None)
        return response

    async def _answer(self, request: Request, trace: Steps) -> Response:
        # API Gateway throttles before Lambda runs the function, which then parses the input.
        if self._metrics.in_flight >= self._limit:
            return PlainTextResponse(
                f"Too Many Requests: the {self.name} stage runs {self._limit} invocations "
                "at most (concurrency_limit)",
                status_code=429,
            )
        self._metrics.admitted()
        try:
            tenant = self._tenant(request)
            if isinstance(tenant, str):
                return PlainTextResponse(tenant, status_code=400)
            try:
                rows = await self._stage.invoke(tenant, trace)
            except InvocationFailed as exc:
                log.warning("%s stage, tenant %d: %s", self.name, tenant, exc)
                return PlainTextResponse("Internal Server Error", status_code=500)
            if self._hold_s:
                await asyncio.sleep(self._hold_s)
            return _RowsResponse(rows)
        finally:
            self._metrics.released()

    def _tenant(self, request: Request) -> int | str:
        """The tenant number, or the message of a 400."""
        values = request.query_params.getlist("tenant")
        expected = f"expected ?tenant=N with N an integer from 0 to {self._tenants - 1}"
        if len(values) != 1:
            return f"{'missing' if not values else 'repeated'} tenant parameter: {expected}"
        value = values[0]
        if not (value.isascii() and value.isdigit()) or len(value) > 9:
            return f"invalid tenant {value[:20]!r}: {expected}"
        tenant = int(value)
        if tenant >= self._tenants:
            return f"no tenant {tenant}: {expected}"
        return tenant


def build_access_api(config: AccessApiConfig) -> Starlette:
    """The app; its lifespan owns the STS thread pool."""
    tls = tls_context(config.ca_file)
    executor = ThreadPoolExecutor(config.sts_threads, thread_name_prefix="sts")
    keys = json.loads(Path(config.access_principal_credentials).read_text())
    access = TenantAccess(
        sts_endpoint=config.identity_endpoint,
        region=config.region,
        account_id=config.account_id,
        proxy_resource_id=config.proxy_resource_id,
        role_arn=config.role_arn,
        access_key_id=keys["aws_access_key_id"],
        secret_access_key=keys["aws_secret_access_key"],
    )
    store = FileSecretStore(config.secret_store, Path(config.secrets_key_file).read_bytes())
    common: dict[str, Any] = {"rows": config.rows, "connect_timeout_s": config.connect_timeout_s}
    metrics = AccessApiMetrics()
    tracing = start_tracing(
        SERVICE_NAME,
        sample_ratio=config.tracing.sample_ratio,
        spans_file=config.tracing.spans_file,
        otlp_endpoint=config.tracing.otlp_endpoint,
    )
    proxy = ProxyStage(
        access,
        config.proxy_reader_endpoint,
        tls,
        executor,
        scope_override=config.scope_override,
        **common,
    )
    secret: LoginSecret = (
        TokenForReplica(access, config.noproxy_resource_id, executor)
        if config.noproxy_auth == "token"
        else StoredPassword(store, config.secret_name_prefix)
    )
    noproxy = NoProxyStage(secret, config.noproxy_replica_endpoints, tls, **common)

    families = prometheus_families(metrics)

    async def metrics_json(_request: Request) -> Response:
        return JSONResponse(metrics.scrape())

    async def metrics_text(_request: Request) -> Response:
        return Response(render(families), media_type=PROMETHEUS_TEXT)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            if tracing is not None:
                tracing.shutdown()  # exports the spans still queued

    routes = [
        # Bound methods: Starlette treats other callables as raw ASGI apps.
        Route(
            "/proxy_stage",
            StageEndpoint("proxy", proxy, metrics.stages["proxy"], config, tracing).handle,
        ),
        Route(
            "/no_proxy_stage",
            StageEndpoint("noproxy", noproxy, metrics.stages["noproxy"], config, tracing).handle,
        ),
        Route("/metrics", metrics_text),
        Route("/metrics.json", metrics_json),
        Route("/healthz", healthz),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
