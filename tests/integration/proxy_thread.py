"""A proxy running in a thread of the test process, over the stack's real databases.

Tests use it when they need settings the stack's own proxy does not have (plain TCP, a small
packet limit, a small pool) or want to read the proxy's pools while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from tenantproxy.app import build_proxy
from tenantproxy.config import EndpointConfig, ProxyConfig, load_proxy_config
from tenantproxy.proxy.server import ProxyServer

T = TypeVar("T")


def proxy_config_from_stack(outputs: dict[str, Any], **overrides: Any) -> ProxyConfig:
    """The stack proxy's config, on free ports, with overrides."""
    config = load_proxy_config(Path(outputs["ProxyConfig"]), environ={})
    endpoints = [
        EndpointConfig(name=e.name, role=e.role, host="127.0.0.1", port=0) for e in config.endpoints
    ]
    # Its own metrics listener on a free port (the stack's proxy holds the configured one).
    return config.model_copy(update={"endpoints": endpoints, "metrics_port": 0, **overrides})


class ProxyThread:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server: ProxyServer | None = None
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        self._ready.result(timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self.server is not None:
            self._loop.call_soon_threadsafe(self.server.stop)
        self._thread.join(timeout=60)

    def endpoint(self, role: str) -> str:
        assert self.server is not None
        name = next(e.name for e in self.config.endpoints if e.role == role)
        host, port = self.server.bound_addresses[name]
        return f"{host}:{port}"

    def call(self, function: Callable[[], T]) -> T:
        """Runs function on the proxy's loop (to read its state safely) and returns its result."""
        assert self._loop is not None
        result: Future[T] = Future()

        def run() -> None:
            try:
                result.set_result(function())
            except BaseException as exc:
                result.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return result.result(timeout=30)

    def _run(self) -> None:
        try:
            uvloop.run(self._serve())
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.server = build_proxy(self.config, logging.getLogger("tenantproxy.test-proxy"))
        await self.server.start()
        self._ready.set_result(None)
        await self.server.serve()
