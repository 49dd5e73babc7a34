"""Runs the access API under uvicorn (one worker, uvloop) until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable

import uvicorn
import uvloop

from tenantproxy.accessapi.api import build_access_api
from tenantproxy.accessapi.config import AccessApiConfig


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that says where it listens once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_started()


def run_access_api(
    config: AccessApiConfig, *, announce: Callable[[str], None], log_level: str = "info"
) -> None:
    """Serves until SIGINT/SIGTERM; calls ``announce("http://HOST:PORT")`` once listening."""
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    server_config = uvicorn.Config(
        build_access_api(config),
        log_level=log_level.lower(),
        # An access log line per request costs CPU at ~120 req/s; /metrics counts instead.
        access_log=False,
        lifespan="on",
        # Keep-alive as API Gateway's: Locust reuses its connections.
        timeout_keep_alive=60,
        backlog=2048,
    )
    server = _AnnouncingServer(server_config, lambda: announce(url))
    # uvicorn shuts down on SIGTERM, then raises it again for the handler it found; a no-op one
    # makes that a normal exit (status 0) instead of death by signal.
    is_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if is_main else None
    try:
        uvloop.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
        if is_main:
            signal.signal(signal.SIGTERM, previous)
