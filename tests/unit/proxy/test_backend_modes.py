"""A backend's mode says who owns the server's bytes; only the transitions table moves it."""

from __future__ import annotations

import asyncio

import pytest

from tenantproxy.proxy.backends import (
    ALLOWED_MODE_CHANGES,
    BackendConnection,
    BackendMode,
    RelayHooks,
    Target,
)
from tenantproxy.wire.mysql.client_connection import ClientConnection
from tenantproxy.wire.mysql.constants import CapabilityFlags


class RecordingRelay:
    """The relay's side of RelayHooks, recording what the backend told it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.events: list[str] = []

    def hooks(self) -> RelayHooks:
        return RelayHooks(
            self.received.append,
            lambda: self.events.append("lost"),
            lambda: self.events.append("pause"),
            lambda: self.events.append("resume"),
        )


def backend() -> BackendConnection:
    """Not connected anywhere: the modes need no transport."""
    login = ClientConnection(
        username="u", password=b"", database=None, capabilities=CapabilityFlags.CLIENT_PROTOCOL_41
    )
    return BackendConnection(Target("writer", "writer", "127.0.0.1", 1), 1 << 24, login)


def logged_in() -> BackendConnection:
    connection = backend()
    connection._move_to(BackendMode.COMMANDS)  # as log_in() does once the server said OK
    return connection


def test_every_mode_is_reachable_from_connecting_and_closed_is_the_end() -> None:
    reached, frontier = {BackendMode.CONNECTING}, [BackendMode.CONNECTING]
    while frontier:
        for mode in ALLOWED_MODE_CHANGES[frontier.pop()] - reached:
            reached.add(mode)
            frontier.append(mode)
    assert reached == set(BackendMode)
    assert ALLOWED_MODE_CHANGES[BackendMode.CLOSED] == frozenset()
    assert all(
        BackendMode.CLOSED in ALLOWED_MODE_CHANGES[m]
        for m in set(BackendMode) - {BackendMode.CLOSED}
    )


def test_a_relaying_backend_gives_the_relay_its_bytes_its_buffer_and_its_loss() -> None:
    connection, relay = logged_in(), RecordingRelay()
    connection.relay_to(relay.hooks())
    assert connection.mode is BackendMode.RELAYING
    connection.data_received(b"\x01\x00\x00\x01\x00")
    connection.pause_writing()
    connection.resume_writing()
    connection.connection_lost(None)
    assert relay.received == [b"\x01\x00\x00\x01\x00"]
    assert relay.events == ["pause", "resume", "lost"]
    assert connection.mode is BackendMode.CLOSED and connection.is_broken


def test_after_the_relay_lets_go_the_proxy_owns_the_bytes_and_unasked_ones_break_it() -> None:
    connection, relay = logged_in(), RecordingRelay()
    connection.relay_to(relay.hooks())
    connection.stop_relaying()
    assert connection.mode is BackendMode.COMMANDS
    connection.pause_writing()
    connection.data_received(b"\x01\x00\x00\x01\x00")
    connection.connection_lost(None)
    assert relay.received == [] and relay.events == []
    assert connection.is_broken and connection.mode is BackendMode.CLOSED


def test_moves_outside_the_table_raise() -> None:
    connection = logged_in()
    with pytest.raises(RuntimeError, match="COMMANDS -> CONNECTING"):
        connection._move_to(BackendMode.CONNECTING)
    with pytest.raises(RuntimeError, match="CONNECTING -> RELAYING"):
        backend().relay_to(RecordingRelay().hooks())


async def test_a_backend_lost_before_the_relay_took_it_tells_the_relay_so() -> None:
    connection, relay, other = backend(), RecordingRelay(), RecordingRelay()
    connection.connection_lost(None)
    connection.relay_to(relay.hooks())
    await asyncio.sleep(0)  # the loss is told on the next turn of the loop
    assert relay.events == ["lost"] and connection.mode is BackendMode.CLOSED
    connection.stop_relaying()
    connection.relay_to(other.hooks())
    connection.stop_relaying()  # let go before the next turn: that relay is not told
    await asyncio.sleep(0)
    assert other.events == [] and connection.mode is BackendMode.CLOSED
