"""Transaction multiplexing (pool_mode = "transaction") through a proxy over the stack's writer:
clients share a few backends, keep their session state, and are pinned when it cannot be carried."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tenantproxy.proxy.session_state import TRACKED_VARIABLES
from tests.integration.clients import ca_path, pymysql_connect
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

TENANT = 11
MAX_BACKENDS = 3


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute(
            f"GRANT CREATE TEMPORARY TABLES, LOCK TABLES ON user_database{TENANT}.*"
            f" TO 'user{TENANT}'@'%'"
        )
    config = proxy_config_from_stack(
        stack.outputs,
        pool_mode="transaction",
        max_backends_per_tenant=MAX_BACKENDS,
        last_insert_id_hold_timeout_s=0.5,
    )
    with ProxyThread(config) as running:
        yield running
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM user_database{TENANT}.mytable WHERE Column_A LIKE 'lid%'"
            " OR Column_A LIKE 'mux%' OR Column_A = 'held'"
        )
        admin.commit()


def connect(stack: Any, proxy: ProxyThread) -> pymysql.Connection[Any]:
    return pymysql_connect(
        endpoint=proxy.endpoint("read_write"),
        user=f"user{TENANT}",
        password=stack.secret(f"user{TENANT}").password,
        database=f"user_database{TENANT}",
        ca_file=ca_path(stack.outputs),
        autocommit=True,
    )


def one(connection: pymysql.Connection[Any], sql: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
        return row[0] if row else None


def backend_counts(proxy: ProxyThread) -> tuple[int, int]:
    """(open backends, leased backends) over the proxy's pools."""
    assert proxy.server is not None
    pools = proxy.server.context.pools

    def counts() -> tuple[int, int]:
        stats = [p.stats() for p in pools.pools()]
        return sum(s.size for s in stats), sum(s.leased for s in stats)

    return proxy.call(counts)


def pins(proxy: ProxyThread) -> dict[str, int]:
    assert proxy.server is not None
    metrics = proxy.server.context.metrics
    tenant = f"user{TENANT}"
    return proxy.call(lambda: {r: n for (t, r), n in metrics.pins.items() if t == tenant})


def wait_for_no_leased_backend(proxy: ProxyThread) -> None:
    for _ in range(100):
        if backend_counts(proxy)[1] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"backends still leased: {backend_counts(proxy)}")


def test_many_clients_share_a_few_backends_and_idle_ones_hold_none(stack, proxy):
    clients = [connect(stack, proxy) for _ in range(30)]
    try:
        for index, client in enumerate(clients):
            assert one(client, f"SELECT {index}") == index
        wait_for_no_leased_backend(proxy)
        opened, leased = backend_counts(proxy)
        assert leased == 0
        assert 1 <= opened <= MAX_BACKENDS
    finally:
        for client in clients:
            client.close()


def test_tracked_variables_follow_their_client_while_others_set_other_values(stack, proxy):
    settings = {
        "time_zone": "'+03:00'",
        "sql_mode": "'ANSI_QUOTES'",
        "wait_timeout": "1234",
        "auto_increment_increment": "7",
        "tx_isolation": "'SERIALIZABLE'",
        "max_statement_time": "55.5",
    }
    pins_before = pins(proxy)
    me = connect(stack, proxy)
    others = [connect(stack, proxy) for _ in range(10)]
    try:
        for name, value in settings.items():
            one(me, f"SET SESSION {name} = {value}")
        for round_ in range(3):
            for index, other in enumerate(others):
                one(other, f"SET SESSION wait_timeout = {100 + index + round_}")
                one(other, "SET SESSION time_zone = '-05:00'")
            for name, value in settings.items():
                assert str(one(me, f"SELECT @@SESSION.{name}")) == value.strip("'")
        assert one(others[3], "SELECT @@SESSION.wait_timeout") == 105
        assert pins(proxy) == pins_before
    finally:
        for client in [me, *others]:
            client.close()


