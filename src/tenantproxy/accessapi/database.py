"""One invocation's database work: a new TLS connection, the write-up's query, close.

The driver is asyncmy (docs/decisions/0004-access-api-driver.md): it answers the proxy's switch
to ``mysql_clear_password`` with the token, over TLS, and costs the least CPU per request.
"""

from __future__ import annotations

import contextlib
import random
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncmy.connection import Connection
from asyncmy.cursors import DictCursor
from asyncmy.errors import OperationalError

from tenantproxy.accessapi.invocation_trace import NOT_TRACED, Steps
from tenantproxy.observability.tracing import TRACEPARENT

QUERY_IDS = 5
# COM_QUIT in its packet: length 1, sequence id 0 (a new command), command byte 0x01.
COM_QUIT_PACKET = b"\x01\x00\x00\x00\x01"


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """Built once per process: a default context costs ~40 ms of CPU to build (PyMySQL builds
    one on every connect when given a dict)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    # The stack's certificate names 127.0.0.1 and localhost; the endpoints are addresses, and the
    # CA is the stack's own, so the chain is what identifies the server.
    context.check_hostname = False
    return context


def random_ids(rows: int, rng: random.Random) -> list[int]:
    return rng.sample(range(1, rows + 1), QUERY_IDS)


def select_sql(ids: Sequence[int]) -> str:
    # Integers we drew ourselves: nothing from the request reaches the SQL text.
    return f"SELECT * FROM mytable WHERE ID IN ({', '.join(str(int(i)) for i in ids)})"


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    user: str
    password: str
    database: str

    def __repr__(self) -> str:
        return f"Login({self.user!r}@{self.host}:{self.port}/{self.database})"


class TimedConnection(Connection):
    """asyncmy's connection, noting the moments its connect passes: the server's greeting, and
    the HandshakeResponse41 (the packet written after the SSLRequest and the TLS handshake)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.greeted_ns = 0
        self.tls_done_ns = 0
        self._packets_written = 0

    async def _get_server_information(self) -> None:
        await super()._get_server_information()  # type: ignore[misc]
        self.greeted_ns = time.time_ns()

    def write_packet(self, payload: bytes) -> None:
        self._packets_written += 1
        if self._packets_written == 2:  # 1: SSLRequest; 2: HandshakeResponse41, inside TLS
            self.tls_done_ns = time.time_ns()
        super().write_packet(payload)

    def quit(self) -> None:
        """COM_QUIT, then the transport closed without waiting, as PyMySQL's and libmysqlclient's
        close do: the server answers COM_QUIT only by closing its end. (asyncmy's ensure_closed
        awaits the end of the TLS shutdown, the server's close_notify: one more round trip inside
        the invocation.) The transport sends COM_QUIT and its close_notify in the background."""
        # A server gone already needs no goodbye. No public call sends a command without
        # awaiting its answer.
        with contextlib.suppress(OperationalError):
            self._write_bytes(COM_QUIT_PACKET)  # type: ignore[attr-defined]
        self.close()


async def query_once(
    login: Login,
    ids: Sequence[int],
    tls: ssl.SSLContext,
    connect_timeout_s: float,
    trace: Steps = NOT_TRACED,
    *,
    peer: str = "mariadb",
) -> list[dict[str, Any]]:
    """Connects, runs the SELECT, closes (sending COM_QUIT); the rows as column → value.

    ``trace`` gets the steps connect, TLS, login, query and close; its context travels to the
    server as the ``traceparent`` connect attribute."""
    connection = TimedConnection(
        host=login.host,
        port=login.port,
        user=login.user,
        password=login.password,
        database=login.database,
        ssl=tls,
        autocommit=True,
        connect_timeout=max(1, round(connect_timeout_s)),
    )
    if trace.traceparent is not None:
        # asyncmy has no public option for attributes besides program_name.
        connection._connect_attrs[TRACEPARENT] = trace.traceparent  # type: ignore[attr-defined]
    attributes = {"peer.service": peer, "server.address": f"{login.host}:{login.port}"}
    started = time.time_ns()
    await connection.connect()
    _record_connect(trace, connection, started, attributes)
    try:
        with trace.step("query", attributes=attributes):
            async with connection.cursor(DictCursor) as cursor:
                await cursor.execute(select_sql(ids))
                rows: list[dict[str, Any]] = list(await cursor.fetchall())
    except BaseException:
        connection.close()
        raise
    with trace.step("close", attributes=attributes):
        connection.quit()
    return rows


def _record_connect(
    trace: Steps, connection: TimedConnection, started_ns: int, attributes: dict[str, str]
) -> None:
    logged_in = time.time_ns()
    greeted = connection.greeted_ns or logged_in
    tls_done = connection.tls_done_ns or greeted
    trace.record("connect", started_ns, greeted, attributes=attributes)
    trace.record("TLS", greeted, tls_done, attributes=attributes)
    trace.record("login", tls_done, logged_in, attributes=attributes)
