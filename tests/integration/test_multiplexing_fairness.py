"""Fairness in transaction mode: many clients of one tenant over a few backends each get their
turn. A client waiting for a backend is served in the order it asked; one that just gave a backend
back, or one that finds an idle backend while others wait, does not jump the queue."""

from __future__ import annotations

import asyncio
import statistics
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.async_client import AsyncMysqlClient
from tests.integration.clients import ca_path, host_port, tls_context
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

TENANT = 12
MAX_BACKENDS = 2
CLIENTS = 12
RUN_S = 3.0
INSERT = "INSERT INTO mytable (Column_A) VALUES ('fair')"
# Each client's share of the statements run, at least this part of the mean share.
FAIR_SHARE = 0.25


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    config = proxy_config_from_stack(
        stack.outputs, pool_mode="transaction", max_backends_per_tenant=MAX_BACKENDS
    )
    with ProxyThread(config) as running:
        yield running
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute(f"DELETE FROM user_database{TENANT}.mytable WHERE Column_A = 'fair'")
        admin.commit()


async def log_in(stack: Any, proxy: ProxyThread) -> AsyncMysqlClient:
    host, port = host_port(proxy.endpoint("read_write"))
    user = f"user{TENANT}"
    return await AsyncMysqlClient.connect(
        host,
        port,
        user,
        stack.secret(user).password,
        f"user_database{TENANT}",
        tls=tls_context(ca_path(stack.outputs)),
    )


async def loop_statements(
    client: AsyncMysqlClient, statements: list[str], started: asyncio.Event, stop: asyncio.Event
) -> int:
    """Runs ``statements`` again and again, without a pause, until ``stop``; how many times."""
    await started.wait()
    rounds = 0
    while not stop.is_set():
        for sql in statements:
            await client.query(sql)
        rounds += 1
    return rounds


async def run_clients(stack: Any, proxy: ProxyThread, statements: list[str]) -> list[int]:
    """Every client logs in, then all loop ``statements`` together for RUN_S seconds."""
    clients = [await log_in(stack, proxy) for _ in range(CLIENTS)]
    started, stop = asyncio.Event(), asyncio.Event()
    try:
        runs = [asyncio.create_task(loop_statements(c, statements, started, stop)) for c in clients]
        started.set()
        await asyncio.sleep(RUN_S)  # the length of the run, not a wait for an event
        stop.set()
        return list(await asyncio.gather(*runs))
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def counts_of(stack: Any, proxy: ProxyThread, statements: list[str]) -> list[int]:
    # The clients' own loop in their own thread: the proxy's loop runs only the proxy.
    result: list[list[int]] = []
    thread = threading.Thread(
        target=lambda: result.append(asyncio.run(run_clients(stack, proxy, statements)))
    )
    thread.start()
    thread.join(timeout=RUN_S + 60)
    assert result, "the clients did not finish"
    return result[0]


def assert_fair(counts: list[int]) -> None:
    mean = statistics.mean(counts)
    assert mean > 0
    starved = [n for n in counts if n < FAIR_SHARE * mean]
    assert not starved, f"rounds per client {sorted(counts)}, mean {mean:.0f}"


@pytest.mark.parametrize(
    "statements",
    [
        pytest.param(["SELECT 1"], id="autocommit"),
        pytest.param(["BEGIN", "SELECT * FROM mytable WHERE ID = 1", "COMMIT"], id="transactions"),
        # sysbench oltp_read_write's shape: an insert id learnt in a transaction, then COMMIT
        pytest.param(["BEGIN", INSERT, "COMMIT"], id="inserting-transactions"),
        pytest.param([INSERT, "SELECT LAST_INSERT_ID()"], id="insert-then-read-its-id"),
    ],
)
def test_every_client_gets_a_fair_share_of_the_few_backends(stack, proxy, statements):
    assert_fair(counts_of(stack, proxy, statements))
