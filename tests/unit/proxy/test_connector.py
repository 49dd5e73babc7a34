"""The connector's socket options on a backend whose server hung up at once."""

from __future__ import annotations

import asyncio

import uvloop

from tenantproxy.proxy.backends import BackendConnection, Target
from tenantproxy.proxy.connector import BASE_CAPABILITIES, _enable_keepalive
from tenantproxy.wire.mysql.client_connection import ClientConnection


def test_keepalive_on_a_connection_the_server_already_closed_is_skipped():
    # A server at max_connections sends ERROR 1040 as its greeting and hangs up: the socket
    # may be gone before the connector sets its options (an AttributeError once, which left
    # the lease's client waiting forever).
    async def closed_backend() -> BackendConnection:
        async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        target = Target("t", "writer", "127.0.0.1", port)
        login = ClientConnection(
            username="u", password=b"", database=None, capabilities=BASE_CAPABILITIES
        )
        loop = asyncio.get_running_loop()
        _, backend = await loop.create_connection(
            lambda: BackendConnection(target, 1024, login), "127.0.0.1", port
        )
        for _ in range(500):  # bounded: 5 s
            if backend.transport is None or backend.transport.is_closing():
                break
            await asyncio.sleep(0.01)
        server.close()
        _enable_keepalive(backend)  # must not raise
        return backend

    backend = uvloop.run(asyncio.wait_for(closed_backend(), 10))
    assert backend.transport is None or backend.transport.is_closing()
