"""Tables for the tests of MariaDB's features through the proxy, made as the stack's admin on the
writer (a tenant may use tables but not create them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack


def create_feature_tables(stack: Any, tenant: str, database: str) -> None:
    """bulk_rows (auto-increment id, v), json_doc (id, a JSON doc, a POINT; two rows) and
    progress_me (20,000 rows, which the tenant may ALTER)."""
    statements = [
        f"DROP TABLE IF EXISTS {database}.bulk_rows, {database}.json_doc, {database}.progress_me",
        f"CREATE TABLE {database}.bulk_rows (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))",
        f"CREATE TABLE {database}.json_doc (id INT PRIMARY KEY, doc JSON, place POINT)",
        f"INSERT INTO {database}.json_doc VALUES (1, '{{\"a\": 1}}', POINT(1, 2)), "
        "(2, '[1, 2]', POINT(3, 4))",
        f"CREATE TABLE {database}.progress_me (id INT PRIMARY KEY, v VARCHAR(100))",
        f"INSERT INTO {database}.progress_me SELECT seq, REPEAT('x', 100) "
        f"FROM {database}.seq_1_to_20000",
        f"GRANT ALTER ON {database}.progress_me TO '{tenant}'@'%'",
    ]
    connection = stack.admin_connect(stack.proxy_writer)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


@contextmanager
def proxy_over_feature_tables(stack: Any, tenant: str, database: str) -> Iterator[ProxyThread]:
    """The tenant's feature tables, and a proxy in this process that also takes plain TCP."""
    create_feature_tables(stack, tenant, database)
    with ProxyThread(proxy_config_from_stack(stack.outputs, require_tls=False)) as running:
        yield running
