"""Hostile clients, logged in or not: each gets a MySQL error or a close, never a traceback, and
nobody else notices (issue 8 item 1, issue 7 item 2).

A proxy in a thread over the stack's databases, TLS offered but not required, so that the tests
send exactly the bytes they mean, plain or inside TLS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tenantproxy.wire.mysql import auth_plugins
from tenantproxy.wire.mysql.constants import Command
from tenantproxy.wire.mysql.framing import encode_packet
from tests.integration.bystander import undisturbed_client
from tests.integration.clients import ca_path
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.raw_client import RawClient, errors_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    config = proxy_config_from_stack(stack.outputs, require_tls=False)
    with ProxyThread(config) as running:
        yield running


@pytest.fixture
def bystander(stack: Any, proxy: ProxyThread) -> Iterator[Any]:
    with undisturbed_client(proxy.endpoint("read_only"), stack, ca_path(stack.outputs)) as conn:
        yield conn


@pytest.fixture
def proxy_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The proxy's log lines during the test; none may carry a traceback or be an ERROR."""
    caplog.set_level(logging.INFO)
    yield caplog
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.levelname} {r.getMessage()}" for r in bad]


def a_replica(stack: Any) -> str:
    return next(
        i["endpoint"] for i in stack.outputs["ProxyClusterInstances"] if i["role"] == "replica"
    )


def logged_in(stack: Any, endpoint: str, *, tls: bool = True) -> RawClient:
    client = RawClient(endpoint, ca_path(stack.outputs) if tls else None)
    client.log_in("user7", stack.secret("user7").password, "user_database7")
    return client


def received_exactly(client: RawClient, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def answer_to(client: RawClient, payload: bytes) -> bytes:
    """The payload of the one response packet to a command."""
    client.send(encode_packet(payload, 0)[0])
    header = received_exactly(client, 4)
    return received_exactly(client, int.from_bytes(header[:3], "little"))


# COM_BINLOG_DUMP: binlog position(4), flags(2), server id(4), file name (rest).
BINLOG_DUMP = bytes([Command.COM_BINLOG_DUMP]) + b"\x04\x00\x00\x00\x00\x00\x02\x00\x00\x00bin.1"
BINLOG_DUMP_GTID = bytes([Command.COM_BINLOG_DUMP_GTID]) + BINLOG_DUMP[1:]
REGISTER_SLAVE = bytes([Command.COM_REGISTER_SLAVE]) + b"\x02\x00\x00\x00" + b"\x00" * 10


@pytest.mark.parametrize(
    "command",
    [BINLOG_DUMP, BINLOG_DUMP_GTID, REGISTER_SLAVE],
    ids=["dump", "dump_gtid", "register"],
)
def test_replication_commands_get_mariadbs_error_and_the_session_goes_on(
    stack, proxy, bystander, proxy_log, command
):
    direct = logged_in(stack, a_replica(stack), tls=False)
    expected = errors_in(encode_packet(answer_to(direct, command), 1)[0])
    direct.close()
    client = logged_in(stack, proxy.endpoint("read_only"))
    answer = answer_to(client, command)
    assert errors_in(encode_packet(answer, 1)[0]) == expected
    assert expected and expected[0].error_code in (1227, 1047, 1045)
    # The session goes on, as MariaDB's does.
    assert answer_to(client, b"\x0e")[:1] == b"\x00"  # COM_PING answers OK
    client.close()


def change_user(client: RawClient, stack: Any, character_set: int) -> bytes:
    """COM_CHANGE_USER to the same tenant, with a right scramble and the given character set."""
    password = stack.secret("user7").password.encode()
    scramble = auth_plugins.native_password_scramble(password, client.nonce[:20])
    payload = (
        bytes([Command.COM_CHANGE_USER])
        + b"user7\x00"
        + bytes([len(scramble)])
        + scramble
        + b"user_database7\x00"
        + character_set.to_bytes(2, "little")
        + b"mysql_native_password\x00"
    )
    return answer_to(client, payload)


def test_change_user_with_a_character_set_past_255_gets_error_1835_and_a_close(
    stack, proxy, bystander, proxy_log
):
    client = logged_in(stack, proxy.endpoint("read_only"))
    assert change_user(client, stack, character_set=45)[:1] == b"\x00"  # the scramble is right
    answer = change_user(client, stack, character_set=300)
    assert [e.error_code for e in errors_in(encode_packet(answer, 1)[0])] == [1835]
    assert client.read_until_closed() == b""
    client.close()
