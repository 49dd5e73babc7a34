"""KILL through the proxy, as drivers use it: the id a client got in its handshake names its
session; the proxy kills that session's backend query or connection, wherever it runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import mysql.connector
import pymysql
import pytest

from tests.integration.clients import (
    ca_path,
    connector_connect,
    first_value,
    mariadb_cli,
    pymysql_connect,
)
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

KILLER, VICTIM, STRANGER = 3, 3, 5
LONG_QUERY = "SELECT SLEEP(30)"
# Bounded waits for a killed statement or connection to show it; not a timing assertion.
KILLED_WITHIN_S = 15


def tenant(stack: Any, endpoint: str, number: int = VICTIM) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "user": f"user{number}",
        "password": stack.secret(f"user{number}").password,
        "database": f"user_database{number}",
        "ca_file": ca_path(stack.outputs),
    }


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config_from_stack(stack.outputs)) as running:
        yield running


@pytest.fixture(params=["direct", "proxy"])
def endpoint(request: Any, stack: Any, proxy: ProxyThread) -> str:
    """Each test runs straight to the writer and through the proxy, and must behave alike."""
    return stack.proxy_writer if request.param == "direct" else proxy.endpoint("read_write")


class LongQuery:
    """Runs LONG_QUERY on a connection in a thread; remembers how it ended."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.started = threading.Event()
        self.outcome: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.started.wait(10)

    def _run(self) -> None:
        self.started.set()
        try:
            self.outcome = ("result", first_value(self.connection, LONG_QUERY))
        except Exception as exc:
            self.outcome = ("error", exc.args[0] if exc.args else None)

    def ended(self) -> Any:
        self._thread.join(KILLED_WITHIN_S)
        assert not self._thread.is_alive(), "the query was not interrupted"
        return self.outcome


def wait_until_running(watcher: Any, thread_id: int) -> None:
    """Until the victim's SLEEP shows in the processlist (seen from the killer's connection)."""
    for _ in range(100):
        state = first_value(
            watcher,
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = '{LONG_QUERY}'",
        )
        if state:
            return
        threading.Event().wait(0.1)
    raise AssertionError(f"the long query of {thread_id} never started")


def is_closed(connection: Any) -> bool:
    try:
        first_value(connection, "SELECT 1")
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError, mysql.connector.Error):
        return True
    return False


def pymysql_kill(killer: Any, thread_id: int) -> None:
    killer.kill(thread_id)  # COM_PROCESS_KILL


def sql_kill(killer: Any, thread_id: int) -> None:
    first_value(killer, f"KILL {thread_id}")


def connector_kill(stack: Any, endpoint: str, thread_id: int) -> None:
    connection = connector_connect(**tenant(stack, endpoint, KILLER))
    try:
        connection.cmd_process_kill(thread_id)
    finally:
        connection.close()


KILLS: dict[str, Callable[[Any, int], None]] = {
    "pymysql-COM_PROCESS_KILL": pymysql_kill,
    "sql-KILL": sql_kill,
}


@pytest.mark.parametrize("kill", KILLS.values(), ids=KILLS.keys())
def test_kill_of_the_handshake_id_closes_that_connection(stack, endpoint, kill):
    victim = pymysql_connect(**tenant(stack, endpoint))
    with pymysql_connect(**tenant(stack, endpoint, KILLER)) as killer:
        kill(killer, victim.thread_id())
        assert first_value(killer, "SELECT 1") == 1
    assert is_closed(victim)


def test_connector_kills_by_the_handshake_id(stack, endpoint):
    victim = pymysql_connect(**tenant(stack, endpoint))
    connector_kill(stack, endpoint, victim.thread_id())
    assert is_closed(victim)


def test_the_mariadb_cli_kills_by_the_handshake_id(stack, endpoint):
    victim = pymysql_connect(**tenant(stack, endpoint))
    result = mariadb_cli(**tenant(stack, endpoint, KILLER), sql=f"KILL {victim.thread_id()}")
    assert result.returncode == 0, result.stderr
    assert is_closed(victim)


