"""Malformed packets close that client with a MySQL error and never disturb the others.

A proxy in a thread over the stack's databases, on plain TCP with a 1 MiB packet limit, so that
the tests can send exactly the bytes they mean.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tenantproxy.wire.mysql.framing import encode_packet
from tests.integration.bystander import undisturbed_client
from tests.integration.clients import ca_path
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.raw_client import RawClient, errors_in

pytestmark = pytest.mark.integration

MAX_PACKET_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    config = proxy_config_from_stack(
        stack.outputs, require_tls=False, max_packet_bytes=MAX_PACKET_BYTES
    )
    with ProxyThread(config) as running:
        yield running


@pytest.fixture
def bystander(stack: Any, proxy: ProxyThread) -> Iterator[Any]:
    """A good client, connected before the bad one and checked after it."""
    with undisturbed_client(proxy.endpoint("read_only"), stack, None) as connection:
        yield connection


def logged_in_client(stack: Any, proxy: ProxyThread) -> RawClient:
    client = RawClient(proxy.endpoint("read_only"))
    client.log_in("user7", stack.secret("user7").password, "user_database7")
    return client


def error_codes_until_closed(client: RawClient) -> list[int]:
    errors = errors_in(client.read_until_closed())
    client.close()
    return [error.error_code for error in errors]


def test_garbage_before_the_handshake_closes_that_client_with_error_1043(proxy, bystander):
    client = RawClient(proxy.endpoint("read_only"))
    client.sock.recv(65536)  # the proxy's HandshakeV10
    client.send(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    assert error_codes_until_closed(client) == [1043]


def test_a_truncated_handshake_response_closes_that_client_with_error_1043(proxy, bystander):
    client = RawClient(proxy.endpoint("read_only"))
    client.sock.recv(65536)
    # A HandshakeResponse41 that stops after its capability flags.
    client.send(encode_packet(b"\x85\xa6\x3f\x20", 1)[0])
    assert error_codes_until_closed(client) == [1043]


def test_a_handshake_response_with_a_wrong_sequence_id_closes_that_client(proxy, bystander):
    client = RawClient(proxy.endpoint("read_only"))
    client.sock.recv(65536)
    client.send(encode_packet(b"\x85\xa6\x3f\x20" + b"\x00" * 40, 7)[0])
    assert error_codes_until_closed(client) == [1043]


def test_a_client_that_vanishes_mid_packet_leaves_the_others_alone(proxy, bystander):
    client = RawClient(proxy.endpoint("read_only"))
    client.sock.recv(65536)
    client.send(b"\x64\x00\x00\x01\x85\xa6")  # announces 100 bytes, sends 2
    client.close()


def test_a_command_with_a_wrong_sequence_id_closes_that_client_with_error_1156(
    stack, proxy, bystander
):
    client = logged_in_client(stack, proxy)
    client.send(encode_packet(b"\x03SELECT 1", 3)[0])
    assert error_codes_until_closed(client) == [1156]


def test_an_oversized_packet_closes_that_client_with_error_1153(stack, proxy, bystander):
    client = logged_in_client(stack, proxy)
    oversized = encode_packet(b"\x03SELECT '" + b"x" * (2 * MAX_PACKET_BYTES) + b"'", 0)[0]
    # Sent from a thread: the proxy stops reading mid-way and answers meanwhile.
    sender = threading.Thread(target=client.send_ignoring_reset, args=(oversized,))
    sender.start()
    codes = error_codes_until_closed(client)
    sender.join(timeout=30)
    assert codes == [1153]


def test_an_empty_command_packet_closes_that_client_with_error_1835(stack, proxy, bystander):
    client = logged_in_client(stack, proxy)
    client.send(b"\x00\x00\x00\x00")
    assert error_codes_until_closed(client) == [1835]


def test_a_client_that_drops_mid_result_leaves_the_others_alone(stack, proxy, bystander):
    client = logged_in_client(stack, proxy)
    client.send(encode_packet(b"\x03SELECT REPEAT('x', 4000000)", 0)[0])
    client.sock.recv(10)
    client.close()


# Prepared-statement commands too short for what they must carry, then a COM_PING: MariaDB
# answers some with an error and the others not at all, and goes on.
CUT_SHORT = [
    b"\x17\x01",  # COM_STMT_EXECUTE: ERROR 1835
    b"\x17\x01\x00\x00\x00\x00",  # without its iteration count: ERROR 1835
    b"\xfa\x01\x00",  # COM_STMT_BULK_EXECUTE: ERROR 1835
    b"\x19",  # COM_STMT_CLOSE: no answer
    b"\x18\x01",  # COM_STMT_SEND_LONG_DATA: no answer
    b"\x18\x63\x00\x00\x00\x00\x00x",  # long data for an id never given: no answer
    b"\x1a\x01",  # COM_STMT_RESET: ERROR 1243
    b"\x1c",  # COM_STMT_FETCH: ERROR 1243
    b"\x0e",  # COM_PING: OK
]


def answers_in(stream: bytes) -> list[int | str]:
    """Each packet's answer: its error code, or "OK"."""
    answers: list[int | str] = []
    position = 0
    while position + 4 <= len(stream):
        length = int.from_bytes(stream[position : position + 3], "little")
        payload = stream[position + 4 : position + 4 + length]
        answers.append(int.from_bytes(payload[1:3], "little") if payload[:1] == b"\xff" else "OK")
        position += 4 + length
    return answers


def test_statement_commands_cut_short_get_mariadbs_answers_and_the_session_goes_on(
    stack, proxy, bystander
):
    answers = {}
    for side, endpoint, ca_file in (
        ("direct", stack.proxy_writer, ca_path(stack.outputs)),
        ("proxy", proxy.endpoint("read_only"), None),
    ):
        client = RawClient(endpoint, ca_file)
        client.log_in("user7", stack.secret("user7").password, "user_database7")
        client.send(b"".join(encode_packet(p, 0)[0] for p in CUT_SHORT))
        stream = b""
        while not answers_in(stream) or answers_in(stream)[-1] != "OK":  # the ping's
            data = client.sock.recv(65536)
            assert data, f"{side}: closed after {answers_in(stream)}"
            stream += data
        answers[side] = answers_in(stream)
        client.close()
    assert answers["direct"] == [1835, 1835, 1835, 1243, 1243, "OK"]
    assert answers["proxy"] == answers["direct"]
