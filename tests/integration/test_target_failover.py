"""A target that dies: keepalive on backend sockets, and no new logins sent to a dead replica.

The stack here is this module's own (a writer and two replicas, the proxy as its own process),
so that killing a replica leaves the session's stack, which other tests share, untouched.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tenantproxy.proxy import tls
from tenantproxy.proxy.backends import BackendCredentials, BackendProfile, Target
from tenantproxy.proxy.connector import open_backend
from tenantproxy.stack import StackSettings, down, up
from tenantproxy.stack.outputs import read_admin_credentials
from tenantproxy.wire.mysql.constants import UTF8MB4_GENERAL_CI, CapabilityFlags
from tests.integration.clients import host_port
from tests.integration.conftest import quiet_console

pytestmark = pytest.mark.integration

TENANTS = 10


@pytest.fixture(scope="module")
def failover_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = StackSettings(
        tenants=TENANTS,
        rows=5,
        iam_auth="disabled",
        replicas=2,
        load_test=False,
        state_dir=tmp_path_factory.mktemp("failover") / "state",
    )
    console = quiet_console()
    try:
        yield up(settings, console).outputs
    finally:
        down(settings.state_dir, console, settings.stop_timeout_s)


def instance(outputs: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in outputs["ProxyClusterInstances"] if i["name"] == name)


def test_backend_sockets_send_tcp_keepalive_probes_after_30_s_idle(failover_stack):
    outputs = failover_stack
    admin = read_admin_credentials(Path(outputs["AdminCredentials"]))
    host, port = host_port(instance(outputs, "proxy-replica1")["endpoint"])

    async def keepalive_options() -> tuple[int, ...]:
        backend = await open_backend(
            Target("proxy-replica1", "replica", host, port),
            BackendCredentials(admin.user, admin.password),
            BackendProfile(CapabilityFlags(0), UTF8MB4_GENERAL_CI),
            tls_context=tls.client_context(Path(outputs["CACertificate"])),
            max_packet_bytes=1024 * 1024,
        )
        try:
            assert backend.transport is not None
            sock = backend.transport.get_extra_info("socket")
            return (
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            )
        finally:
            backend.close()

    assert uvloop.run(keepalive_options()) == (1, 30, 10, 3)
