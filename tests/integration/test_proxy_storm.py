"""1,000 clients at once through one proxy process: no errors, and the backends stay capped."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tenantproxy.config import load_proxy_config
from tests.integration.async_client import AsyncMysqlClient
from tests.integration.clients import ca_path, host_port, tls_context

pytestmark = pytest.mark.integration

CLIENTS = 1000
QUERIES_PER_CLIENT = 10
TENANTS = 10


class BackendSampler:
    """Counts the tenants' connections on each proxy-cluster target, every few ms, in a thread."""

    def __init__(self, stack: Any) -> None:
        self._stack = stack
        self._targets = [i["endpoint"] for i in stack.outputs["ProxyClusterInstances"]]
        self.peaks: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackendSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        connections = {t: self._stack.admin_connect(t) for t in self._targets}
        try:
            while not self._stop.wait(0.02):
                for target, connection in connections.items():
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                            " WHERE USER LIKE 'user%'"
                        )
                        count = cursor.fetchone()[0]
                    self.peaks[target] = max(self.peaks[target], count)
                self.samples += 1
        finally:
            for connection in connections.values():
                connection.close()


async def run_client(stack: Any, endpoint: str, index: int, passwords: dict[str, str]) -> int:
    host, port = host_port(endpoint)
    tenant = index % TENANTS
    user = f"user{tenant}"
    client = await AsyncMysqlClient.connect(
        host,
        port,
        user,
        passwords[user],
        f"user_database{tenant}",
        tls_context(ca_path(stack.outputs)),
    )
    try:
        for query in range(QUERIES_PER_CLIENT):
            await client.query(f"SELECT * FROM mytable WHERE ID = {query + 1}")
    finally:
        await client.close()
    return QUERIES_PER_CLIENT


def pool_maximum(stack: Any) -> int:
    """What the stack's proxy may open per target: max_connections_percent of max_connections."""
    connection = stack.admin_connect(stack.outputs["ProxyClusterInstances"][0]["endpoint"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@max_connections")
        max_connections = cursor.fetchone()[0]
    connection.close()
    percent = load_proxy_config(
        Path(stack.outputs["ProxyConfig"]), environ={}
    ).max_connections_percent
    return max_connections * percent // 100


def test_a_thousand_clients_at_once_get_answers_and_the_backends_stay_under_the_cap(stack):
    passwords = {f"user{t}": stack.secret(f"user{t}").password for t in range(TENANTS)}
    endpoint = stack.outputs["ProxyReaderEndpoint"]

    async def storm() -> list[int | BaseException]:
        return await asyncio.gather(
            *(run_client(stack, endpoint, i, passwords) for i in range(CLIENTS)),
            return_exceptions=True,
        )

    with BackendSampler(stack) as sampler:
        results = asyncio.run(storm())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{len(failures)} clients failed, first: {failures[:3]}"
    assert sum(results) == CLIENTS * QUERIES_PER_CLIENT  # type: ignore[arg-type]
    assert sampler.samples > 0
    cap = pool_maximum(stack)
    replicas = [
        i["endpoint"] for i in stack.outputs["ProxyClusterInstances"] if i["role"] == "replica"
    ]
    assert all(sampler.peaks[r] <= cap for r in replicas), (sampler.peaks, cap)
    assert sum(sampler.peaks[r] for r in replicas) > 0