# Every variable the proxy carries (session_state.TRACKED_VARIABLES): the value one client sets,
# and the value the other clients set meanwhile.
EVERY_TRACKED_SETTING = {
    "autocommit": ("0", "1"),
    "auto_increment_increment": ("7", "3"),
    "auto_increment_offset": ("5", "2"),
    "character_set_client": ("'latin1'", "'utf8mb3'"),
    "character_set_connection": ("'latin1'", "'ascii'"),
    "character_set_database": ("'latin1'", "'ascii'"),
    "character_set_results": ("'latin1'", "'ascii'"),
    "character_set_server": ("'latin1'", "'ascii'"),
    "collation_connection": ("'latin1_bin'", "'utf8mb4_unicode_ci'"),
    "collation_database": ("'latin1_bin'", "'utf8mb4_unicode_ci'"),
    "collation_server": ("'latin1_bin'", "'ascii_bin'"),
    "interactive_timeout": ("1234", "2345"),
    "max_statement_time": ("55.5", "12.25"),
    "net_read_timeout": ("77", "88"),
    "net_write_timeout": ("66", "99"),
    "query_cache_type": ("'DEMAND'", "'OFF'"),
    "sql_mode": ("'ANSI_QUOTES'", "'NO_BACKSLASH_ESCAPES,STRICT_TRANS_TABLES'"),
    "time_zone": ("'+03:00'", "'-05:00'"),
    "transaction_isolation": ("'SERIALIZABLE'", "'READ-COMMITTED'"),
    "transaction_read_only": ("1", "0"),
    "tx_isolation": ("'SERIALIZABLE'", "'READ-COMMITTED'"),
    "tx_read_only": ("1", "0"),
    "wait_timeout": ("1234", "321"),
}
OTHER_CLIENTS = 50


def direct_answer(stack: Any, sql: str) -> tuple[str, Any]:
    """("value", what SELECT @@SESSION.x gives after ``sql``) straight to MariaDB, or
    ("error", its code) when MariaDB refuses ``sql``."""
    with (
        pymysql_connect(
            endpoint=stack.proxy_writer,
            user=f"user{TENANT}",
            password=stack.secret(f"user{TENANT}").password,
            database=f"user_database{TENANT}",
            ca_file=ca_path(stack.outputs),
            autocommit=True,
        ) as direct,
        direct.cursor() as cursor,
    ):
        name = sql.split()[2]
        try:
            cursor.execute(sql)
        except pymysql.MySQLError as exc:
            return ("error", exc.args[0])
        cursor.execute(f"SELECT @@SESSION.{name}")
        return ("value", cursor.fetchone()[0])


def test_every_tracked_variable_follows_its_client_while_50_others_set_other_values(stack, proxy):
    assert set(EVERY_TRACKED_SETTING) == TRACKED_VARIABLES
    pins_before = pins(proxy)
    others = [connect(stack, proxy) for _ in range(OTHER_CLIENTS)]
    refused = {}
    try:
        for name, (mine, theirs) in EVERY_TRACKED_SETTING.items():
            kind, expected = direct_answer(stack, f"SET SESSION {name} = {mine}")
            with connect(stack, proxy) as me, me.cursor() as cursor:
                if kind == "error":  # not a variable of this server: refused alike
                    with pytest.raises(pymysql.MySQLError) as caught:
                        cursor.execute(f"SET SESSION {name} = {mine}")
                    assert caught.value.args[0] == expected
                    refused[name] = expected
                    continue
                cursor.execute(f"SET SESSION {name} = {mine}")
                for _ in range(2):
                    for other in others:
                        one(other, f"SET SESSION {name} = {theirs}")
                    cursor.execute(f"SELECT @@SESSION.{name}, 1")
                    assert cursor.fetchone() == (expected, 1), name
                if name == "autocommit":
                    me.rollback()
        assert pins(proxy) == pins_before
        # MariaDB 10.11 has MySQL's transaction_* names only from 11.1 on (1193), and with
        # the query cache off globally (its default) a session cannot turn it on (1925).
        assert refused == {
            "transaction_isolation": 1193,
            "transaction_read_only": 1193,
            "query_cache_type": 1925,
        }
    finally:
        for other in others:
            other.close()


def test_set_names_is_carried_with_its_collation(stack, proxy):
    me = connect(stack, proxy)
    others = [connect(stack, proxy) for _ in range(5)]
    try:
        one(me, "SET NAMES latin1 COLLATE latin1_bin")
        for other in others:
            one(other, "SET NAMES utf8mb4")
        for _ in range(3):
            assert one(me, "SELECT @@collation_connection") == "latin1_bin"
        one(me, "SET NAMES latin1")
        for other in others:
            one(other, "SET NAMES utf8mb4 COLLATE utf8mb4_bin")
        assert one(me, "SELECT @@collation_connection") == "latin1_swedish_ci"
    finally:
        for client in [me, *others]:
            client.close()


