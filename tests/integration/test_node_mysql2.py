"""node mysql2 reads JSON and POINT columns through the proxy as it does straight from MariaDB:
the same column metadata and values, by text query and by prepared statement.

mysql2 asks for MariaDB's extended metadata and parses a column whose format is "json" (MariaDB's
JSON is a LONGTEXT on the wire); without it, it would hand out the text. scripts/setup.sh
installs mysql2 from tests/integration/node_client/package-lock.json.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clients import host_port
from tests.integration.feature_tables import proxy_over_feature_tables
from tests.integration.proxy_thread import ProxyThread

pytestmark = pytest.mark.integration

TENANT = "user80"
DATABASE = "user_database80"
SCRIPT = Path(__file__).parent / "node_client" / "json_metadata.js"


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    with proxy_over_feature_tables(stack, TENANT, DATABASE) as running:
        yield running


def json_metadata(stack: Any, endpoint: str) -> dict[str, Any]:
    host, port = host_port(endpoint)
    env = {**os.environ, "MYSQL_PWD": stack.secret(TENANT).password}
    result = subprocess.run(
        ["node", str(SCRIPT), host, str(port), TENANT, DATABASE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{endpoint}: {result.stdout}{result.stderr}"
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_mysql2_gets_the_json_and_point_columns_as_directly(stack, proxy):
    direct = json_metadata(stack, stack.proxy_writer)
    proxied = json_metadata(stack, proxy.endpoint("read_write"))
    assert proxied == direct
    for protocol in ("text", "binary"):
        fields = {field["name"]: field for field in proxied[protocol]["fields"]}
        assert fields["doc"]["columnType"] == 252 and fields["doc"]["extendedFormat"] == "json"
        assert fields["place"]["extendedTypeName"] == "point"
        rows = proxied[protocol]["rows"]
        assert [row["doc"] for row in rows] == [{"a": 1}, [1, 2]]  # parsed, as JSON
        assert [row["place_text"] for row in rows] == ["POINT(1 2)", "POINT(3 4)"]
