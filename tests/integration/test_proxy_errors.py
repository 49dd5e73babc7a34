"""MySQL-faithful errors from the proxy, and bad clients that never disturb good ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.integration.bystander import undisturbed_client
from tests.integration.clients import ca_path, host_port, mariadb_cli, pymysql_connect

pytestmark = pytest.mark.integration


@pytest.fixture
def bystander(stack: Any) -> Iterator[Any]:
    """A good client, connected before the bad one and checked after it."""
    with undisturbed_client(
        stack.outputs["ProxyReaderEndpoint"], stack, ca_path(stack.outputs)
    ) as connection:
        yield connection


def reader(stack: Any, user: str = "user7", **overrides: Any) -> dict[str, Any]:
    settings = {
        "endpoint": stack.outputs["ProxyReaderEndpoint"],
        "user": user,
        "password": stack.secret(user).password,
        "database": f"user_database{user.removeprefix('user')}",
        "ca_file": ca_path(stack.outputs),
    }
    return settings | overrides


def test_another_tenants_database_gives_error_1044_in_mysql_wording(stack, bystander):
    result = mariadb_cli(**reader(stack, database="user_database8"), sql="SELECT 1")
    assert result.returncode != 0
    assert (
        "ERROR 1044 (42000): Access denied for user 'user7'@'%' to database 'user_database8'"
        in result.stderr
    )
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql_connect(**reader(stack, database="user_database8"))
    assert caught.value.args == (
        1044,
        "Access denied for user 'user7'@'%' to database 'user_database8'",
    )


def test_a_wrong_password_gives_error_1045(stack, bystander):
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql_connect(**reader(stack, password="not-the-password"))
    code, message = caught.value.args
    assert code == 1045
    assert message.startswith("Access denied for user 'user7'@'127.0.0.1' (using password: YES)")
    result = mariadb_cli(**reader(stack, password="wrong"), sql="SELECT 1")
    assert "ERROR 1045 (28000): Access denied for user 'user7'@" in result.stderr


def test_an_unknown_tenant_gets_the_same_error_1045(stack, bystander):
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql_connect(**reader(stack, user="user7", password="x") | {"user": "nosuchuser"})
    assert caught.value.args[0] == 1045
    assert "'nosuchuser'@" in caught.value.args[1]


def test_a_client_without_tls_gets_error_3159_when_tls_is_required(stack, bystander):
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql_connect(**reader(stack, ca_file=None))
    assert caught.value.args == (
        3159,
        "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
    )


def test_the_proxy_answers_a_login_with_the_tenants_password_after_errors(stack, bystander):
    with pymysql_connect(**reader(stack)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT DATABASE(), CURRENT_USER()")
        assert cursor.fetchone() == ("user_database7", "user7@%")


def test_the_endpoints_still_serve_new_clients_after_bad_ones(stack):
    host, port = host_port(stack.outputs["ProxyEndpoint"])
    settings = reader(stack, endpoint=f"{host}:{port}")
    with pymysql_connect(**settings) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mytable")
        assert cursor.fetchone()[0] > 0
