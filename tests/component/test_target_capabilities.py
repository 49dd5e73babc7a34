"""A target whose handshake lacks MariaDB's extended capabilities (a MySQL server, or an older
MariaDB) in a cluster: the proxy offers clients only what every target has, and a backend that
could not negotiate what its client did is refused rather than relayed.

The target is our own sans-IO ServerConnection on a loopback socket; it accepts any login.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tenantproxy.errors import BackendError
from tenantproxy.pool import TargetBudget
from tenantproxy.proxy.backends import (
    MARIADB_RELAYED_CAPABILITIES,
    BackendCredentials,
    BackendProfile,
    Target,
)
from tenantproxy.proxy.connector import open_backend
from tenantproxy.proxy.routing import Router, TargetState
from tenantproxy.wire.mysql.constants import UTF8MB4_GENERAL_CI
from tenantproxy.wire.mysql.constants import CapabilityFlags as F
from tenantproxy.wire.mysql.events import LoginRequested
from tenantproxy.wire.mysql.server_connection import ServerConnection

STANDARD = (
    F.CLIENT_PROTOCOL_41
    | F.CLIENT_SECURE_CONNECTION
    | F.CLIENT_PLUGIN_AUTH
    | F.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | F.CLIENT_CONNECT_WITH_DB
    | F.CLIENT_TRANSACTIONS
    | F.CLIENT_DEPRECATE_EOF
)
CREDENTIALS = BackendCredentials("user1", "pw", "user_database1")


class FakeTarget(asyncio.Protocol):
    """Says HandshakeV10 with ``capabilities`` and lets every login in."""

    def __init__(self, capabilities: F) -> None:
        self._server = ServerConnection(
            connection_id=7,
            server_version="5.5.5-10.11.0-MariaDB-fake",
            capabilities=capabilities,
            is_tls_offered=False,
        )
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._server.initial_handshake())

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._server.receive_data(data)
        if isinstance(self._server.next_event(), LoginRequested):
            self._transport.write(self._server.send_ok())


async def start_target(name: str, capabilities: F) -> tuple[asyncio.Server, Target]:
    server = await asyncio.get_running_loop().create_server(
        lambda: FakeTarget(capabilities), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    return server, Target(name, "writer", "127.0.0.1", port)


@pytest.fixture
async def targets() -> AsyncIterator[dict[str, Target]]:
    started = {
        "mariadb": await start_target("mariadb", STANDARD | MARIADB_RELAYED_CAPABILITIES),
        "mysql": await start_target("mysql", STANDARD | F.CLIENT_LONG_PASSWORD),
    }
    yield {name: target for name, (_, target) in started.items()}
    for server, _ in started.values():
        server.close()
        await server.wait_closed()


async def open_with(target: Target, capabilities: F):  # type: ignore[no-untyped-def]
    profile = BackendProfile(capabilities, UTF8MB4_GENERAL_CI)
    return await open_backend(target, CREDENTIALS, profile, tls_context=None, max_packet_bytes=1024)


async def test_a_mixed_cluster_shares_only_the_capabilities_every_handshake_offered(targets):
    states = []
    for target in targets.values():
        backend = await open_with(target, F(0))  # as the health check logs in
        state = TargetState(target, TargetBudget(target.name, 10))
        state.server_capabilities = backend.server_capabilities
        states.append(state)
        backend.close()
    assert states[0].server_capabilities & MARIADB_RELAYED_CAPABILITIES  # the MariaDB one
    shared = Router(states).shared_capabilities()
    assert not shared & MARIADB_RELAYED_CAPABILITIES
    assert shared & STANDARD == STANDARD


async def test_a_backend_negotiates_the_extended_capabilities_its_client_did(targets):
    asked = F.MARIADB_CLIENT_PROGRESS | F.MARIADB_CLIENT_CACHE_METADATA
    backend = await open_with(targets["mariadb"], asked)
    assert backend.negotiated_capabilities & MARIADB_RELAYED_CAPABILITIES == asked
    backend.close()


async def test_a_target_without_a_capability_the_client_negotiated_is_refused(targets):
    with pytest.raises(BackendError, match="MARIADB_CLIENT_STMT_BULK_OPERATIONS"):
        await open_with(targets["mysql"], F.MARIADB_CLIENT_STMT_BULK_OPERATIONS)
