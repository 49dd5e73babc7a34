"""A client's own ``wait_timeout`` in transaction mode (found by PyMySQL's own suite,
``test_connection.TestConnection.test_connection_gone_away``).

MariaDB closes a connection that stays idle past its session's ``wait_timeout``. Through the
proxy in transaction mode the client's session holds no backend while idle: the proxy carries
the value to each backend that runs the client's statements (so ``SELECT @@wait_timeout``
answers right), where it would end idle pooled backends, not the client, whose session would end
only at the proxy's ``idle_client_timeout_s``. So the proxy ends an idle session itself once it
has been idle past the wait_timeout the client's session has (as ProxySQL does), as MariaDB
would: closed without a word.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.integration.clients import ca_path, pymysql_connect
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

TENANT = 106
WAIT_TIMEOUT_S = 1
BOUND_S = 10.0  # far past WAIT_TIMEOUT_S: MariaDB has closed by then


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config_from_stack(stack.outputs, pool_mode="transaction")) as running:
        yield running


def connect(stack: Any, endpoint: str) -> pymysql.Connection[Any]:
    return pymysql_connect(
        endpoint=endpoint,
        user=f"user{TENANT}",
        password=stack.secret(f"user{TENANT}").password,
        database=f"user_database{TENANT}",
        ca_file=ca_path(stack.outputs),
        autocommit=True,
    )


def is_closed_by_the_server_while_idle(connection: pymysql.Connection[Any]) -> bool:
    """Sets the session's wait_timeout, then waits (bounded) for the server to close."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET SESSION wait_timeout = {WAIT_TIMEOUT_S}")
    sock = connection._sock
    assert sock is not None
    readable, _, _ = select.select([sock], [], [], BOUND_S)
    return bool(readable) and sock.recv(1, 0) == b""  # readable with nothing: closed


def test_mariadb_itself_closes_a_connection_idle_past_its_wait_timeout(stack):
    connection = connect(stack, stack.proxy_writer)
    try:
        assert is_closed_by_the_server_while_idle(connection)
    finally:
        connection.close()


def test_a_client_idle_past_its_wait_timeout_is_closed_in_transaction_mode(stack, proxy):
    connection = connect(stack, proxy.endpoint("read_write"))
    try:
        assert is_closed_by_the_server_while_idle(connection)
    finally:
        connection.close()
