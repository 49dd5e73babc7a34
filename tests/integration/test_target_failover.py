"""A target that dies: keepalive on backend sockets, and passive health: no new login goes to a
replica killed with SIGKILL, and it serves again once restarted.

The stack here is this module's own (a writer and two replicas, the proxy as its own process),
so that killing a replica leaves the session's stack, which other tests share, untouched.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pymysql
import pytest
import uvloop

from tenantproxy.config import FileSecretStoreConfig
from tenantproxy.proxy import tls
from tenantproxy.proxy.backends import BackendCredentials, BackendProfile, Target
from tenantproxy.proxy.connector import open_backend
from tenantproxy.secretstore import FileSecretStore
from tenantproxy.stack import StackSettings, down, up
from tenantproxy.stack.outputs import read_admin_credentials
from tenantproxy.stack.processes import ProcessRecord, is_ours, start_detached, wait_for_port
from tenantproxy.stack.state import StackState
from tenantproxy.wire.mysql.constants import UTF8MB4_GENERAL_CI, CapabilityFlags
from tests.integration.clients import host_port, tls_context
from tests.integration.conftest import quiet_console
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

TENANTS = 10
CLIENTS = 50
# Bounds of the kill test: logins before the kill (both replicas serving), logins after it, and
# the most it may take.
LOGINS_BEFORE_KILL = 200
LOGINS_AFTER_KILL = 1000
PHASE_TIMEOUT_S = 120.0
TEST_PROXY_LOGGER = "tenantproxy.test-proxy"  # proxy_thread's


@pytest.fixture(scope="module")
def failover_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = StackSettings(
        tenants=TENANTS,
        rows=5,
        iam_auth="disabled",
        replicas=2,
        load_test=False,
        state_dir=tmp_path_factory.mktemp("failover") / "state",
        # One process: the tests read its log for one health change per event (each worker
        # checks and logs its targets' health on its own; test_proxy_workers covers workers).
        proxy_workers=1,
    )
    console = quiet_console()
    try:
        yield up(settings, console).outputs
    finally:
        down(settings.state_dir, console, settings.stop_timeout_s)


def instance(outputs: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in outputs["ProxyClusterInstances"] if i["name"] == name)


def test_backend_sockets_send_tcp_keepalive_probes_after_30_s_idle(failover_stack):
    outputs = failover_stack
    admin = read_admin_credentials(Path(outputs["AdminCredentials"]))
    host, port = host_port(instance(outputs, "proxy-replica1")["endpoint"])

    async def keepalive_options() -> tuple[int, ...]:
        backend = await open_backend(
            Target("proxy-replica1", "replica", host, port),
            BackendCredentials(admin.user, admin.password),
            BackendProfile(CapabilityFlags(0), UTF8MB4_GENERAL_CI),
            tls_context=tls.client_context(Path(outputs["CACertificate"])),
            max_packet_bytes=1024 * 1024,
        )
        try:
            assert backend.transport is not None
            sock = backend.transport.get_extra_info("socket")
            return (
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            )
        finally:
            backend.close()
            await backend.wait_closed(5.0)

    assert uvloop.run(keepalive_options()) == (1, 30, 10, 3)


@dataclass
class LoginTally:
    """What the looping clients saw, counted since the last ``start_phase``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    logins: int = 0
    failed_logins: list[str] = field(default_factory=list)
    failed_queries: int = 0
    served_by_port: Counter[int] = field(default_factory=Counter)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def start_phase(self) -> None:
        with self.lock:
            self.logins, self.failed_logins, self.failed_queries = 0, [], 0
            self.served_by_port = Counter()

    def login(self, error: str | None = None) -> None:
        with self.lock:
            if error is None:
                self.logins += 1
            else:
                self.failed_logins.append(error)
            self.changed.notify_all()

    def query(self, served_by_port: int | None) -> None:
        with self.lock:
            if served_by_port is None:
                self.failed_queries += 1
            else:
                self.served_by_port[served_by_port] += 1
            self.changed.notify_all()

    def wait_for(self, condition: Callable[[LoginTally], bool]) -> None:
        with self.lock:
            is_met = self.changed.wait_for(lambda: condition(self), timeout=PHASE_TIMEOUT_S)
            assert is_met, f"not within {PHASE_TIMEOUT_S:.0f} s: {self}"


