"""Issue 7's driver acceptance for bulk inserts with RETURNING, JSON column metadata and 2 MB
compressed results: PyMySQL, mysqlclient, mysql-connector-python and the `mariadb` CLI (plain,
--ssl, --compress) get through the proxy what they get straight from MariaDB.

Connector/C's own bulk execute and extended metadata are in test_mariadb_capabilities.py; the
CLI's and mysqlclient's compressed 2 MB in test_compression.py. PyMySQL cannot compress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.clients import (
    ca_path,
    connector_connect,
    mariadb_cli,
    mysqlclient_connect,
    pymysql_connect,
)
from tests.integration.feature_tables import proxy_over_feature_tables
from tests.integration.proxy_thread import ProxyThread

pytestmark = pytest.mark.integration

TENANT = "user79"
DATABASE = "user_database79"
INSERT_RETURNING = "INSERT INTO bulk_rows (v) VALUES ('a'), ('bb'), ('ccc') RETURNING id, v"
JSON_SELECT = "SELECT id, doc, place FROM json_doc ORDER BY id"
# The CLI prints a POINT's bytes as they are: its type from a result without rows.
CLI_JSON_SELECT = (
    "SELECT id, doc, ST_AsText(place) AS place_text FROM json_doc ORDER BY id; "
    "SELECT place FROM json_doc LIMIT 0"
)
BIG_RESULT_SQL = "SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) AS letters FROM seq_1_to_2000"
DRIVERS: dict[str, Callable[..., Any]] = {
    "PyMySQL": pymysql_connect,
    "mysqlclient": mysqlclient_connect,
    "mysql-connector-python": connector_connect,
}


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    with proxy_over_feature_tables(stack, TENANT, DATABASE) as running:
        yield running


def endpoints(stack: Any, proxy: ProxyThread) -> dict[str, str]:
    return {"direct": stack.proxy_writer, "proxy": proxy.endpoint("read_write")}


def login(stack: Any, endpoint: str, *, tls: bool = True) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "user": TENANT,
        "password": stack.secret(TENANT).password,
        "database": DATABASE,
        "ca_file": ca_path(stack.outputs) if tls else None,
    }


def fetch(connect: Callable[..., Any], settings: dict[str, Any], sql: str) -> tuple[Any, Any]:
    """(cursor.description, rows) of one statement, committed."""
    connection = connect(**settings)
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        description, rows = cursor.description, [tuple(row) for row in cursor.fetchall()]
        connection.commit()
        return description, rows
    finally:
        connection.close()


def relative_ids(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """RETURNING rows with their ids counted from the first (each run inserts new rows)."""
    return [(row[0] - rows[0][0], *row[1:]) for row in rows]


@pytest.mark.parametrize("driver", DRIVERS)
def test_insert_returning_answers_as_directly(stack, proxy, driver):
    answers = {}
    for name, endpoint in endpoints(stack, proxy).items():
        description, rows = fetch(DRIVERS[driver], login(stack, endpoint), INSERT_RETURNING)
        # Without display_size: mysqlclient counts the digits of this run's ids there.
        columns = [(column[0], column[1], *column[3:]) for column in description]
        answers[name] = (columns, relative_ids(rows))
    assert answers["proxy"] == answers["direct"]
    assert [row[1] for row in answers["proxy"][1]] == ["a", "bb", "ccc"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_json_and_point_columns_have_the_same_metadata_and_values(stack, proxy, driver):
    answers = {
        name: fetch(DRIVERS[driver], login(stack, endpoint), JSON_SELECT)
        for name, endpoint in endpoints(stack, proxy).items()
    }
    assert answers["proxy"] == answers["direct"]
    assert len(answers["proxy"][1]) == 2


def test_mysql_connector_compressed_2_mb_reads_the_same_rows(stack, proxy):
    answers = {
        name: fetch(connector_connect, {**login(stack, endpoint), "compress": True}, BIG_RESULT_SQL)
        for name, endpoint in endpoints(stack, proxy).items()
    }
    assert answers["proxy"] == answers["direct"]
    assert len(answers["proxy"][1]) == 2000


CLI_MODES = {
    "plain": {"tls": False, "options": ()},
    "ssl": {"tls": True, "options": ()},
    "compress": {"tls": True, "options": ("--compress",)},
}


def cli_output(stack: Any, endpoint: str, mode: str, sql: str, *extra: str) -> str:
    settings = CLI_MODES[mode]
    result = mariadb_cli(
        **login(stack, endpoint, tls=bool(settings["tls"])),
        sql=sql,
        options=(*settings["options"], *extra),  # type: ignore[misc]
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("mode", CLI_MODES)
def test_mariadb_cli_shows_json_and_point_column_types_as_directly(stack, proxy, mode):
    outputs = {
        name: cli_output(stack, endpoint, mode, CLI_JSON_SELECT, "--table", "--column-type-info")
        for name, endpoint in endpoints(stack, proxy).items()
    }
    assert outputs["proxy"] == outputs["direct"]
    # MariaDB's extended metadata, which the CLI asks for.
    assert "Type:       BLOB (format=json)" in outputs["proxy"]
    assert "Type:       GEOMETRY (type=point)" in outputs["proxy"]


@pytest.mark.parametrize("mode", CLI_MODES)
def test_mariadb_cli_insert_returning_answers_as_directly(stack, proxy, mode):
    answers = {}
    for name, endpoint in endpoints(stack, proxy).items():
        header, *lines = cli_output(stack, endpoint, mode, INSERT_RETURNING).splitlines()
        rows = [tuple(line.split("\t")) for line in lines]
        answers[name] = (header, relative_ids([(int(id_), v) for id_, v in rows]))
    assert answers["proxy"] == answers["direct"]
    assert answers["proxy"] == ("id\tv", [(0, "a"), (1, "bb"), (2, "ccc")])


@pytest.mark.parametrize("mode", CLI_MODES)
def test_mariadb_cli_fetches_2_mb_as_directly(stack, proxy, mode):
    outputs = {
        name: cli_output(stack, endpoint, mode, BIG_RESULT_SQL)
        for name, endpoint in endpoints(stack, proxy).items()
    }
    assert outputs["proxy"] == outputs["direct"]
    assert len(outputs["proxy"]) > 2000 * 1000