def test_kill_query_interrupts_the_statement_and_keeps_the_connection(stack, endpoint):
    with (
        pymysql_connect(**tenant(stack, endpoint)) as victim,
        pymysql_connect(**tenant(stack, endpoint, KILLER)) as killer,
    ):
        running = LongQuery(victim)
        wait_until_running(killer, victim.thread_id())
        first_value(killer, f"KILL QUERY {victim.thread_id()}")
        assert running.ended() == ("error", 1317)  # Query execution was interrupted
        assert first_value(victim, "SELECT 2") == 2


def test_a_session_of_another_tenant_is_an_unknown_thread(stack, proxy):
    # Straight to MariaDB another user's thread gets 1095 "You are not owner of thread"; the
    # proxy answers 1094, so a tenant cannot learn that another tenant's session exists
    # (docs/architecture.md, "Differences from connecting directly").
    endpoint = proxy.endpoint("read_write")
    victim = pymysql_connect(**tenant(stack, endpoint))
    with pymysql_connect(**tenant(stack, endpoint, STRANGER)) as stranger:
        for kill in KILLS.values():
            with pytest.raises(pymysql.err.OperationalError) as caught:
                kill(stranger, victim.thread_id())
            code, message = caught.value.args
            assert (code, message) == (1094, f"Unknown thread id: {victim.thread_id()}")
    assert first_value(victim, "SELECT 1") == 1
    victim.close()


def test_an_id_nobody_has_is_an_unknown_thread(stack, endpoint):
    with pymysql_connect(**tenant(stack, endpoint, KILLER)) as killer:
        unused = (1 << 30) + 999_999
        with pytest.raises(pymysql.err.OperationalError) as caught:
            first_value(killer, f"KILL QUERY {unused}")
        assert caught.value.args == (1094, f"Unknown thread id: {unused}")
        assert first_value(killer, "SELECT 1") == 1


def test_a_backend_thread_id_from_connection_id_still_works(stack, endpoint):
    victim = pymysql_connect(**tenant(stack, endpoint))
    # In a transaction: in transaction mode the backend (whose id this is) stays the victim's.
    victim.begin()
    backend_id = first_value(victim, "SELECT CONNECTION_ID()")
    with pymysql_connect(**tenant(stack, endpoint, KILLER)) as killer:
        first_value(killer, f"KILL {backend_id}")
    assert is_closed(victim)


def test_handshake_ids_are_told_apart_from_backend_ids(stack, proxy):
    with pymysql_connect(**tenant(stack, proxy.endpoint("read_write"))) as connection:
        assert connection.thread_id() >= 1 << 30
        assert first_value(connection, "SELECT CONNECTION_ID()") < 1 << 30


def test_kill_reaches_a_session_on_another_replica(stack, proxy):
    """The killer's backend is on one replica, the victim's on the other: the proxy kills over a
    one-off connection to the victim's replica."""
    reader = proxy.endpoint("read_only")
    victim = pymysql_connect(**tenant(stack, reader))
    killer = pymysql_connect(**tenant(stack, reader, KILLER))
    try:
        victim_server = first_value(victim, "SELECT @@server_id")
        assert first_value(killer, "SELECT @@server_id") != victim_server, "same replica"
        running = LongQuery(victim)
        wait_until_running(victim_watcher(stack, proxy, victim_server), victim.thread_id())
        first_value(killer, f"KILL QUERY {victim.thread_id()}")
        assert running.ended() == ("error", 1317)
        assert first_value(victim, "SELECT 2") == 2
        first_value(killer, f"KILL {victim.thread_id()}")
        assert is_closed(victim)
        assert first_value(killer, "SELECT 3") == 3
    finally:
        killer.close()


def victim_watcher(stack: Any, proxy: ProxyThread, server_id: int) -> Any:
    """An admin connection to the replica whose @@server_id is given."""
    for instance in stack.outputs["ProxyClusterInstances"]:
        admin = stack.admin_connect(instance["endpoint"])
        if first_value(admin, "SELECT @@server_id") == server_id:
            return admin
        admin.close()
    raise AssertionError(f"no replica with server id {server_id}")
