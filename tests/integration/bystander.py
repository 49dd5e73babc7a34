"""A good client connected before a bad one, and checked after it: nothing may disturb it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.integration.clients import pymysql_connect


@contextmanager
def undisturbed_client(
    endpoint: str, stack: Any, ca_file: str | None, user: str = "user5"
) -> Iterator[Any]:
    database = user.replace("user", "user_database")
    connection = pymysql_connect(endpoint, user, stack.secret(user).password, database, ca_file)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mytable")
        count = cursor.fetchone()[0]
    yield connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mytable")
        assert cursor.fetchone()[0] == count, "the good client's session was disturbed"
    connection.close()
