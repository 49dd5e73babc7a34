"""Runs the STS adapter under uvicorn on the configured host and port (0: a free port)."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Callable

import uvicorn

from tenantproxy.identity.config import IdentityConfig
from tenantproxy.identity.sts import build_sts_app


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that says where it listens once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_started()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_identity_service(
    config: IdentityConfig,
    key: bytes,
    *,
    announce: Callable[[str], None],
    log_level: str = "info",
) -> None:
    """Serves until SIGINT/SIGTERM; calls ``announce("http://HOST:PORT")`` once listening."""
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    server_config = uvicorn.Config(
        build_sts_app(config, key),
        log_level=log_level.lower(),
        access_log=False,
        lifespan="off",
    )
    server = _AnnouncingServer(server_config, lambda: announce(url))
    # uvicorn shuts down on SIGTERM, then raises it again for the handler it found; a no-op one
    # makes that a normal exit (status 0) instead of death by signal.
    is_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if is_main else None
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
        if is_main:
            signal.signal(signal.SIGTERM, previous)
