"""One end of the socket between the coordinator and a worker (workers.py): JSON lines, each a
call (``op``, ``args``, an ``id`` the answer repeats), an answer (``re``, ``result``) or a
notice (``op``, ``args``, no answer).

Both ends call and answer: a worker asks the coordinator to admit a tenant's client; the
coordinator asks a worker for its metrics or to KILL one of its sessions. Calls are answered in
any order; a handler that awaits runs as a task of its own, so a slow one (a KILL over a new
backend connection) holds up no other message.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from tenantproxy.errors import TenantProxyError

Handler = Callable[..., Any | Awaitable[Any]]
# A metrics answer of a busy worker is its biggest message; a tenant label set is bounded by
# the tenants, so this is room, not a limit met in practice.
_LINE_LIMIT_BYTES = 64 * 1024 * 1024


class LinkClosed(TenantProxyError):
    """The other end of a coordinator link went away."""


class Link:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handlers: dict[str, Handler],
        log: logging.Logger,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.handlers = handlers  # may be filled in before run()
        self._log = log
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.is_closed = False

    @classmethod
    async def over(
        cls, sock: socket.socket, handlers: dict[str, Handler], log: logging.Logger
    ) -> Link:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=_LINE_LIMIT_BYTES)
        return cls(reader, writer, handlers, log)

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
        """Reads and dispatches messages until the other end closes."""
        try:
            while line := await self._reader.readline():
                self._dispatch(json.loads(line))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._closed()

    async def drain_and_close(self) -> None:
        """Closes once what was told has left."""
        await self._writer.drain()
        self.close()

    def close(self) -> None:
        self._writer.close()
        self._closed()

    def _closed(self) -> None:
        self.is_closed = True
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(LinkClosed("the coordinator link closed"))

    def _send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

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
