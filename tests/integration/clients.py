"""Connecting to the stack's endpoints with each real driver, over TLS against the stack's CA."""

from __future__ import annotations

import os
import ssl
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import mysql.connector
import MySQLdb
import pymysql

BIG_PACKET_BYTES = 64 * 1024 * 1024


def host_port(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.rsplit(":", 1)
    return host, int(port)


@cache
def tls_context(ca_file: str) -> ssl.SSLContext:
    # Built once: PyMySQL would otherwise build a fresh default context per connect.
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False
    return context


def pymysql_connect(
    endpoint: str, user: str, password: str, database: str | None, ca_file: str | None, **extra: Any
) -> pymysql.Connection[Any]:
    host, port = host_port(endpoint)
    return pymysql.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        # PyMySQL 1.2 uses TLS whenever the server offers it, unless told not to.
        ssl=tls_context(ca_file) if ca_file else None,
        ssl_disabled=ca_file is None,
        max_allowed_packet=BIG_PACKET_BYTES,
        connect_timeout=10,
        **extra,
    )


def mysqlclient_connect(
    endpoint: str, user: str, password: str, database: str, ca_file: str, **extra: Any
) -> Any:
    host, port = host_port(endpoint)
    return MySQLdb.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        ssl={"ca": ca_file},
        connect_timeout=10,
        **extra,
    )


def connector_connect(
    endpoint: str, user: str, password: str, database: str, ca_file: str, **extra: Any
) -> Any:
    host, port = host_port(endpoint)
    return mysql.connector.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        ssl_ca=ca_file,
        ssl_verify_cert=True,
        ssl_verify_identity=False,
        use_pure=True,
        connection_timeout=10,
        **extra,
    )


def mariadb_cli(
    endpoint: str,
    user: str,
    password: str,
    database: str,
    ca_file: str | None,
    sql: str,
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Runs the `mariadb` command-line client in batch mode (tab-separated output); over TLS
    unless ``ca_file`` is None."""
    host, port = host_port(endpoint)
    command = [
        "mariadb",
        "--no-defaults",
        f"--host={host}",
        f"--port={port}",
        f"--user={user}",
        *(("--ssl", f"--ssl-ca={ca_file}") if ca_file else ("--skip-ssl",)),
        *options,
        "--batch",
        f"--database={database}",
        f"--execute={sql}",
    ]
    # The password goes through the environment, not argv (which `ps` shows).
    env = {**os.environ, "MYSQL_PWD": password}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def first_value(connection: Any, sql: str) -> Any:
    """The first column of the first row of a query's answer (None without a row), with any
    DB-API driver's connection."""
    cursor = connection.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
        return None if row is None else row[0]
    finally:
        cursor.close()


def ca_path(outputs: dict[str, Any]) -> str:
    return str(Path(outputs["CACertificate"]))
