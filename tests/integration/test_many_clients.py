"""Issue 9's 2,000-client acceptance, scaled down: 400 long-lived clients, logged in together, run
point selects with a think time through the read-only endpoint in transaction mode, over two
replicas that take 40 connections each: no client fails, and the tenants' connections on every
server stay within the proxy's share of that cap. The same clients straight to one replica get
ERROR 1040 (too many connections).

The stack is this module's own (its replicas' max_connections is 40, the shared stack's is 200);
no TLS, so that 400 handshakes do not cost the 2-core machine seconds of CPU.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tenantproxy.stack import StackSettings
from tests.integration.async_client import AsyncMysqlClient, QueryFailed
from tests.integration.clients import host_port
from tests.integration.conftest import RunningStack, running_stack
from tests.integration.proxy_process import ProxyProcess
from tests.integration.proxy_thread import proxy_config_from_stack
from tests.integration.test_proxy_storm import BackendSampler, pool_maximum

pytestmark = pytest.mark.integration

CLIENTS = 400
TENANTS = 4  # clients spread over them: one pool per (replica, tenant), one budget per replica
MAX_CONNECTIONS = 40
ROWS = 100
LOAD_S = 15.0
DIRECT_LOAD_S = 3.0
# Mostly idle, as an application's pooled connections are: ~700 q/s over the 400 clients.
THINK_S = (0.2, 1.0)
TOO_MANY_CONNECTIONS = 1040


@dataclass
class Load:
    """What the clients of one run got."""

    queries: int = 0
    logged_in: int = 0
    failures: list[BaseException] = field(default_factory=list)

    def error_codes(self) -> list[int | None]:
        return [f.error.error_code if isinstance(f, QueryFailed) else None for f in self.failures]


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    settings = StackSettings(
        tenants=TENANTS,
        rows=ROWS,
        replicas=2,
        load_test=False,
        start_proxy=False,  # each test starts the proxy it needs
        require_tls=False,
        iam_auth="disabled",
        mariadb_max_connections=MAX_CONNECTIONS,
        state_dir=tmp_path_factory.mktemp("many-clients") / "state",
    )
    with running_stack(settings) as running:
        yield running


def replicas(stack: RunningStack) -> list[str]:
    instances = stack.outputs["ProxyClusterInstances"]
    return [i["endpoint"] for i in instances if i["role"] == "replica"]


async def log_in(stack: RunningStack, endpoint: str, index: int) -> AsyncMysqlClient:
    host, port = host_port(endpoint)
    user = f"user{index % TENANTS}"
    password = stack.secret(user).password
    return await AsyncMysqlClient.connect(
        host, port, user, password, f"user_database{index % TENANTS}", tls=None
    )


async def point_selects(client: AsyncMysqlClient, seconds: float, seed: int) -> int:
    """Think, select one row by primary key, until ``seconds`` are over; the queries run."""
    rng = random.Random(seed)
    deadline = asyncio.get_running_loop().time() + seconds
    queries = 0
    while asyncio.get_running_loop().time() + THINK_S[0] < deadline:
        await asyncio.sleep(rng.uniform(*THINK_S))
        await client.query(f"SELECT * FROM mytable WHERE ID = {rng.randint(1, ROWS)}")
        queries += 1
    return queries


async def run_load(stack: RunningStack, endpoint: str, seconds: float) -> Load:
    """Every client logs in first (all of them connected at once), then the logged-in ones run
    point selects for ``seconds``, then all log out."""
    load = Load()
    logins = await asyncio.gather(
        *(log_in(stack, endpoint, i) for i in range(CLIENTS)), return_exceptions=True
    )
    clients = [c for c in logins if isinstance(c, AsyncMysqlClient)]
    load.failures += [c for c in logins if isinstance(c, BaseException)]
    load.logged_in = len(clients)
    try:
        counts = await asyncio.gather(
            *(point_selects(c, seconds, seed) for seed, c in enumerate(clients)),
            return_exceptions=True,
        )
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    load.queries = sum(n for n in counts if isinstance(n, int))
    load.failures += [n for n in counts if isinstance(n, BaseException)]
    return load


def test_400_long_lived_clients_share_the_replicas_40_connections(small_stack, tmp_path):
    config = proxy_config_from_stack(small_stack.outputs, pool_mode="transaction")
    with ProxyProcess(config, tmp_path) as proxy, BackendSampler(small_stack) as sampler:
        load = asyncio.run(run_load(small_stack, proxy.endpoint("read_only"), LOAD_S))
    assert load.failures == [], f"{len(load.failures)} failed, first: {load.failures[:3]}"
    assert load.logged_in == CLIENTS
    assert load.queries > CLIENTS  # each client ran several
    cap = pool_maximum(small_stack)
    assert cap < MAX_CONNECTIONS
    peaks = {replica: sampler.peaks[replica] for replica in replicas(small_stack)}
    assert sampler.samples > 0
    # Both replicas served, and neither ever saw more of the tenants' connections than the cap.
    assert all(0 < peak <= cap for peak in peaks.values()), (peaks, cap)


def test_the_same_clients_straight_to_one_replica_get_too_many_connections(small_stack):
    load = asyncio.run(run_load(small_stack, replicas(small_stack)[0], DIRECT_LOAD_S))
    codes = load.error_codes()
    assert set(codes) == {TOO_MANY_CONNECTIONS}, load.failures[:3]
    # MariaDB lets at most max_connections of them in; every other one is refused.
    assert load.logged_in <= MAX_CONNECTIONS
    assert len(codes) == CLIENTS - load.logged_in
