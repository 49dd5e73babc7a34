"""What a client sees through the proxy is what it would see straight from MariaDB: the right
database after a backend's reuse, whichever way the previous client moved it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.clients import (
    ca_path,
    connector_connect,
    first_value,
    mariadb_cli,
    mysqlclient_connect,
    pymysql_connect,
)
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

TENANT = 7
HOME = f"user_database{TENANT}"
# Every account may enter information_schema, so each client can move its backend there.
ELSEWHERE = "information_schema"


def settings(stack: Any, endpoint: str, database: str | None = HOME) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "user": f"user{TENANT}",
        "password": stack.secret(f"user{TENANT}").password,
        "database": database,
        "ca_file": ca_path(stack.outputs),
    }


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    """The writer endpoint only, so the next client gets the backend the last one left."""
    with ProxyThread(proxy_config_from_stack(stack.outputs)) as running:
        yield running


def pymysql_init_db(stack: Any, endpoint: str) -> None:
    with pymysql_connect(**settings(stack, endpoint)) as connection:
        connection.select_db(ELSEWHERE)  # COM_INIT_DB
        assert first_value(connection, "SELECT DATABASE()") == ELSEWHERE


def mysqlclient_use(stack: Any, endpoint: str) -> None:
    connection = mysqlclient_connect(**settings(stack, endpoint))
    try:
        connection.cursor().execute(f"USE {ELSEWHERE}")
        assert first_value(connection, "SELECT DATABASE()") == ELSEWHERE
    finally:
        connection.close()


def connector_init_db(stack: Any, endpoint: str) -> None:
    connection = connector_connect(**settings(stack, endpoint))
    try:
        connection.cmd_init_db(ELSEWHERE)
        assert first_value(connection, "SELECT DATABASE()") == ELSEWHERE
    finally:
        connection.close()


def mariadb_cli_use(stack: Any, endpoint: str) -> None:
    result = mariadb_cli(**settings(stack, endpoint), sql=f"use {ELSEWHERE}; SELECT DATABASE()")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["DATABASE()", ELSEWHERE]


MOVES: dict[str, Callable[[Any, str], None]] = {
    "pymysql-COM_INIT_DB": pymysql_init_db,
    "mysqlclient-USE": mysqlclient_use,
    "connector-cmd_init_db": connector_init_db,
    "mariadb-cli-USE": mariadb_cli_use,
}


@pytest.mark.parametrize("move", MOVES.values(), ids=MOVES.keys())
def test_the_next_client_lands_in_its_own_database_after_another_changed_schema(stack, proxy, move):
    endpoint = proxy.endpoint("read_write")
    move(stack, endpoint)
    with pymysql_connect(**settings(stack, endpoint)) as connection:
        assert first_value(connection, "SELECT DATABASE()") == HOME
        assert first_value(connection, "SELECT COUNT(*) FROM mytable") > 0


def test_the_proxy_reuses_the_backend_it_moved_back_to_the_database(stack, proxy):
    endpoint = proxy.endpoint("read_write")
    with pymysql_connect(**settings(stack, endpoint)) as first:
        backend_id = first_value(first, "SELECT CONNECTION_ID()")
        first.select_db(ELSEWHERE)
    with pymysql_connect(**settings(stack, endpoint)) as second:
        assert first_value(second, "SELECT CONNECTION_ID()") == backend_id
        assert first_value(second, "SELECT DATABASE()") == HOME


def test_a_client_without_a_database_lands_in_none_after_another_chose_one(stack, proxy):
    endpoint = proxy.endpoint("read_write")
    for _ in range(2):
        with pymysql_connect(**settings(stack, endpoint, database=None)) as connection:
            assert first_value(connection, "SELECT DATABASE()") is None
            connection.select_db(HOME)


def test_a_client_lands_in_its_database_after_another_dropped_the_one_it_was_in(stack, proxy):
    scratch = f"scratch_fidelity{TENANT}"
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {scratch}")
        cursor.execute(f"GRANT ALL PRIVILEGES ON {scratch}.* TO 'user{TENANT}'@'%'")
    endpoint = proxy.endpoint("read_write")
    try:
        with pymysql_connect(**settings(stack, endpoint)) as first:
            first.select_db(scratch)
            with first.cursor() as cursor:
                cursor.execute(f"DROP DATABASE {scratch}")
            assert first_value(first, "SELECT DATABASE()") is None
        with pymysql_connect(**settings(stack, endpoint)) as second:
            assert first_value(second, "SELECT DATABASE()") == HOME
    finally:
        with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {scratch}")
            cursor.execute(f"REVOKE ALL PRIVILEGES ON {scratch}.* FROM 'user{TENANT}'@'%'")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_clear_text_login_to_a_password_tenant_is_switched_as_mariadb_does(stack, tls):
    # MariaDB answers a client that starts with mysql_clear_password for an account whose
    # plugin is mysql_native_password with an AuthSwitchRequest; the login then succeeds.
    config = proxy_config_from_stack(stack.outputs, require_tls=False)
    with ProxyThread(config) as plain_proxy:
        outputs = []
        for endpoint in (stack.proxy_writer, plain_proxy.endpoint("read_write")):
            login = settings(stack, endpoint) | ({} if tls else {"ca_file": None})
            result = mariadb_cli(
                **login,
                sql="SELECT CURRENT_USER(), DATABASE()",
                options=("--default-auth=mysql_clear_password",),
            )
            assert result.returncode == 0, result.stderr
            outputs.append(result.stdout)
    assert outputs[0] == outputs[1] == f"CURRENT_USER()\tDATABASE()\nuser{TENANT}@%\t{HOME}\n"


@pytest.fixture(params=["direct", "proxy"])
def endpoint(request: Any, stack: Any, proxy: ProxyThread) -> str:
    """Straight to the writer and through the proxy: both must behave alike."""
    return stack.proxy_writer if request.param == "direct" else proxy.endpoint("read_write")


LOCK = "fidelity_change_user_lock"


def lock_is_free(stack: Any) -> bool:
    with stack.admin_connect(stack.proxy_writer) as admin:
        return first_value(admin, f"SELECT IS_FREE_LOCK('{LOCK}')") == 1


@pytest.mark.parametrize(
    ("username", "password", "database", "errno"),
    [
        ("user8", "wrong", "user_database8", 1045),
        ("nobody", "wrong", None, 1045),
        (f"user{TENANT}", None, "user_database8", 1044),  # another tenant's database
    ],
    ids=["wrong-password", "unknown-user", "forbidden-database"],
)
def test_a_failed_change_user_keeps_the_user_and_database_and_resets_the_session(
    stack, endpoint, username, password, database, errno
):
    import mysql.connector

    connection = connector_connect(**settings(stack, endpoint))
    try:
        cursor = connection.cursor()
        cursor.execute(f"SELECT GET_LOCK('{LOCK}', 0)")
        assert cursor.fetchone() == (1,)
        cursor.execute("SET @kept = 'before'")
        cursor.close()
        assert not lock_is_free(stack)
        with pytest.raises(mysql.connector.Error) as caught:
            connection.cmd_change_user(
                username=username,
                password=stack.secret(f"user{TENANT}").password if password is None else password,
                database=database,
            )
        assert caught.value.errno == errno
        assert lock_is_free(stack)  # gone before the answer came, as MariaDB does it
        cursor = connection.cursor()
        cursor.execute("SELECT CURRENT_USER(), DATABASE(), @kept")
        assert cursor.fetchone() == (f"user{TENANT}@%", HOME, None)
        cursor.close()
    finally:
        connection.close()


def test_a_change_user_frees_the_old_users_locks_before_it_answers(stack, endpoint):
    connection = connector_connect(**settings(stack, endpoint))
    try:
        cursor = connection.cursor()
        cursor.execute(f"SELECT GET_LOCK('{LOCK}', 0)")
        assert cursor.fetchone() == (1,)
        cursor.close()
        connection.cmd_change_user(
            username="user8", password=stack.secret("user8").password, database="user_database8"
        )
        assert lock_is_free(stack)
        cursor = connection.cursor()
        cursor.execute("SELECT CURRENT_USER(), DATABASE()")
        assert cursor.fetchone() == ("user8@%", "user_database8")
        cursor.close()
    finally:
        connection.close()


def test_a_change_user_to_the_same_user_lands_in_the_named_database(stack, endpoint):
    connection = connector_connect(**settings(stack, endpoint))
    try:
        connection.cmd_init_db(ELSEWHERE)
        connection.cmd_change_user(
            username=f"user{TENANT}", password=stack.secret(f"user{TENANT}").password, database=HOME
        )
        assert first_value(connection, "SELECT DATABASE()") == HOME
    finally:
        connection.close()
