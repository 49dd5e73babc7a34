"""Running an ASGI app (the identity service, the access API) under uvicorn, as a stack process:
on a socket bound first (port 0: a free one), saying where it listens once it accepts, and
exiting with status 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
import uvloop


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


def serve_asgi(
    app: Any,
    *,
    host: str,
    port: int,
    announce: Callable[[str], None],
    log_level: str = "info",
    use_uvloop: bool = False,
    **uvicorn_options: Any,
) -> None:
    """Serves until SIGINT/SIGTERM; calls ``announce("http://HOST:PORT")`` once listening."""
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    is_v6 = ":" in bound_host
    url = f"http://[{bound_host}]:{bound_port}" if is_v6 else f"http://{bound_host}:{bound_port}"
    config = uvicorn.Config(app, log_level=log_level.lower(), **uvicorn_options)
    server = _AnnouncingServer(config, lambda: announce(url))
    # uvicorn shuts down on SIGTERM, then raises it again for the handler it found; a no-op one
    # makes that a normal exit (status 0) instead of death by signal.
    is_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if is_main else None
    try:
        runner = uvloop.run if use_uvloop else asyncio.run
        runner(server.serve(sockets=[sock]))
    finally:
        sock.close()
        if is_main:
            signal.signal(signal.SIGTERM, previous)
