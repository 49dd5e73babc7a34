"""Past RDS Proxy's 200 secrets per proxy: a stack of 2,000 tenants, and token login as the last."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tenantproxy.identity.access import TenantAccess
from tenantproxy.stack import StackSettings, down, up
from tests.integration.clients import host_port
from tests.integration.conftest import quiet_console

pytestmark = pytest.mark.integration

TENANTS = 2000


@pytest.fixture(scope="module")
def big_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = StackSettings(
        tenants=TENANTS,
        rows=10,
        load_test=False,
        replicas=1,
        state_dir=tmp_path_factory.mktemp("many") / "state",
    )
    console = quiet_console()
    try:
        yield up(settings, console).outputs
    finally:
        down(settings.state_dir, console, settings.stop_timeout_s)


def test_token_login_as_the_2000th_tenant_reads_its_rows(big_stack):
    outputs = big_stack
    access = TenantAccess.from_outputs(outputs)
    host, port = host_port(outputs["ProxyReaderEndpoint"])
    last = f"user{TENANTS - 1}"
    token = access.token(access.assume(last), host, port, last)
    tls = ssl.create_default_context(cafile=str(Path(outputs["CACertificate"])))
    with (
        pymysql.connect(
            host=host,
            port=port,
            user=last,
            password=token,
            database=f"user_database{TENANTS - 1}",
            ssl=tls,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT COUNT(*), CURRENT_USER() FROM mytable")
        assert cursor.fetchone() == (10, f"{last}@%")
