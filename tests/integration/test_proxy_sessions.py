"""Session pooling: warm backends reused and reset, COM_CHANGE_USER, limits and timeouts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tenantproxy.config import TargetConfig
from tenantproxy.stack.outputs import to_toml
from tests.integration.clients import ca_path, connector_connect, pymysql_connect
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.raw_client import RawClient, errors_in

pytestmark = pytest.mark.integration


def tenant(stack: Any, number: int, endpoint: str, **overrides: Any) -> dict[str, Any]:
    settings = {
        "endpoint": endpoint,
        "user": f"user{number}",
        "password": stack.secret(f"user{number}").password,
        "database": f"user_database{number}",
        "ca_file": ca_path(stack.outputs),
    }
    return settings | overrides


def holding_a_backend(**settings: Any) -> Any:
    """A client inside a transaction: it holds its backend in either pool mode."""
    connection = pymysql_connect(**settings)
    connection.begin()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return connection


def backend_thread_id(connection: Any) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def wait_until_reset(proxy: ProxyThread) -> None:
    """Until every backend given back is reset and idle again (a backend being reset still
    counts as leased): the reset runs after the client has gone, and a client that comes
    sooner gets another backend."""
    assert proxy.server is not None
    pools = proxy.server.context.pools

    def is_settled() -> bool:
        return all(p.stats().leased == 0 and p.stats().connecting == 0 for p in pools.pools())

    for _ in range(200):
        if proxy.call(is_settled):
            return
        time.sleep(0.05)
    raise AssertionError("backends were not given back within 10 s")


@pytest.fixture(scope="module")
def writer_proxy(stack: Any) -> Iterator[ProxyThread]:
    """One target only (the writer endpoint), so that reuse is visible."""
    with ProxyThread(proxy_config_from_stack(stack.outputs)) as running:
        yield running


def test_a_second_client_gets_the_first_clients_backend_warm_and_reset(stack, writer_proxy):
    settings = tenant(stack, 6, writer_proxy.endpoint("read_write"))
    with pymysql_connect(**settings) as first, first.cursor() as cursor:
        first_id = backend_thread_id(first)
        cursor.execute("SELECT @@SESSION.sql_mode")
        default_sql_mode = cursor.fetchone()[0]
        cursor.execute("SET @left_behind = 'first client'")
        cursor.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
    wait_until_reset(writer_proxy)
    with pymysql_connect(**settings) as second, second.cursor() as cursor:
        assert backend_thread_id(second) == first_id
        cursor.execute("SELECT @left_behind, @@SESSION.sql_mode")
        assert cursor.fetchone() == (None, default_sql_mode)


def test_an_open_transaction_is_rolled_back_when_its_client_leaves(stack, writer_proxy):
    settings = tenant(stack, 6, writer_proxy.endpoint("read_write"))
    with pymysql_connect(**settings) as first, first.cursor() as cursor:
        cursor.execute("INSERT INTO mytable (Column_A) VALUES ('uncommit')")
    with pymysql_connect(**settings) as second, second.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mytable WHERE Column_A = 'uncommit'")
        assert cursor.fetchone() == (0,)


def test_change_user_moves_the_session_to_the_other_tenant(stack, writer_proxy):
    endpoint = writer_proxy.endpoint("read_write")
    connection = connector_connect(**tenant(stack, 1, endpoint))
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT CURRENT_USER(), DATABASE()")
        assert cursor.fetchone() == ("user1@%", "user_database1")
        cursor.close()
        connection.cmd_change_user(
            username="user2", password=stack.secret("user2").password, database="user_database2"
        )
        cursor = connection.cursor()
        cursor.execute("SELECT CURRENT_USER(), DATABASE()")
        assert cursor.fetchone() == ("user2@%", "user_database2")
        cursor.execute("SELECT COUNT(*) FROM mytable")
        assert cursor.fetchone()[0] > 0
        cursor.close()
    finally:
        connection.close()


def test_change_user_with_a_wrong_password_is_refused_with_1045(stack, writer_proxy):
    import mysql.connector

    endpoint = writer_proxy.endpoint("read_write")
    connection = connector_connect(**tenant(stack, 1, endpoint))
    try:
        with pytest.raises(mysql.connector.Error) as caught:
            connection.cmd_change_user(
                username="user2", password="wrong", database="user_database2"
            )
        assert caught.value.errno == 1045
    finally:
        connection.close()


def test_borrow_times_out_with_error_9501_when_the_pool_is_full(stack):
    # 1 % of max_connections (200) leaves two backends on the writer.
    config = proxy_config_from_stack(
        stack.outputs, max_connections_percent=1, connection_borrow_timeout_s=0.5
    )
    with ProxyThread(config) as proxy:
        settings = tenant(stack, 4, proxy.endpoint("read_write"))
        holders = [holding_a_backend(**settings) for _ in range(2)]
        try:
            with pytest.raises(pymysql.err.OperationalError) as caught:
                pymysql_connect(**settings)
            assert caught.value.args == (9501, "Timed-out waiting to acquire database connection")
            holders.pop().close()
            with pymysql_connect(**settings) as late, late.cursor() as cursor:
                cursor.execute("SELECT 1")
                assert cursor.fetchone() == (1,)
        finally:
            for holder in holders:
                holder.close()


def test_an_idle_client_is_disconnected_with_error_4031(stack):
    config = proxy_config_from_stack(stack.outputs, require_tls=False, idle_client_timeout_s=0.5)
    with ProxyThread(config) as proxy:
        client = RawClient(proxy.endpoint("read_only"))
        client.log_in("user4", stack.secret("user4").password, "user_database4")
        errors = errors_in(client.read_until_closed())
        client.close()
    assert [(e.error_code, e.error_message) for e in errors] == [
        (4031, "The client was disconnected by the server because of inactivity.")
    ]


def test_sigterm_lets_open_sessions_finish_and_refuses_new_ones(stack, tmp_path: Path):
    config = proxy_config_from_stack(stack.outputs, shutdown_grace_s=30.0)
    config_file = tmp_path / "proxy.toml"
    config_file.write_text(to_toml(config.model_dump(mode="json", exclude_none=True)))
    program = Path(sys.executable).parent / "tenantproxy"
    process = subprocess.Popen(
        [str(program), "proxy", "run", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = process.stdout.readline() if process.stdout else ""
        assert ready.startswith("tenantproxy ready"), ready
        addresses = dict(part.split("=") for part in ready.split()[2:])
        settings = tenant(stack, 3, addresses["read_only"])
        open_session = pymysql_connect(**settings)
        os.kill(process.pid, signal.SIGTERM)
        assert process.stderr is not None
        for line in process.stderr:  # the proxy says when it stopped listening
            if "shutting down" in line:
                break
        with open_session.cursor() as cursor:  # still served within the grace period
            cursor.execute("SELECT COUNT(*) FROM mytable")
            assert cursor.fetchone()[0] > 0
        with pytest.raises(pymysql.err.OperationalError):
            pymysql_connect(**settings)
        open_session.close()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_a_backend_killed_while_idle_is_replaced_before_a_client_gets_it(stack):
    config = proxy_config_from_stack(stack.outputs, backend_check_after_idle_s=0.0)
    with ProxyThread(config) as proxy:
        settings = tenant(stack, 2, proxy.endpoint("read_write"))
        with pymysql_connect(**settings) as first:
            victim = backend_thread_id(first)
        writer = next(
            i["endpoint"] for i in stack.outputs["ProxyClusterInstances"] if i["role"] == "writer"
        )
        with stack.admin_connect(writer) as admin, admin.cursor() as cursor:
            cursor.execute(f"KILL {victim}")
        with pymysql_connect(**settings) as second:
            assert backend_thread_id(second) != victim


def test_a_dead_replica_is_skipped_by_the_reader_endpoint(stack):
    config = proxy_config_from_stack(stack.outputs)
    dead = TargetConfig(name="dead-replica", role="replica", host="127.0.0.1", port=free_port())
    config = config.model_copy(update={"targets": [*config.targets, dead]})
    with ProxyThread(config) as proxy:
        assert proxy.call(lambda: health_of(proxy)) == {
            "proxy-writer": True,
            "proxy-replica1": True,
            "proxy-replica2": True,
            "dead-replica": False,
        }
        settings = tenant(stack, 2, proxy.endpoint("read_only"))
        for _ in range(12):
            with pymysql_connect(**settings) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT @@read_only")
                assert cursor.fetchone() == (1,)


def adopted_total(proxy: ProxyThread) -> int:
    assert proxy.server is not None
    return sum(pool.stats().adopted_total for pool in proxy.server.context.pools.pools())


def health_of(proxy: ProxyThread) -> dict[str, bool]:
    assert proxy.server is not None
    return {t.target.name: t.is_healthy for t in proxy.server.context.router.targets}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_client_without_a_database_gets_none_even_on_a_reused_backend(stack, writer_proxy):
    endpoint = writer_proxy.endpoint("read_write")
    with_database = tenant(stack, 6, endpoint)
    without = tenant(stack, 6, endpoint, database=None)
    pymysql_connect(**with_database).close()
    for _ in range(2):
        with pymysql_connect(**without) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT DATABASE()")
            assert cursor.fetchone() == (None,)
            cursor.execute("USE user_database6")  # leaves a database behind for the pool


def test_init_query_runs_on_every_backend_a_client_gets(stack):
    config = proxy_config_from_stack(stack.outputs, init_query="SET @tenantproxy_init = 42")
    with ProxyThread(config) as proxy:
        settings = tenant(stack, 5, proxy.endpoint("read_write"))
        for _ in range(2):  # a new backend, then the same one after its reset
            with pymysql_connect(**settings) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT @tenantproxy_init")
                assert cursor.fetchone() == (42,)


def test_clients_past_max_clients_get_error_1040(stack):
    config = proxy_config_from_stack(stack.outputs, max_clients=2)
    with ProxyThread(config) as proxy:
        settings = tenant(stack, 5, proxy.endpoint("read_write"))
        holders = [pymysql_connect(**settings) for _ in range(2)]
        try:
            with pytest.raises(pymysql.err.OperationalError) as caught:
                pymysql_connect(**settings)
            assert caught.value.args == (1040, "Too many connections")
        finally:
            for holder in holders:
                holder.close()


def test_a_tenant_past_max_clients_per_tenant_gets_error_1203_and_others_do_not(stack):
    config = proxy_config_from_stack(stack.outputs, max_clients_per_tenant=2)
    with ProxyThread(config) as proxy:
        endpoint = proxy.endpoint("read_write")
        holders = [pymysql_connect(**tenant(stack, 4, endpoint)) for _ in range(2)]
        try:
            with pytest.raises(pymysql.err.OperationalError) as caught:
                pymysql_connect(**tenant(stack, 4, endpoint))
            assert caught.value.args == (
                1203,
                "User user4 already has more than 'max_user_connections' active connections",
            )
            pymysql_connect(**tenant(stack, 5, endpoint)).close()  # another tenant is not capped
            holders.pop().close()
            pymysql_connect(**tenant(stack, 4, endpoint)).close()  # a slot freed up
        finally:
            for holder in holders:
                holder.close()


def test_a_tenant_past_max_backends_per_tenant_waits_while_others_are_served(stack):
    config = proxy_config_from_stack(
        stack.outputs, max_backends_per_tenant=1, connection_borrow_timeout_s=0.5
    )
    with ProxyThread(config) as proxy:
        endpoint = proxy.endpoint("read_write")
        holder = holding_a_backend(**tenant(stack, 4, endpoint))
        try:
            with pytest.raises(pymysql.err.OperationalError) as caught:
                pymysql_connect(**tenant(stack, 4, endpoint))
            assert caught.value.args[0] == 9501
            with pymysql_connect(**tenant(stack, 5, endpoint)) as other, other.cursor() as cursor:
                cursor.execute("SELECT 1")
                assert cursor.fetchone() == (1,)
        finally:
            holder.close()


def test_a_full_target_hands_an_idle_backend_to_another_tenant_with_change_user(stack):
    # 1 % of max_connections (200) leaves two backends on the writer.
    config = proxy_config_from_stack(stack.outputs, max_connections_percent=1)
    with ProxyThread(config) as proxy:
        endpoint = proxy.endpoint("read_write")
        holder = holding_a_backend(**tenant(stack, 3, endpoint))  # takes one of the two
        try:
            with pymysql_connect(**tenant(stack, 4, endpoint)) as first:
                handed_over = backend_thread_id(first)  # idle in user4's pool after this
            second = pymysql_connect(**tenant(stack, 5, endpoint))
            with second, second.cursor() as cursor:
                # The same server thread, logged in again as user5: no new connection.
                cursor.execute("SELECT CONNECTION_ID(), CURRENT_USER(), DATABASE()")
                assert cursor.fetchone() == (handed_over, "user5@%", "user_database5")
                cursor.execute("SELECT COUNT(*) FROM mytable")
                assert cursor.fetchone()[0] > 0
            adopted = proxy.call(lambda: adopted_total(proxy))
            assert adopted == 1
        finally:
            holder.close()
