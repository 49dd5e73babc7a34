"""Many long-lived MySQL client connections in one process, for bench/multiplex.py.

Reads one JSON line from stdin, so that passwords never show in ``ps``::

    {"endpoints": ["H:P", ...], "logins": [[user, password, database], ...], "connections": N,
     "first_index": K, "think_s": [low, high] | null, "id_max": 1000, "seed": 1,
     "login_concurrency": 64}

Connection i goes to ``endpoints[(K + i) % len(endpoints)]`` and logs in as
``logins[(K + i) % len(logins)]``. Every connection logs in first; then
the process prints ``ready {json}`` and waits for the line ``go``. Each logged-in connection then
thinks (uniform in ``think_s``) and runs one point select (text protocol), again and again, until
the line ``stop`` (``think_s`` null: it only stays logged in). Then the process closes every
connection and prints ``done {json}``: queries, a latency histogram (``histogram.py``), errors by
kind (a query still unanswered 30 s after ``stop``: "unanswered"), and its own CPU seconds.

The client is an ``asyncio.Protocol`` over uvloop with the proxy's own sans-IO wire layer (login
state machine, response tracker): a few tens of µs of CPU per query, so that one process holds
thousands of connections and the proxy, not the client, is what is measured.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import uvloop

from histogram import Histogram
from tenantproxy.wire.mysql import commands
from tenantproxy.wire.mysql.client_connection import ClientConnection
from tenantproxy.wire.mysql.constants import CapabilityFlags
from tenantproxy.wire.mysql.events import NEED_DATA, Authenticated, LoginFailed
from tenantproxy.wire.mysql.response_tracker import ResponseTracker

CAPABILITIES = (
    CapabilityFlags.CLIENT_LONG_PASSWORD
    | CapabilityFlags.CLIENT_PROTOCOL_41
    | CapabilityFlags.CLIENT_TRANSACTIONS
    | CapabilityFlags.CLIENT_MULTI_RESULTS
    | CapabilityFlags.CLIENT_DEPRECATE_EOF
)
# Longer than the proxy's borrow timeout (120 s): a login starved of a backend reports the
# proxy's error, not ours; and a hung one does not hang the benchmark.
LOGIN_TIMEOUT_S = 180.0
# How long the queries in flight at "stop" may take to be answered.
STOP_GRACE_S = 30.0
COM_QUIT_PACKET = b"\x01\x00\x00\x00" + commands.com_quit()


class Refused(Exception):
    """The server (or the proxy) answered the login or a query with an ERR packet."""

    def __init__(self, error_code: int) -> None:
        super().__init__(f"ERROR {error_code}")
        self.error_code = error_code


class Lost(Exception):
    """The connection closed while the client waited for an answer."""


class Connection(asyncio.Protocol):
    """One client connection: the login, then one point select at a time."""

    def __init__(self, login: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        self._login = login
        self._tracker: ResponseTracker | None = None
        self._transport: asyncio.Transport | None = None
        self.logged_in: asyncio.Future[None] = loop.create_future()
        self._answer: asyncio.Future[int] | None = None
        self.is_lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._advance_login()

    def data_received(self, data: bytes) -> None:
        if self._tracker is None:
            self._login.receive_data(data)
            self._advance_login()
        elif self._tracker.server_data(data) and self._answer is not None:
            answer, self._answer = self._answer, None
            answer.set_result(self._tracker.ends[-1].error_code or 0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_lost = True
        for future in (self.logged_in, self._answer):
            if future is not None and not future.done():
                future.set_exception(Lost())

    def _advance_login(self) -> None:
        assert self._transport is not None
        while not self.logged_in.done():
            event = self._login.next_event()
            self._transport.write(self._login.data_to_send())
            if event is NEED_DATA:
                return
            if isinstance(event, Authenticated):
                self._tracker = ResponseTracker(event.capability_flags)
                self.logged_in.set_result(None)
            elif isinstance(event, LoginFailed):
                self.logged_in.set_exception(Refused(event.error.error_code))
                self._transport.close()

    async def query(self, payload: bytes) -> int:
        """Sends one COM_QUERY payload; the ERR's error code, or 0."""
        assert self._tracker is not None and self._transport is not None
        if self.is_lost:
            raise Lost()
        self._tracker.command_sent(payload[:16])
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(len(payload).to_bytes(3, "little") + b"\x00" + payload)
        return await self._answer

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            if self._tracker is not None:
                self._transport.write(COM_QUIT_PACKET)
            self._transport.close()


@dataclass
class Tally:
    """What this process's connections did."""

    logged_in: int = 0
    login_errors: Counter[str] = field(default_factory=Counter)
    queries: int = 0
    query_errors: Counter[str] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)


