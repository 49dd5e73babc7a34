"""``workers = 2``: one proxy served by two processes (SO_REUSEPORT), whose limits hold for the
proxy as a whole: each target's budget, the per-tenant caps, KILL of a session the other worker
serves, and a SIGTERM that drains both.

Which worker serves a client is the kernel's choice (a hash of the connection's addresses);
the handshake's connection id says which one it was (session ids interleave, workers.py), so
the tests open connections until both workers are among them, and check that they were.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pymysql
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tenantproxy.proxy.kill import SESSION_ID_BASE
from tenantproxy.stack import StackSettings
from tests.integration.async_client import AsyncMysqlClient
from tests.integration.clients import first_value, host_port, pymysql_connect
from tests.integration.conftest import RunningStack, running_stack
from tests.integration.proxy_process import ProxyProcess
from tests.integration.proxy_thread import proxy_config_from_stack
from tests.integration.test_proxy_kill import LongQuery, wait_until_running
from tests.integration.test_proxy_storm import QUERIES_PER_CLIENT, BackendSampler, pool_maximum

pytestmark = pytest.mark.integration

WORKERS = 2
# user4 is test_one_metrics_endpoint's alone; user5 test_max_backends_per_tenant's, whose
# server-side count another proxy's idle backends would spoil.
TENANTS = 6
MAX_CONNECTIONS = 40
STORM_CLIENTS = 1000
TOO_MANY_USER_CONNECTIONS = 1203
QUERY_INTERRUPTED = 1317
# Connections opened to find both workers among them: all on one worker has odds 2^-(n-1).
TRIES = 24


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    settings = StackSettings(
        tenants=TENANTS,
        rows=20,
        replicas=2,
        load_test=False,
        start_proxy=False,
        require_tls=False,
        iam_auth="disabled",
        mariadb_max_connections=MAX_CONNECTIONS,
        state_dir=tmp_path_factory.mktemp("workers") / "state",
    )
    with running_stack(settings) as running:
        yield running


def worker_of(session_id: int) -> int:
    return (session_id - SESSION_ID_BASE) % WORKERS


def login(stack: RunningStack, endpoint: str, tenant: int) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "user": f"user{tenant}",
        "password": stack.secret(f"user{tenant}").password,
        "database": f"user_database{tenant}",
        "ca_file": None,
    }


def one_on_each_worker(stack: RunningStack, endpoint: str, tenant: int) -> dict[int, Any]:
    """A connection of the tenant on each worker (the others opened on the way are closed)."""
    found: dict[int, Any] = {}
    for _ in range(TRIES):
        connection = pymysql_connect(**login(stack, endpoint, tenant))
        worker = worker_of(connection.thread_id())
        if worker in found:
            connection.close()
        else:
            found[worker] = connection
        if len(found) == WORKERS:
            return found
    raise AssertionError(f"{TRIES} connections, all on worker {list(found)}")


def test_a_storm_of_1000_clients_keeps_each_replica_within_the_proxys_budget(small_stack, tmp_path):
    config = proxy_config_from_stack(small_stack.outputs, workers=WORKERS, metrics_port=None)
    passwords = {f"user{t}": small_stack.secret(f"user{t}").password for t in range(TENANTS)}
    with ProxyProcess(config, tmp_path) as proxy:
        assert len(proxy.worker_pids()) == WORKERS
        endpoint = proxy.endpoint("read_only")

        async def storm() -> list[int | BaseException]:
            return await asyncio.gather(
                *(run_plain_client(endpoint, i, passwords) for i in range(STORM_CLIENTS)),
                return_exceptions=True,
            )

        with BackendSampler(small_stack) as sampler:
            results = asyncio.run(storm())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{len(failures)} clients failed, first: {failures[:3]}"
    cap = pool_maximum(small_stack)
    assert cap < MAX_CONNECTIONS
    replicas = [
        i["endpoint"]
        for i in small_stack.outputs["ProxyClusterInstances"]
        if i["role"] == "replica"
    ]
    assert sampler.samples > 0
    peaks = {replica: sampler.peaks[replica] for replica in replicas}
    # Both replicas served, and neither ever saw more than the one budget of the whole proxy.
    assert all(0 < peak <= cap for peak in peaks.values()), (peaks, cap)


async def run_plain_client(endpoint: str, index: int, passwords: dict[str, str]) -> int:
    """test_proxy_storm's client, over plain TCP (this stack has no TLS)."""
    host, port = host_port(endpoint)
    tenant = index % TENANTS
    user = f"user{tenant}"
    client = await AsyncMysqlClient.connect(
        host, port, user, passwords[user], f"user_database{tenant}", tls=None
    )
    try:
        for query in range(QUERIES_PER_CLIENT):
            await client.query(f"SELECT * FROM mytable WHERE ID = {query + 1}")
    finally:
        await client.close()
    return QUERIES_PER_CLIENT


