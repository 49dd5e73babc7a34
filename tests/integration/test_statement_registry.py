"""The prepared-statement registry's assumptions against a real MariaDB: a statement prepared on
one connection runs on another through a pipelined COM_STMT_PREPARE + COM_STMT_EXECUTE with
statement id -1 and the parameter types spliced in (the client sent them on its first execute
only), with the same answer; an unknown id is ERROR 1243 with the text the registry gives.
Straight to the stack's writer with our own sans-IO client (bytes as sent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantproxy.proxy.statements import BackendStatements, ClientStatements, UnknownStatement
from tenantproxy.stack.outputs import read_admin_credentials
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.response_tracker import ResponseTracker
from tenantproxy.wire.mysql.responses import ErrPacket
from tests.integration.raw_client import RawClient

pytestmark = pytest.mark.integration

SQL = b"SELECT ? + 1, CONCAT(?, 'y')"
TYPES = b"\x08\x00\xfd\x00"  # MYSQL_TYPE_LONGLONG, MYSQL_TYPE_VAR_STRING


class Connection:
    def __init__(self, stack: Any) -> None:
        admin = read_admin_credentials(Path(stack.outputs["AdminCredentials"]))
        self.client = RawClient(stack.proxy_writer, stack.outputs["CACertificate"])
        self.capabilities = self.client.log_in(admin.user, admin.password, None).capability_flags

    def send(self, *payloads: bytes) -> list[bytes]:
        """Sends the commands at once (pipelined); the payloads of all their answers."""
        tracker = ResponseTracker(self.capabilities)
        data = b""
        for payload in payloads:
            if tracker.command_sent(payload[:16]):
                data += encode_packet(payload, 0)[0]
        self.client.send(data)
        received = b""
        while tracker.pending_responses:
            chunk = self.client.sock.recv(65536)
            assert chunk, "closed before the answers ended"
            received += chunk
            tracker.server_data(chunk)
        return split(received)


def split(stream: bytes) -> list[bytes]:
    payloads, at = [], 0
    while at < len(stream):
        length = int.from_bytes(stream[at : at + 3], "little")
        payloads.append(stream[at + 4 : at + 4 + length])
        at += 4 + length
    return payloads


@pytest.fixture()
def two(stack: Any) -> Iterator[tuple[Connection, Connection]]:
    first, second = Connection(stack), Connection(stack)
    try:
        yield first, second
    finally:
        first.client.close()
        second.client.close()


def execute(statement_id: int, types: bytes | None, number: int, text: bytes) -> bytes:
    head = b"\x17" + statement_id.to_bytes(4, "little") + b"\x00" + (1).to_bytes(4, "little")
    values = number.to_bytes(8, "little") + bytes((len(text),)) + text
    return head + b"\x00" + (b"\x01" + types if types else b"\x00") + values


def test_a_statement_moves_to_another_backend_with_its_types(two):
    first, second = two
    client = ClientStatements()
    backends = BackendStatements(4), BackendStatements(4)
    client_id = client.prepare_sent(None, b"\x16" + SQL)
    answers = first.send(b"\x16" + SQL)
    assert client.prepared(answers[0], backends[0]) == [] and client_id == 1

    on_first = [client.route(execute(client_id, TYPES, 41, b"x"), backends[0])]
    on_first.append(client.route(execute(client_id, None, 99, b"z"), backends[0]))
    assert [r.prepare for r in on_first] == [None, None]
    expected = [first.send(r.payload) for r in on_first if r.payload]

    # The client, moved, executes without types (it sent them once): prepared lazily here.
    moved = client.route(execute(client_id, None, 41, b"x"), backends[1])
    assert moved.prepare == b"\x16" + SQL and moved.payload is not None
    answers = second.send(moved.prepare, moved.payload)
    assert answers[0][0] == 0  # PREPARE_OK, swallowed by the relay
    backends[1].add(moved.key, int.from_bytes(answers[0][1:5], "little"), moved.types)
    assert answers[-len(expected[0]) :] == expected[0]
    again = client.route(execute(client_id, None, 99, b"z"), backends[1])
    assert again.prepare is None and again.payload is not None
    assert second.send(again.payload) == expected[1]


def test_an_unknown_statement_is_the_error_mariadb_gives(two):
    first, _ = two
    (answer,) = first.send(execute(777, TYPES, 1, b"x"))
    error = ErrPacket.decode(answer)
    with pytest.raises(UnknownStatement) as raised:
        ClientStatements().route(execute(777, TYPES, 1, b"x"), BackendStatements(1))
    assert (error.error_code, error.sql_state, error.error_message) == (
        raised.value.code,
        raised.value.sql_state,
        str(raised.value),
    )
