"""`SHOW STATUS LIKE 'Ssl_%'` through the proxy describes the proxy→backend leg, not the client's
(docs/differences.md): with `backend_tls` off it says no TLS even to a TLS client, with it on it
names the backend leg's cipher. The client's own view of its connection is the one to trust."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clients import ca_path, mariadb_cli, pymysql_connect
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

TENANT = "user78"
DATABASE = "user_database78"


@pytest.fixture(scope="module", params=[False, True], ids=["backend plain", "backend tls"])
def proxy(request: pytest.FixtureRequest, stack: Any) -> Iterator[ProxyThread]:
    overrides: dict[str, Any] = {"backend_tls": request.param}
    if request.param:
        overrides["backend_ca_file"] = Path(ca_path(stack.outputs))
    with ProxyThread(proxy_config_from_stack(stack.outputs, **overrides)) as running:
        yield running


def ssl_status_and_client_cipher(stack: Any, endpoint: str) -> tuple[dict[str, str], str]:
    connection = pymysql_connect(
        endpoint, TENANT, stack.secret(TENANT).password, DATABASE, ca_path(stack.outputs)
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW STATUS LIKE 'Ssl_%'")
            status = {name: value for name, value in cursor.fetchall()}
        # The TLS of this client's own socket: the leg it speaks on.
        client_cipher = connection._sock.cipher()[0]  # type: ignore[union-attr]
    finally:
        connection.close()
    return status, client_cipher


def test_ssl_status_through_the_proxy_describes_the_backend_leg(stack, proxy):
    status, client_cipher = ssl_status_and_client_cipher(stack, proxy.endpoint("read_write"))
    assert client_cipher  # the client leg is TLS either way
    if proxy.config.backend_tls:
        assert status["Ssl_cipher"] and status["Ssl_version"].startswith("TLS")
    else:
        # A TLS client is told "no TLS": the server speaks of the proxy's plain connection.
        assert status["Ssl_cipher"] == "" and status["Ssl_version"] == ""


def test_straight_to_mariadb_ssl_status_describes_the_client_leg(stack):
    status, client_cipher = ssl_status_and_client_cipher(stack, stack.proxy_writer)
    assert status["Ssl_cipher"] == client_cipher


def test_the_mariadb_clients_status_tells_its_own_leg_is_tls(stack, proxy):
    result = mariadb_cli(
        proxy.endpoint("read_write"),
        TENANT,
        stack.secret(TENANT).password,
        DATABASE,
        ca_path(stack.outputs),
        sql="status",
    )
    assert result.returncode == 0, result.stderr
    assert "Cipher in use is" in result.stdout