@pytest.fixture(scope="module")
def proxy(small_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = proxy_config_from_stack(
        small_stack.outputs,
        workers=WORKERS,
        metrics_port=0,
        pool_mode="session",  # test_one_metrics_endpoint counts a backend per client
    )
    with ProxyProcess(config, tmp_path_factory.mktemp("workers-proxy")) as running:
        yield running


def test_the_handshake_ids_of_the_two_workers_interleave(small_stack, proxy):
    connections = one_on_each_worker(small_stack, proxy.endpoint("read_write"), 0)
    try:
        assert sorted(connections) == list(range(WORKERS))
        for worker, connection in connections.items():
            assert first_value(connection, "SELECT 1") == 1
            assert worker_of(connection.thread_id()) == worker
    finally:
        for connection in connections.values():
            connection.close()


def test_kill_query_reaches_a_session_the_other_worker_serves(small_stack, proxy):
    by_worker = one_on_each_worker(small_stack, proxy.endpoint("read_write"), 1)
    victim, killer = by_worker[0], by_worker[1]
    try:
        running = LongQuery(victim)
        wait_until_running(killer, victim.thread_id())
        first_value(killer, f"KILL QUERY {victim.thread_id()}")
        assert running.ended() == ("error", QUERY_INTERRUPTED)
        assert first_value(victim, "SELECT 2") == 2
        first_value(killer, f"KILL {victim.thread_id()}")
        with pytest.raises((pymysql.err.OperationalError, pymysql.err.InterfaceError)):
            first_value(victim, "SELECT 3")
        assert first_value(killer, "SELECT 4") == 4
    finally:
        killer.close()
        victim.close()


def test_a_kill_of_another_tenants_session_on_the_other_worker_is_an_unknown_thread(
    small_stack, proxy
):
    endpoint = proxy.endpoint("read_write")
    victim = pymysql_connect(**login(small_stack, endpoint, 2))
    stranger = None
    try:
        for _ in range(TRIES):
            stranger = pymysql_connect(**login(small_stack, endpoint, 3))
            if worker_of(stranger.thread_id()) != worker_of(victim.thread_id()):
                break
            stranger.close()
        else:
            raise AssertionError("no connection reached the other worker")
        with pytest.raises(pymysql.err.OperationalError) as caught:
            first_value(stranger, f"KILL {victim.thread_id()}")
        assert caught.value.args == (1094, f"Unknown thread id: {victim.thread_id()}")
        assert first_value(victim, "SELECT 1") == 1
    finally:
        victim.close()
        if stranger is not None:
            stranger.close()


def test_max_clients_per_tenant_holds_across_the_workers(small_stack, tmp_path):
    """Cap 3: of TRIES logins one after another, 3 get in and the rest get ERROR 1203, on
    whichever worker they land (a cap per worker would let up to 6 in)."""
    config = proxy_config_from_stack(
        small_stack.outputs, workers=WORKERS, metrics_port=None, max_clients_per_tenant=3
    )
    with ProxyProcess(config, tmp_path) as proxy:
        three_of_many_get_in(small_stack, proxy.endpoint("read_only"))


def three_of_many_get_in(small_stack: RunningStack, endpoint: str) -> None:
    admitted: list[Any] = []
    refused_on: set[int] = set()
    workers_seen: set[int] = set()
    try:
        for _ in range(TRIES):
            connection = unconnected(login(small_stack, endpoint, 0))
            try:
                connection.connect()
            except pymysql.err.OperationalError as exc:
                assert exc.args[0] == TOO_MANY_USER_CONNECTIONS, exc.args
                refused_on.add(worker_of(connection.server_thread_id[0]))
            else:
                admitted.append(connection)
            workers_seen.add(worker_of(connection.server_thread_id[0]))
        assert len(admitted) == 3
        assert workers_seen == set(range(WORKERS))
        assert refused_on, "no login was refused"
    finally:
        for connection in admitted:
            connection.close()
    # Once they have left, the tenant may log in again, on either worker.
    with pymysql_connect(**login(small_stack, endpoint, 0)) as again:
        assert first_value(again, "SELECT 1") == 1


def scrape(proxy: ProxyProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(f"http://{proxy.endpoint('metrics')}/metrics", timeout=10).text
    return {
        sample.name: [(s.labels, s.value) for s in family.samples if s.name == sample.name]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_one_metrics_endpoint_reports_the_sum_of_the_workers(small_stack, proxy):
    endpoint = proxy.endpoint("read_write")
    before = scrape(proxy)
    connections = []
    try:
        while len(connections) < 3 or len({worker_of(c.thread_id()) for c in connections}) < 2:
            assert len(connections) < TRIES, "all connections on one worker"
            connections.append(pymysql_connect(**login(small_stack, endpoint, 4)))
        during = scrape(proxy)
    finally:
        for connection in connections:
            connection.close()
    received = "tenantproxy_client_connections_received_total"
    # Each worker saw only some of the connections: the sum is what both saw.
    assert value(during, received) - value(before, received) == len(connections)
    assert value(during, "tenantproxy_tenant_client_connections", tenant="user4") == len(
        connections
    )
    assert value(during, "tenantproxy_tenant_database_connections", tenant="user4") == len(
        connections
    )  # session mode: a backend each
    assert value(during, "tenantproxy_workers") == WORKERS
    cap = pool_maximum(small_stack)
    for instance in small_stack.outputs["ProxyClusterInstances"]:
        target = instance["name"]
        # The workers' shares add up to the one budget; every worker sees the target healthy.
        assert value(during, "tenantproxy_max_database_connections_allowed", target=target) == cap
        assert value(during, "tenantproxy_target_healthy", target=target) == 1
    assert value(during, "process_cpu_seconds_total") > 0


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    samples = metrics.get(name, [])
    return sum(v for found, v in samples if all(found.get(k) == w for k, w in labels.items()))


BORROW_TIMEOUT = 9501


@pytest.fixture(scope="module")
def capped_proxy(
    small_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """Two workers, at most 2 backends per tenant and target, a short borrow timeout."""
    config = proxy_config_from_stack(
        small_stack.outputs,
        workers=WORKERS,
        metrics_port=None,
        max_backends_per_tenant=2,
        connection_borrow_timeout_s=3.0,
        pool_mode="session",  # a client holds its backend from login to logout
    )
    with ProxyProcess(config, tmp_path_factory.mktemp("capped-proxy")) as running:
        yield running


def test_max_backends_per_tenant_holds_across_the_workers(small_stack, capped_proxy):
    """Session mode: each client holds a backend. With 2 held, later logins wait and get
    ERROR 9501, on whichever worker they land; the writer never sees more than 2 of the
    tenant's connections."""
    endpoint = capped_proxy.endpoint("read_write")
    watcher = small_stack.admin_connect(small_stack.proxy_writer)
    admitted: list[Any] = []
    workers_seen: set[int] = set()
    try:
        for _ in range(8):
            connection = unconnected(login(small_stack, endpoint, 5))
            try:
                connection.connect()
            except pymysql.err.OperationalError as exc:
                assert exc.args[0] == BORROW_TIMEOUT, exc.args
            else:
                admitted.append(connection)
            workers_seen.add(worker_of(connection.server_thread_id[0]))
            assert tenant_connections(watcher, "user5") <= 2
        assert len(admitted) == 2
        assert workers_seen == set(range(WORKERS))
    finally:
        for connection in admitted:
            connection.close()
        watcher.close()


def test_a_backend_idle_in_one_worker_is_given_up_for_a_client_of_the_other(
    small_stack, capped_proxy
):
    """The tenant's 2 backends: one leased in worker 0, one idle in worker 1. A login on
    worker 0 is served within its borrow timeout (3 s), worker 1 closing its idle backend for
    it, not after that backend's idle timeout (300 s)."""
    endpoint = capped_proxy.endpoint("read_write")
    holders = one_on_each_worker(small_stack, endpoint, 4)
    holders[1].close()  # its backend stays idle in worker 1, holding the tenant's second slot
    try:
        for _ in range(TRIES):
            connection = pymysql_connect(**login(small_stack, endpoint, 4))  # 9501 would raise
            worker = worker_of(connection.thread_id())
            assert first_value(connection, "SELECT 1") == 1
            connection.close()
            if worker == 0:
                return
        raise AssertionError(f"{TRIES} logins, none on worker 0")
    finally:
        holders[0].close()


def tenant_connections(watcher: Any, user: str) -> int:
    return int(
        first_value(
            watcher,
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'",
        )
    )


def unconnected(login_args: dict[str, Any]) -> pymysql.connections.Connection[Any]:
    """A PyMySQL connection not yet opened: after a refused login it still holds the
    handshake's connection id (``server_thread_id``)."""
    host, port = host_port(login_args["endpoint"])
    return pymysql.connections.Connection(
        host=host,
        port=port,
        user=login_args["user"],
        password=login_args["password"],
        database=login_args["database"],
        ssl_disabled=True,
        connect_timeout=10,
        defer_connect=True,
    )


def test_sigterm_drains_every_worker(small_stack, tmp_path):
    """Statements under way on both workers finish after the SIGTERM; then every process
    exits with status 0."""
    config = proxy_config_from_stack(small_stack.outputs, workers=WORKERS, metrics_port=None)
    with ProxyProcess(config, tmp_path) as proxy:
        workers = proxy.worker_pids()
        connections = one_on_each_worker(small_stack, proxy.endpoint("read_write"), 2)
        watcher = small_stack.admin_connect(small_stack.proxy_writer)
        running = [SleepThenLeave(c) for c in connections.values()]
        for _ in running:
            wait_until_sleeping(watcher, len(running))
        watcher.close()
        status = proxy.stop()
    assert status == 0, Path(proxy.log_file).read_text()[-2000:]
    assert [r.ended() for r in running] == [1] * WORKERS
    assert all(not_running(pid) for pid in workers)


def test_a_worker_that_dies_stops_the_whole_proxy(small_stack, tmp_path):
    """SIGKILL of one worker: the coordinator asks the other to drain, and the proxy exits
    with status 1 for its supervisor to restart, not as half a proxy."""
    config = proxy_config_from_stack(small_stack.outputs, workers=WORKERS, metrics_port=None)
    with ProxyProcess(config, tmp_path) as proxy:
        dying, surviving = proxy.worker_pids()
        os.kill(dying, signal.SIGKILL)
        status = proxy.wait(timeout_s=60)
    assert status == 1
    assert not_running(surviving)
    log = Path(proxy.log_file).read_text()
    assert "exited: stopping the proxy" in log
    assert "worker 1 stopped" in log or "worker 0 stopped" in log  # the survivor drained


class SleepThenLeave:
    """SELECT SLEEP(3) on a connection in a thread, then closes it; remembers the result."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.result: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = first_value(self._connection, "SELECT SLEEP(3) + 1")
        except Exception as exc:
            self.result = exc
        finally:
            self._connection.close()

    def ended(self) -> Any:
        self._thread.join(30)
        return self.result


def wait_until_sleeping(watcher: Any, count: int) -> None:
    for _ in range(100):
        sleeping = first_value(
            watcher,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            " WHERE INFO = 'SELECT SLEEP(3) + 1'",
        )
        if sleeping >= count:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the statements never started")


def not_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
