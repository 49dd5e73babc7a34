"""One end of the socket between the coordinator and a worker (workers.py): JSON lines, each a
call (``op``, ``args``, an ``id`` the answer repeats), an answer (``re``, ``result``) or a
notice (``op``, ``args``, no answer).

Both ends call and answer: a worker asks the coordinator to admit a tenant's client; the
coordinator asks a worker for its metrics or to KILL one of its sessions. Calls are answered in
any order; a handler that awaits runs as a task of its own, so a slow one (a KILL over a new
backend connection) holds up no other message.

The lines sent in one turn of the event loop leave in one write (a burst of logins costs one
syscall each way, not one per login), and the lines read are split out of whatever one read
brought.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

from tenantproxy.errors import TenantProxyError

Handler = Callable[..., Any | Awaitable[Any]]


class LinkClosed(TenantProxyError):
    """The other end of a coordinator link went away."""


class Link(asyncio.Protocol):
    def __init__(self, handlers: dict[str, Handler], log: logging.Logger) -> None:
        self.handlers = handlers  # may be filled in once the link exists
        self._log = log
        self._transport: asyncio.Transport | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsent: list[bytes] = []
        self._partial = b""
        self._lost = asyncio.get_running_loop().create_future()
        self.is_closed = False

    @classmethod
    async def over(
        cls, sock: socket.socket, handlers: dict[str, Handler], log: logging.Logger
    ) -> Link:
        loop = asyncio.get_running_loop()
        _, link = await loop.create_unix_connection(lambda: cls(handlers, log), sock=sock)
        return link

    async def call(self, op: str, **args: Any) -> Any:
        """Asks the other end; its answer. Raises LinkClosed when the link goes first."""
        if self.is_closed:
            raise LinkClosed(f"link closed before {op}")
        call_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = answer
        self._send({"op": op, "id": call_id, "args": args})
        try:
            return await answer
        finally:
            self._waiting.pop(call_id, None)

    def tell(self, op: str, **args: Any) -> None:
        """A notice; none comes back. Dropped when the link is closed."""
        if not self.is_closed:
            self._send({"op": op, "args": args})

    async def run(self) -> None:
        """Until the other end closes (messages are handled as they arrive)."""
        await asyncio.shield(self._lost)

    async def drain_and_close(self) -> None:
        """Closes once what was told has left."""
        self._flush()
        self.close()
        await asyncio.shield(self._lost)

    def close(self) -> None:
        if self._transport is not None:
            self._flush()
            self._transport.close()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._dispatch(json.loads(line))

    def eof_received(self) -> bool:
        return False  # the other end is gone: close this one too

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(LinkClosed("the coordinator link closed"))
        if not self._lost.done():
            self._lost.set_result(None)

    # -- messages -----------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._flush)
        self._unsent.append(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def _flush(self) -> None:
        if self._unsent and self._transport is not None and not self.is_closed:
            self._transport.write(b"".join(self._unsent))
        self._unsent.clear()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "re" in message:
            answer = self._waiting.get(message["re"])
            if answer is not None and not answer.done():
                answer.set_result(message.get("result"))
            return
        handler = self.handlers[message["op"]]
        call_id = message.get("id")
        result = handler(**message.get("args", {}))
        if inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._answer_later(call_id, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif call_id is not None:
            self._send({"re": call_id, "result": result})

    async def _answer_later(self, call_id: int | None, result: Awaitable[Any]) -> None:
        try:
            value = await result
        except Exception:
            self._log.exception("coordinator link: a handler failed")
            value = None
        if call_id is not None and not self.is_closed:
            self._send({"re": call_id, "result": value})
