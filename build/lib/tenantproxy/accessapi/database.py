"""One invocation's database work: a new TLS connection, the write-up's query, close.

The driver is asyncmy (docs/decisions/0004-access-api-driver.md): it answers the proxy's switch
to ``mysql_clear_password`` with the token, over TLS, and costs the least CPU per request.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncmy
from asyncmy.cursors import DictCursor

QUERY_IDS = 5


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


async def query_once(
    login: Login, ids: Sequence[int], tls: ssl.SSLContext, connect_timeout_s: float
) -> list[dict[str, Any]]:
    """Connects, runs the SELECT, closes (sending COM_QUIT); the rows as column → value."""
    connection = await asyncmy.connect(
        host=login.host,
        port=login.port,
        user=login.user,
        password=login.password,
        database=login.database,
        ssl=tls,
        autocommit=True,
        connect_timeout=max(1, round(connect_timeout_s)),
    )
    try:
        async with connection.cursor(DictCursor) as cursor:
            await cursor.execute(select_sql(ids))
            rows: list[dict[str, Any]] = list(await cursor.fetchall())
    except BaseException:
        connection.close()
        raise
    await connection.ensure_closed()
    return rows