class WatchedLogin(pymysql.connections.Connection):  # type: ignore[type-arg]
    """PyMySQL, noting when the login's OK arrived: its connect() sends SET NAMES next, and a
    session dropped then has logged in (its backend died under it) rather than failed to."""

    has_logged_in = False

    def _request_authentication(self) -> None:
        super()._request_authentication()
        self.has_logged_in = True


def log_in_and_query_in_a_loop(
    outputs: dict[str, Any], tenant: int, password: str, tally: LoginTally, stop: threading.Event
) -> None:
    host, port = host_port(outputs["ProxyReaderEndpoint"])
    while not stop.is_set():
        connection = WatchedLogin(
            host=host,
            port=port,
            user=f"user{tenant}",
            password=password,
            database=f"user_database{tenant}",
            ssl=tls_context(outputs["CACertificate"]),
            autocommit=True,  # no query of PyMySQL's own after the login but SET NAMES
            connect_timeout=10,
            defer_connect=True,
        )
        try:
            connection.connect()
        except pymysql.MySQLError as exc:
            if not connection.has_logged_in:
                tally.login(error=f"at {time.monotonic():.3f}: {exc}")
                continue
            tally.login()
            tally.query(served_by_port=None)
            continue
        tally.login()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@port FROM mytable LIMIT 1")
                tally.query(served_by_port=int(cursor.fetchone()[0]))
        except pymysql.MySQLError:
            # A session whose backend was on the killed replica: its query fails, as it would
            # against the replica itself. Logins are what the proxy must save.
            tally.query(served_by_port=None)
        finally:
            if connection.open:
                connection.close()


def reader_connection(outputs: dict[str, Any], tenant: int, password: str) -> Any:
    host, port = host_port(outputs["ProxyReaderEndpoint"])
    return pymysql.connect(
        host=host,
        port=port,
        user=f"user{tenant}",
        password=password,
        database=f"user_database{tenant}",
        ssl=tls_context(outputs["CACertificate"]),
        autocommit=True,
        connect_timeout=10,
        read_timeout=60,
    )


def port_of_server(connection: Any) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@port FROM mytable LIMIT 1")
        return int(cursor.fetchone()[0])


@dataclass
class BusyTally:
    """Per busy client: statements answered, statements failed, logins failed."""

    answered: Counter[int] = field(default_factory=Counter)
    failed: Counter[int] = field(default_factory=Counter)
    failed_logins: list[str] = field(default_factory=list)


def query_in_a_loop(
    outputs: dict[str, Any],
    client: int,
    password: str,
    tally: BusyTally,
    stop: threading.Event,
) -> None:
    """One long-lived connection that queries without pause; a lost one is opened again."""
    tenant = client % TENANTS
    connection = None
    while not stop.is_set():
        if connection is None:
            try:
                connection = reader_connection(outputs, tenant, password)
            except pymysql.MySQLError as exc:
                tally.failed_logins.append(f"client {client}: {exc}")
                time.sleep(0.1)
                continue
        try:
            port_of_server(connection)
            tally.answered[client] += 1
        except pymysql.MySQLError:
            tally.failed[client] += 1
            connection.close()
            connection = None
    if connection is not None:
        connection.close()


def wait_until(
    condition: Callable[[], bool], what: str, timeout_s: float = PHASE_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.1)


def tenant_passwords(outputs: dict[str, Any]) -> list[str]:
    store = FileSecretStore.from_config(
        FileSecretStoreConfig(
            path=Path(outputs["SecretStore"]), key_file=Path(outputs["SecretsKeyFile"])
        )
    )
    return [store.get(f"tenants/user{n}").password for n in range(TENANTS)]


def health_changes(proxy_log: Path, target: str) -> list[str]:
    """The proxy's log lines that say the target changed health."""
    pattern = re.compile(rf"WARNING .*target {re.escape(target)} is now (un)?healthy")
    return [line for line in proxy_log.read_text().splitlines() if pattern.search(line)]