def error_kind(error: BaseException) -> str:
    """ "1040" for ERROR 1040, "lost", or the exception's class (a refused TCP connect: OSError)."""
    if isinstance(error, Refused):
        return str(error.error_code)
    return "lost" if isinstance(error, Lost) else type(error).__name__


async def log_in(spec: dict[str, Any], index: int, gate: asyncio.Semaphore) -> Connection:
    user, password, database = spec["logins"][index % len(spec["logins"])]
    host, _, port = spec["endpoints"][index % len(spec["endpoints"])].rpartition(":")
    login = ClientConnection(
        username=user, password=password.encode(), database=database, capabilities=CAPABILITIES
    )
    async with gate, asyncio.timeout(LOGIN_TIMEOUT_S):
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(lambda: Connection(login), host, int(port))
        try:
            await connection.logged_in
        except BaseException:
            connection.close()
            raise
    return connection


class Worker:
    """One connection's think-and-select loop; stopped between queries, never inside one."""

    def __init__(self, connection: Connection, spec: dict[str, Any], seed: int) -> None:
        self._connection = connection
        self._think_s: tuple[float, float] = tuple(spec["think_s"])  # type: ignore[assignment]
        self._id_max = int(spec["id_max"])
        self._rng = random.Random(seed)
        self.is_querying = False
        self.is_stopping = False

    async def run(self, tally: Tally) -> None:
        # The first pause is a random part of a whole one: the clients do not all start thinking
        # at once, and a mostly idle one with a long think still queries in a short run.
        pause_s = self._rng.uniform(0, self._think_s[1])
        while not self.is_stopping:
            await asyncio.sleep(pause_s)
            pause_s = self._rng.uniform(*self._think_s)
            sql = f"SELECT * FROM mytable WHERE ID = {self._rng.randint(1, self._id_max)}"
            self.is_querying = True
            started = time.perf_counter()
            try:
                code = await self._connection.query(commands.com_query(sql))
            except Lost:
                return
            finally:
                self.is_querying = False
            tally.latency.add(time.perf_counter() - started)
            tally.queries += 1
            if code:
                tally.query_errors[str(code)] += 1


async def read_line(reader: asyncio.StreamReader) -> str:
    line = await reader.readline()
    if not line:
        raise SystemExit("stdin closed before the next instruction")
    return line.decode().strip()


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    spec = json.loads(await read_line(reader))
    tally = Tally()
    gate = asyncio.Semaphore(int(spec["login_concurrency"]))
    started = time.monotonic()
    first = int(spec["first_index"])
    logins = await asyncio.gather(
        *(log_in(spec, first + i, gate) for i in range(int(spec["connections"]))),
        return_exceptions=True,
    )
    connections = [c for c in logins if isinstance(c, Connection)]
    tally.logged_in = len(connections)
    tally.login_errors.update(error_kind(e) for e in logins if isinstance(e, BaseException))
    ready = {"logged_in": tally.logged_in, "login_errors": tally.login_errors}
    ready["login_s"] = time.monotonic() - started
    print("ready " + json.dumps(ready), flush=True)
    if await read_line(reader) != "go":
        raise SystemExit("expected: go")
    went = time.monotonic()
    await run_until_stop(connections, spec, tally, reader)
    elapsed_s = time.monotonic() - went
    lost = sum(c.is_lost for c in connections)
    if lost:  # counted here, not by the query that saw it: an idle client's loss counts too
        tally.query_errors["lost"] = lost
    for connection in connections:
        connection.close()
    await asyncio.sleep(0.1)  # lets the transports flush COM_QUIT and close
    print("done " + json.dumps(done_report(tally, elapsed_s)), flush=True)


async def run_until_stop(
    connections: list[Connection], spec: dict[str, Any], tally: Tally, reader: asyncio.StreamReader
) -> None:
    if spec["think_s"] is None:  # idle: stay logged in, never query
        await read_line(reader)
        return
    seed = int(spec["seed"]) * 1_000_003 + int(spec["first_index"])
    workers = [Worker(c, spec, seed + i) for i, c in enumerate(connections)]
    tasks = [asyncio.create_task(w.run(tally)) for w in workers]
    await read_line(reader)  # "stop"
    for worker, task in zip(workers, tasks, strict=True):
        worker.is_stopping = True
        if not worker.is_querying:
            task.cancel()  # it is thinking: no query is cut short
    if not tasks:
        return
    # A query still unanswered after the grace is an error of its own kind, not a hang.
    _, unanswered = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
    for task in unanswered:
        task.cancel()
    if unanswered:
        tally.query_errors["unanswered"] += len(unanswered)


def done_report(tally: Tally, elapsed_s: float) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "logged_in": tally.logged_in,
        "login_errors": tally.login_errors,
        "queries": tally.queries,
        "query_errors": tally.query_errors,
        "latency": tally.latency.to_json(),
        "elapsed_s": elapsed_s,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


if __name__ == "__main__":
    uvloop.run(main())
