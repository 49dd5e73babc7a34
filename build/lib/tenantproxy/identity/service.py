"""Runs the STS adapter under uvicorn on the configured host and port (0: a free port)."""

from __future__ import annotations

from collections.abc import Callable

from tenantproxy.identity.config import IdentityConfig
from tenantproxy.identity.sts import build_sts_app
from tenantproxy.serving import serve_asgi


def run_identity_service(
    config: IdentityConfig,
    key: bytes,
    *,
    announce: Callable[[str], None],
    log_level: str = "info",
) -> None:
    """Serves until SIGINT/SIGTERM; calls ``announce("http://HOST:PORT")`` once listening."""
    serve_asgi(
        build_sts_app(config, key),
        host=config.host,
        port=config.port,
        announce=announce,
        log_level=log_level,
        access_log=False,
        lifespan="off",
    )