def state_changes_metric(outputs: dict[str, Any], target: str) -> dict[str, float]:
    with urllib.request.urlopen(outputs["ProxyMetricsEndpoint"], timeout=10) as response:
        text = response.read().decode()
    found = re.findall(
        rf'tenantproxy_target_state_changes_total{{target="{re.escape(target)}",to="(\w+)"}} (\S+)',
        text,
    )
    return {to: float(value) for to, value in found}


def kill_9(record: ProcessRecord) -> None:
    """SIGKILL to the replica this module's stack started (checked by its PID and command)."""
    assert is_ours(record), record
    os.kill(record.pid, signal.SIGKILL)
    psutil.Process(record.pid).wait(timeout=30)


def restart(state_dir: Path, record: ProcessRecord) -> None:
    """Starts the killed replica again with its own command line; recorded in the stack's state
    so that ``down`` stops it."""
    again = start_detached(record.name, record.cmdline, Path(record.log_file), port=record.port)
    state = StackState.load(state_dir)
    assert state is not None
    state.add(again)
    wait_for_port(again, 60)


def test_a_replica_killed_during_50_looping_clients_gets_no_login_and_comes_back(
    failover_stack,
):
    outputs = failover_stack
    state_dir = Path(outputs["StateDir"])
    proxy_log = state_dir / "proxy.log"
    state = StackState.load(state_dir)
    assert state is not None
    victim = next(r for r in state.processes if r.name == "proxy-replica1")
    assert health_changes(proxy_log, "proxy-replica1") == []
    passwords = tenant_passwords(outputs)
    tally, stop = LoginTally(), threading.Event()
    clients = [
        threading.Thread(
            target=log_in_and_query_in_a_loop,
            args=(outputs, n % TENANTS, passwords[n % TENANTS], tally, stop),
        )
        for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        tally.wait_for(lambda t: t.logins >= LOGINS_BEFORE_KILL and len(t.served_by_port) == 2)
        assert tally.failed_logins == []

        tally.start_phase()
        kill_9(victim)
        tally.wait_for(lambda t: t.logins + len(t.failed_logins) >= LOGINS_AFTER_KILL)
        with tally.lock:
            failed, served = list(tally.failed_logins), dict(tally.served_by_port)
        assert failed == [], f"{len(failed)} failed logins after the kill, first: {failed[:3]}"
        changes = health_changes(proxy_log, "proxy-replica1")
        assert len(changes) == 1 and "is now unhealthy" in changes[0], changes
        # Only sessions that had their backend on the victim before it died were served there.
        assert served.get(victim.port, 0) <= CLIENTS, served

        restart(state_dir, victim)
        tally.start_phase()
        tally.wait_for(lambda t: t.served_by_port[victim.port] > 0)
        assert tally.failed_logins == []
        changes = health_changes(proxy_log, "proxy-replica1")
        assert len(changes) == 2 and "is now healthy" in changes[1], changes
        assert state_changes_metric(outputs, "proxy-replica1") == {"unhealthy": 1.0, "healthy": 1.0}
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)


