"""A bare byte relay: the floor any Python proxy on this loop can hope for.

uvloop + asyncio.Protocol, no parsing, no pool, no TLS termination: each accepted connection gets
its own upstream connection, and bytes are copied both ways with write-buffer flow control. The
benchmark runs it as a third mode next to the proxy, to show how much of the proxy's cost is
Python and the event loop, and how much is the proxy's own work.

    python bench/bare_relay.py --target 127.0.0.1:3306    # prints "listening 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

import uvloop


class _Side(asyncio.Protocol):
    """One socket of a pair; whatever it reads goes to its peer's transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self._pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport, but has its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=256 * 1024)

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self._pending.append(data)  # the upstream is still connecting
        else:
            self.transport.write(data)

    def flush_pending(self) -> None:
        assert self.transport is not None
        for data in self._pending:
            self.transport.write(data)
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # Flow control: a peer that cannot keep up stops us reading.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Downstream(_Side):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__()
        self._target = (target_host, target_port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        upstream = _Side()
        upstream.peer, self.peer = self, upstream
        asyncio.get_running_loop().create_task(self._connect(upstream))

    async def _connect(self, upstream: _Side) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: upstream, *self._target)
        except OSError:
            assert self.transport is not None
            self.transport.close()
            return
        upstream.flush_pending()
        assert self.transport is not None and upstream.transport is not None
        if self.transport.is_closing():  # the client left while we connected
            upstream.transport.close()


async def serve(listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Downstream(target_host, target_port), listen_host, listen_port
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {listen_host}:{port}", flush=True)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any)")
    args = parser.parse_args()
    target_host, _, target_port = args.target.rpartition(":")
    listen_host, _, listen_port = args.listen.rpartition(":")
    uvloop.run(serve(listen_host, int(listen_port), target_host, int(target_port)))


if __name__ == "__main__":
    main()
