"""Runs the access API under uvicorn (one worker, uvloop) until SIGINT/SIGTERM."""

from __future__ import annotations

from collections.abc import Callable

from tenantproxy.accessapi.api import build_access_api
from tenantproxy.accessapi.config import AccessApiConfig
from tenantproxy.serving import serve_asgi


def run_access_api(
    config: AccessApiConfig, *, announce: Callable[[str], None], log_level: str = "info"
) -> None:
    """Serves until SIGINT/SIGTERM; calls ``announce("http://HOST:PORT")`` once listening."""
    serve_asgi(
        build_access_api(config),
        host=config.host,
        port=config.port,
        announce=announce,
        log_level=log_level,
        use_uvloop=True,
        # An access log line per request costs CPU at ~120 req/s; /metrics counts instead.
        access_log=False,
        lifespan="on",
        # Keep-alive as API Gateway's: Locust reuses its connections.
        timeout_keep_alive=60,
        backlog=2048,
    )
