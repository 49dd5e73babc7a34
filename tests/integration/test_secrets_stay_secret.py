"""Passwords never reach the proxy's log, its errors, or the stack's outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tenantproxy.stack.outputs import read_admin_credentials
from tests.integration.clients import ca_path, pymysql_connect

pytestmark = pytest.mark.integration


def test_no_password_appears_in_the_proxy_log_or_the_outputs(stack: Any) -> None:
    reader = stack.outputs["ProxyReaderEndpoint"]
    ca_file = ca_path(stack.outputs)
    passwords = [stack.secret(f"user{i}").password for i in range(stack.settings.tenants)]
    for i in range(3):  # good logins, wrong passwords, an unknown user
        password = stack.secret(f"user{i}").password
        pymysql_connect(reader, f"user{i}", password, f"user_database{i}", ca_file).close()
        for user in (f"user{i}", "nosuchuser"):
            with pytest.raises(pymysql.err.OperationalError) as caught:
                pymysql_connect(reader, user, passwords[i + 1], f"user_database{i}", ca_file)
            assert passwords[i + 1] not in str(caught.value)
    admin = read_admin_credentials(Path(stack.outputs["AdminCredentials"]))
    secrets = [*passwords, admin.password]
    proxy_log = (Path(stack.outputs["StateDir"]) / "proxy.log").read_text()
    outputs = json.dumps(stack.outputs)
    assert "login refused" in proxy_log  # the log does speak of the refusals
    assert [s for s in secrets if s in proxy_log] == []
    assert [s for s in secrets if s in outputs] == []
