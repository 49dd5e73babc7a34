"""Real drivers through the proxy's endpoints, over TLS, against the real MariaDB stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.integration.clients import (
    ca_path,
    connector_connect,
    mariadb_cli,
    mysqlclient_connect,
    pymysql_connect,
)

pytestmark = pytest.mark.integration

TENANT = "user7"
DATABASE = "user_database7"
IDS = (3, 17, 29, 41, 50)
TWENTY_MIB = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def expected_rows(stack: Any) -> list[tuple[Any, ...]]:
    """The rows as the writer has them, read with the admin account, not through the proxy."""
    connection = stack.admin_connect(stack.proxy_writer)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {DATABASE}.mytable WHERE ID IN %s ORDER BY ID", (IDS,))
            rows = [tuple(row) for row in cursor.fetchall()]
    finally:
        connection.close()
    assert len(rows) == len(IDS)
    return rows


@pytest.fixture(scope="module")
def reader(stack: Any) -> dict[str, str]:
    return {
        "endpoint": stack.outputs["ProxyReaderEndpoint"],
        "user": TENANT,
        "password": stack.secret(TENANT).password,
        "database": DATABASE,
        "ca_file": ca_path(stack.outputs),
    }


ROWS_SQL = "SELECT * FROM mytable WHERE ID IN (3, 17, 29, 41, 50) ORDER BY ID"


def test_pymysql_reads_the_tenants_rows_through_the_reader_over_tls(reader, expected_rows):
    with pymysql_connect(**reader) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        cursor.execute(ROWS_SQL)
        assert [tuple(row) for row in cursor.fetchall()] == expected_rows


def test_mysqlclient_reads_the_tenants_rows_through_the_reader_over_tls(reader, expected_rows):
    connection = mysqlclient_connect(**reader)
    try:
        cursor = connection.cursor()
        cursor.execute(ROWS_SQL)
        assert [tuple(row) for row in cursor.fetchall()] == expected_rows
    finally:
        connection.close()


def test_mysql_connector_reads_rows_with_a_server_side_prepared_statement(reader, expected_rows):
    connection = connector_connect(**reader)
    try:
        cursor = connection.cursor(prepared=True)
        cursor.execute("SELECT * FROM mytable WHERE ID IN (?, ?, ?, ?, ?) ORDER BY ID", IDS)
        assert [tuple(row) for row in cursor.fetchall()] == expected_rows
        # The same statement again with other parameters: the statement id stays valid.
        cursor.execute("SELECT * FROM mytable WHERE ID IN (?, ?, ?, ?, ?) ORDER BY ID", IDS)
        assert len(cursor.fetchall()) == len(IDS)
        cursor.close()
    finally:
        connection.close()


def test_mariadb_cli_reads_the_tenants_rows_through_the_reader_over_tls(reader, expected_rows):
    result = mariadb_cli(**reader, sql=ROWS_SQL)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    columns = ["ID", "Column_A", "Column_B", "Column_C", "Column_D", "Column_E"]
    assert lines[0].split("\t") == columns
    got = [tuple(line.split("\t")) for line in lines[1:]]
    assert got == [tuple(str(value) for value in row) for row in expected_rows]


def test_multi_statement_queries_return_every_result(reader, expected_rows):
    flags = pymysql.constants.CLIENT.MULTI_STATEMENTS
    with pymysql_connect(**reader, client_flag=flags) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM mytable; {ROWS_SQL}; SELECT 'last'")
        assert cursor.fetchall()[0][0] >= len(IDS)
        assert cursor.nextset()
        assert [tuple(row) for row in cursor.fetchall()] == expected_rows
        assert cursor.nextset()
        assert cursor.fetchall() == (("last",),)
        assert not cursor.nextset()


def test_mysqlclient_multi_statements_through_the_proxy(reader, expected_rows):
    from MySQLdb.constants import CLIENT

    connection = mysqlclient_connect(**reader, client_flag=CLIENT.MULTI_STATEMENTS)
    try:
        cursor = connection.cursor()
        cursor.execute(f"{ROWS_SQL}; SELECT 42")
        assert [tuple(row) for row in cursor.fetchall()] == expected_rows
        assert cursor.nextset()
        assert cursor.fetchall() == ((42,),)
    finally:
        connection.close()


def test_a_20_mib_parameter_crosses_the_proxy_intact(reader):
    value = "x" * (TWENTY_MIB - 7) + "tail123"
    with pymysql_connect(**reader) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT LENGTH(%s), RIGHT(%s, 7)", (value, value))
        assert cursor.fetchone() == (TWENTY_MIB, "tail123")


def test_a_20_mib_result_value_crosses_the_proxy_intact(reader):
    with pymysql_connect(**reader) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT REPEAT('x', 20971520), 'after'")
        value, after = cursor.fetchone()
        assert len(value) == TWENTY_MIB and value == "x" * TWENTY_MIB
        assert after == "after"


def test_load_data_local_infile_works_through_the_writer_endpoint(stack, tmp_path: Path):
    tenant = "user9"  # a tenant no other test compares across clusters
    rows = [(f"a{i}", f"b{i}", f"c{i}", f"d{i}", f"e{i}") for i in range(500)]
    data_file = tmp_path / "rows.csv"
    data_file.write_text("".join(",".join(row) + "\n" for row in rows))
    settings = {
        "endpoint": stack.outputs["ProxyEndpoint"],
        "user": tenant,
        "password": stack.secret(tenant).password,
        "database": "user_database9",
        "ca_file": ca_path(stack.outputs),
    }
    with pymysql_connect(**settings, local_infile=True) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM mytable WHERE Column_A LIKE 'a%%'")
            before = cursor.fetchone()[0]
            cursor.execute(
                f"LOAD DATA LOCAL INFILE '{data_file}' INTO TABLE mytable "
                "FIELDS TERMINATED BY ',' (Column_A, Column_B, Column_C, Column_D, Column_E)"
            )
            assert cursor.rowcount == len(rows)
        connection.commit()
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM mytable WHERE Column_A LIKE 'a%%'")
            assert cursor.fetchone()[0] == before + len(rows)