def test_a_frozen_replica_is_found_out_by_its_silent_backends_and_logins_go_to_the_other(
    failover_stack, caplog: pytest.LogCaptureFixture
):
    """SIGSTOP: the replica's kernel still accepts connections, but nothing answers, as after a
    VM freeze or a network cut. Idle backends pinged before use (backend_check_after_idle_s = 0)
    time out, the new backend's login times out, and the login moves to the other replica."""
    outputs = failover_stack
    state = StackState.load(Path(outputs["StateDir"]))
    assert state is not None
    frozen = next(r for r in state.processes if r.name == "proxy-replica2" and is_ours(r))
    frozen_port = host_port(instance(outputs, "proxy-replica2")["endpoint"])[1]
    other_port = host_port(instance(outputs, "proxy-replica1")["endpoint"])[1]
    password = tenant_passwords(outputs)[1]
    caplog.set_level(logging.INFO, logger=TEST_PROXY_LOGGER)
    config = proxy_config_from_stack(outputs, backend_check_after_idle_s=0.0)
    with ProxyThread(config) as proxy:

        def served_by() -> int:
            host, port = host_port(proxy.endpoint("read_only"))
            with (
                pymysql.connect(
                    host=host,
                    port=port,
                    user="user1",
                    password=password,
                    database="user_database1",
                    ssl=tls_context(outputs["CACertificate"]),
                    connect_timeout=10,
                    read_timeout=60,  # old main's ping of a frozen backend never returns
                ) as connection,
                connection.cursor() as cursor,
            ):
                cursor.execute("SELECT @@port")
                return int(cursor.fetchone()[0])

        # Both replicas have idle backends of user1 (which one a statement gets is the router's
        # round robin, not the login's: in transaction mode each statement leases anew).
        seen: set[int] = set()
        for _ in range(20):
            seen.add(served_by())
            if len(seen) == 2:
                break
        assert seen == {frozen_port, other_port}
        assert is_ours(frozen)
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            assert [served_by() for _ in range(4)] == [other_port] * 4
            assert proxy.call(lambda: health_of(proxy)["proxy-replica2"]) is False
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
    downs = [r for r in caplog.records if "target proxy-replica2 is now unhealthy" in r.message]
    assert [r.levelname for r in downs] == ["WARNING"], [r.message for r in downs]


def health_of(proxy: ProxyThread) -> dict[str, bool]:
    assert proxy.server is not None
    return {t.target.name: t.is_healthy for t in proxy.server.context.router.targets}


IDLE_CLIENTS = 100
BUSY_CLIENTS = 20


def test_a_replica_killed_under_idle_and_busy_clients_costs_each_idle_one_nothing(
    failover_stack,
):
    """Transaction mode (the default): idle clients hold no backend, so a replica's death
    costs them nothing; a busy client's statement in flight on it is sent again elsewhere, or
    fails alone (ERROR 2013); no login fails."""
    outputs = failover_stack
    state_dir = Path(outputs["StateDir"])
    state = StackState.load(state_dir)
    assert state is not None
    victim = next(r for r in state.processes if r.name == "proxy-replica1" and is_ours(r))
    passwords = tenant_passwords(outputs)
    idle = [
        reader_connection(outputs, n % TENANTS, passwords[n % TENANTS]) for n in range(IDLE_CLIENTS)
    ]
    tally, stop = BusyTally(), threading.Event()
    busy = [
        threading.Thread(
            target=query_in_a_loop, args=(outputs, n, passwords[n % TENANTS], tally, stop)
        )
        for n in range(BUSY_CLIENTS)
    ]
    for thread in busy:
        thread.start()
    try:
        # The idle clients' statements ran on both replicas (after the frozen-replica test the
        # proxy may take a health check's interval to serve the thawed one again).
        ports: Counter[int] = Counter()
        wait_until(
            lambda: len(ports.update(port_of_server(c) for c in idle) or ports) == 2,
            "both replicas serving the idle clients",
        )
        wait_until(lambda: len(tally.answered) == BUSY_CLIENTS, "every busy client answered")

        kill_9(victim)
        answered_at_kill = sum(tally.answered.values())
        failed_idle = []
        for index, connection in enumerate(idle):
            try:
                assert port_of_server(connection) != victim.port
            except pymysql.MySQLError as exc:
                failed_idle.append(f"idle client {index}: {exc}")
        assert failed_idle == [], failed_idle[:3]
        wait_until(
            lambda: sum(tally.answered.values()) > answered_at_kill + 10 * BUSY_CLIENTS,
            "busy clients served after the kill",
        )
        new_logins = [reader_connection(outputs, n, passwords[n]) for n in range(TENANTS)]
        for connection in new_logins:
            assert port_of_server(connection) != victim.port
            connection.close()
    finally:
        stop.set()
        for thread in busy:
            thread.join(timeout=60)
        for connection in idle:
            connection.close()
        restart(state_dir, victim)
    assert tally.failed_logins == []
    assert max(tally.failed.values(), default=0) <= 1, dict(tally.failed)