@pytest.mark.parametrize(
    ("statements", "check", "expected", "reason"),
    [
        (["SET @mine = 42"], "SELECT @mine", 42, "user_variable"),
        (["SELECT @other := 43"], "SELECT @other", 43, "user_variable"),
        (
            ["CREATE TEMPORARY TABLE scratch (n INT)", "INSERT INTO scratch VALUES (44)"],
            "SELECT n FROM scratch",
            44,
            "temporary_table",
        ),
        (
            ["SELECT GET_LOCK('tenantproxy_test', 5)"],
            "SELECT IS_USED_LOCK('x') IS NULL",
            1,
            "get_lock",
        ),
        (["PREPARE p FROM 'SELECT 45'"], "EXECUTE p", 45, "sql_prepare"),
        (["LOCK TABLES mytable READ"], "SELECT COUNT(*) > 0 FROM mytable", 1, "lock_tables"),
    ],
)
def test_state_that_cannot_be_carried_pins_and_stays_visible(
    stack, proxy, statements, check, expected, reason
):
    before = pins(proxy).get(reason, 0)
    me = connect(stack, proxy)
    others = [connect(stack, proxy) for _ in range(5)]
    try:
        for statement in statements:
            one(me, statement)
        backend = one(me, "SELECT CONNECTION_ID()")
        for other in others:
            one(other, "SELECT 1")
        assert one(me, check) == expected
        assert one(me, "SELECT CONNECTION_ID()") == backend
        assert pins(proxy).get(reason, 0) == before + 1
    finally:
        for client in [me, *others]:
            client.close()


def test_a_transaction_is_invisible_until_commit_and_gone_after_rollback(stack, proxy):
    writer, reader = connect(stack, proxy), connect(stack, proxy)
    marker = f"mux{time.monotonic_ns() % 100000}"
    try:
        count = f"SELECT COUNT(*) FROM mytable WHERE Column_A = '{marker}'"
        one(writer, "BEGIN")
        one(writer, f"INSERT INTO mytable (Column_A) VALUES ('{marker}')")
        assert one(reader, count) == 0
        one(writer, "ROLLBACK")
        assert one(writer, count) == 0
        one(writer, "SET autocommit = 0")
        one(writer, f"INSERT INTO mytable (Column_A) VALUES ('{marker}')")
        assert one(reader, count) == 0
        one(writer, "COMMIT")
        assert one(reader, count) == 1
    finally:
        writer.close()
        reader.close()


