"""A client that logs out inside a transaction that only a SELECT opened (autocommit = 0, and a
client without CLIENT_DEPRECATE_EOF, as PyMySQL: the result set ends with an EOF packet, which
carries the status flags but no session-state tracking). MariaDB ends the transaction with the
connection, so its locks go at once; the proxy must reset the backend when the client leaves,
not leave it idle in the pool with the locks held. Found by PyMySQL's own suite
(``test_cursor.CursorTest.test_cleanup_rows_*`` hung in their cleanup's DROP TABLE, waiting for
the metadata lock of a transaction whose client had gone).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.integration.clients import ca_path, pymysql_connect
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

TENANT = 105
MARK = "left-open"


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    # One backend for the tenant: the next client surely gets the one the first left.
    config = proxy_config_from_stack(
        stack.outputs, pool_mode="transaction", max_backends_per_tenant=1
    )
    with ProxyThread(config) as running:
        yield running
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute(f"DELETE FROM user_database{TENANT}.mytable WHERE Column_A = '{MARK}'")


def connect(stack: Any, proxy: ProxyThread) -> pymysql.Connection[Any]:
    """PyMySQL (which never asks for CLIENT_DEPRECATE_EOF) with autocommit off."""
    return pymysql_connect(
        endpoint=proxy.endpoint("read_write"),
        user=f"user{TENANT}",
        password=stack.secret(f"user{TENANT}").password,
        database=f"user_database{TENANT}",
        ca_file=ca_path(stack.outputs),
        autocommit=False,
    )


def test_the_row_locks_of_a_client_that_left_go_with_it(stack, proxy):
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute(f"INSERT INTO user_database{TENANT}.mytable (Column_A) VALUES ('{MARK}')")
        row_id = cursor.lastrowid
        leaving = connect(stack, proxy)
        with leaving.cursor() as locking:
            locking.execute("SELECT * FROM mytable WHERE ID = %s FOR UPDATE", (row_id,))
        leaving.close()
        # Directly this waits for nothing; a lock left behind makes it fail with ERROR 1205.
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 10")
        cursor.execute(
            f"UPDATE user_database{TENANT}.mytable SET Column_B = 'free' WHERE ID = %s",
            (row_id,),
        )
        assert cursor.rowcount == 1