def test_last_insert_id_answers_right_under_contention(stack, proxy):
    failures: list[str] = []

    def insert_and_read(index: int) -> None:
        client = connect(stack, proxy)
        try:
            for round_ in range(10):
                with client.cursor() as cursor:
                    cursor.execute("INSERT INTO mytable (Column_A) VALUES (%s)", (f"lid{index}",))
                    inserted = cursor.lastrowid
                    cursor.execute("SELECT LAST_INSERT_ID()")
                    if cursor.fetchone()[0] != inserted:
                        failures.append(f"client {index} round {round_}")
        finally:
            client.close()

    threads = [threading.Thread(target=insert_and_read, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []


def test_a_client_that_never_reads_its_insert_id_gives_the_backend_back(stack, proxy):
    client = connect(stack, proxy)
    try:
        one(client, "INSERT INTO mytable (Column_A) VALUES ('held')")
        assert backend_counts(proxy)[1] >= 1  # held for SELECT LAST_INSERT_ID()
        wait_for_no_leased_backend(proxy)  # last_insert_id_hold_timeout_s = 0.5
    finally:
        client.close()


def exported(proxy: ProxyThread) -> str:
    from tenantproxy.observability.prometheus import render
    from tenantproxy.proxy.exported_metrics import proxy_families

    assert proxy.server is not None
    context = proxy.server.context
    return proxy.call(lambda: render(proxy_families(context)).decode())


def test_pins_and_transactions_are_exported_to_prometheus(stack, proxy):
    pinned, in_transaction = connect(stack, proxy), connect(stack, proxy)
    try:
        one(pinned, "SET @pinned = 1")
        one(in_transaction, "BEGIN")
        one(in_transaction, "SELECT COUNT(*) FROM mytable")
        text = exported(proxy)
        assert "tenantproxy_database_connections_currently_session_pinned 1.0" in text
        assert "tenantproxy_database_connections_currently_in_transaction 1.0" in text
        assert (
            f'tenantproxy_session_pins_total{{reason="user_variable",tenant="user{TENANT}"}}'
            in text
        )
        one(in_transaction, "COMMIT")
        text = exported(proxy)
        assert "tenantproxy_database_connections_currently_in_transaction 0.0" in text
    finally:
        pinned.close()
        in_transaction.close()


def test_a_multi_fragment_query_waiting_for_a_backend_arrives_whole(stack):
    # backend_check_after_idle_s = 0: every statement waits for a lease, so the 16 MiB first
    # fragment waits in the relay alone and goes on as one chunk (which once skipped the
    # splitter and made the next fragment look like a new command: ERROR 1156).
    config = proxy_config_from_stack(
        stack.outputs, pool_mode="transaction", backend_check_after_idle_s=0.0
    )
    value = "x" * (20 * 1024 * 1024 - 7) + "tail123"
    with ProxyThread(config) as proxy, connect(stack, proxy) as client, client.cursor() as cursor:
        cursor.execute("SELECT LENGTH(%s), RIGHT(%s, 7)", (value, value))
        assert cursor.fetchone() == (20 * 1024 * 1024, "tail123")


def abort_the_backend_running(stack: Any, proxy: ProxyThread, statement_start: str) -> None:
    """Drops (in the proxy) the backend connection whose thread runs a statement starting
    with ``statement_start``, as a dead server or network would: no answer, no ERR."""
    thread_id = None
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        for _ in range(100):
            cursor.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
                (statement_start + "%",),
            )
            row = cursor.fetchone()
            if row is not None:
                thread_id = row[0]
                break
            time.sleep(0.02)
    assert thread_id is not None, f"no thread runs {statement_start!r}"
    assert proxy.server is not None
    sessions = proxy.server.context.sessions

    def abort() -> bool:
        for session in sessions.values():
            held = session.held_backend
            if held is not None and held.connection.connection_id == thread_id:
                assert held.connection.transport is not None
                held.connection.transport.abort()
                return True
        return False

    assert proxy.call(abort), f"no session holds backend {thread_id}"


def test_a_statement_whose_backend_dies_unanswered_runs_on_another_with_the_session_state(
    stack, proxy
):
    with connect(stack, proxy) as client:
        with client.cursor() as cursor:
            cursor.execute("SET time_zone = '+03:00'")
            cursor.execute("SELECT CONNECTION_ID()")
        answer: list[Any] = []

        def run() -> None:
            with client.cursor() as cursor:
                cursor.execute(
                    "SELECT SLEEP(0.5) AS marker_of_resend, @@time_zone, CONNECTION_ID()"
                )
                answer.append(cursor.fetchone())

        runner = threading.Thread(target=run)
        runner.start()
        abort_the_backend_running(stack, proxy, "SELECT SLEEP(0.5) AS marker_of_resend")
        runner.join(timeout=30)
        assert len(answer) == 1
        slept, time_zone, _ = answer[0]
        assert (slept, time_zone) == (0, "+03:00")
        assert one(client, "SELECT @@time_zone") == "+03:00"


def test_a_client_idle_in_its_last_insert_id_hold_outlives_its_backend(stack, proxy):
    # The hold is the proxy's own doing: a backend that dies during it costs the client nothing.
    assert proxy.server is not None
    sessions = proxy.server.context.sessions
    with connect(stack, proxy) as client:
        with client.cursor() as cursor:
            cursor.execute("INSERT INTO mytable (Column_A) VALUES ('lidgone')")

        def abort_the_held_backend() -> bool:
            held = sessions[client.thread_id()].held_backend
            if held is None or held.connection.transport is None:
                return False
            held.connection.transport.abort()
            return True

        assert proxy.call(abort_the_held_backend)  # within last_insert_id_hold_timeout_s
        assert one(client, "SELECT 7") == 7
