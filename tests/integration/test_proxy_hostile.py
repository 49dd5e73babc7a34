"""Hostile clients, logged in or not: each gets a MySQL error or a close, never a traceback, and
nobody else notices (issue 8 item 1, issue 7 item 2).

A proxy in a thread over the stack's databases, TLS offered but not required, so that the tests
send exactly the bytes they mean, plain or inside TLS.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from tenantproxy.wire.mysql import auth_plugins
from tenantproxy.wire.mysql.constants import CapabilityFlags, Command
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.handshake import SSLRequest
from tests.integration.async_client import CAPABILITIES
from tests.integration.bystander import undisturbed_client
from tests.integration.clients import ca_path, host_port, tls_context
from tests.integration.proxy_log import LogRecorder
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.raw_client import RawClient, errors_in

pytestmark = pytest.mark.integration

LOGIN_TIMEOUT_S = 2.0
# How long a test waits for the proxy to close a client that should be closed at the login
# deadline: a bound that catches a client never closed, not a measurement.
CLOSE_BOUND_S = 5 * LOGIN_TIMEOUT_S


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    config = proxy_config_from_stack(
        stack.outputs, require_tls=False, login_timeout_s=LOGIN_TIMEOUT_S
    )
    with ProxyThread(config) as running:
        yield running


@pytest.fixture
def bystander(stack: Any, proxy: ProxyThread) -> Iterator[Any]:
    with undisturbed_client(proxy.endpoint("read_only"), stack, ca_path(stack.outputs)) as conn:
        yield conn


@pytest.fixture
def proxy_log() -> Iterator[LogRecorder]:
    """The proxy's log lines during the test; none may carry a traceback or be an ERROR."""
    with LogRecorder() as recorder:
        yield recorder
    assert not recorder.troubles()


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


def test_a_client_silent_after_change_users_auth_switch_is_closed_by_the_login_deadline(
    stack, proxy, bystander, proxy_log
):
    client = logged_in(stack, proxy.endpoint("read_only"))
    # A plugin the proxy does not take: it answers with an AuthSwitchRequest (0xFE) and waits.
    payload = (
        bytes([Command.COM_CHANGE_USER])
        + b"user7\x00\x01\x01user_database7\x00\x2d\x00sha256_password\x00"
    )
    assert answer_to(client, payload)[:1] == b"\xfe"
    client.sock.settimeout(CLOSE_BOUND_S)
    rest = client.read_until_closed()  # TimeoutError if the proxy kept waiting
    assert [e.error_code for e in errors_in(rest)] == [1043]
    client.close()


# -- clients that never finish their login ---------------------------------------------------


def ssl_request() -> bytes:
    caps = CAPABILITIES | CapabilityFlags.CLIENT_SSL
    return encode_packet(SSLRequest(caps).encode(), 1)[0]


def connected(proxy: ProxyThread) -> socket.socket:
    """A socket that has read the proxy's handshake."""
    sock = socket.create_connection(host_port(proxy.endpoint("read_only")), timeout=CLOSE_BOUND_S)
    sock.recv(65536)
    return sock


def bytes_until_closed(sock: socket.socket) -> bytes:
    """What the proxy sends until it closes; TimeoutError past CLOSE_BOUND_S without a close."""
    received = b""
    with sock:
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # an abort
                return received
            if not chunk:
                return received
            received += chunk


# A TLS record header announcing 16 KiB, then a few bytes of it: the TLS engine waits for more.
PARTIAL_RECORD = b"\x16\x03\x01\x40\x00" + b"A" * 100


@pytest.mark.parametrize(
    "after_ssl_request",
    [b"", PARTIAL_RECORD, b"GET / HTTP/1.1\r\n\r\n"],
    ids=["nothing", "partial_record", "not_tls"],
)
def test_a_client_stuck_before_tls_is_up_is_disconnected_by_the_login_deadline(
    proxy, bystander, proxy_log, after_ssl_request
):
    sock = connected(proxy)
    sock.sendall(ssl_request() + after_ssl_request)
    # Nothing can be said inside a TLS session that never started: no bytes, just the close.
    assert bytes_until_closed(sock) == b""


def test_a_client_silent_after_the_tls_handshake_gets_error_1043_by_the_login_deadline(
    stack, proxy, bystander, proxy_log
):
    sock = connected(proxy)
    sock.sendall(ssl_request())
    tls = tls_context(ca_path(stack.outputs)).wrap_socket(sock)
    answer = b""
    with contextlib.suppress(ssl.SSLError, ConnectionResetError):
        while chunk := tls.recv(65536):
            answer += chunk
    tls.close()
    assert [e.error_code for e in errors_in(answer)] == [1043]


def test_a_plain_client_silent_after_the_handshake_gets_error_1043_by_the_login_deadline(
    proxy, bystander, proxy_log
):
    sock = connected(proxy)
    assert [e.error_code for e in errors_in(bytes_until_closed(sock))] == [1043]


def test_a_client_trickling_its_login_byte_by_byte_is_closed_by_the_login_deadline(
    proxy, bystander, proxy_log
):
    sock = connected(proxy)
    sock.sendall(b"\x64\x00\x00\x01")  # announces a 100-byte HandshakeResponse41
    sock.settimeout(LOGIN_TIMEOUT_S / 4)
    # One byte per quarter of the deadline: each wait is short, the whole login is not.
    for _ in range(int(CLOSE_BOUND_S / sock.gettimeout())):
        try:
            sock.recv(65536)  # the ERR, or the close
            break
        except TimeoutError:
            sock.sendall(b"\x85")
        except ConnectionResetError:
            break
    else:
        pytest.fail("the trickling client was not closed")
    sock.close()


# -- clients that go without COM_QUIT (issue 7 item 2) ---------------------------------------

# How long the DROP TABLE may wait for the gone client's metadata lock: a bound on the wait
# (the server's own lock_wait_timeout), not a measurement.
LOCK_WAIT_BOUND_S = 10


def send_close_notify(client: RawClient) -> None:
    """TLS close_notify, leaving the TCP connection open (no FIN)."""
    assert isinstance(client.sock, ssl.SSLSocket)
    client.sock.settimeout(0)  # unwrap() would wait for the proxy's close_notify
    with contextlib.suppress(ssl.SSLWantReadError):
        client.sock.unwrap()


@pytest.mark.parametrize("goodbye", ["close_notify", "fin_tls", "fin_plain"])
def test_a_client_gone_without_com_quit_frees_its_transaction_at_once(
    stack, proxy, bystander, proxy_log, goodbye
):
    admin = stack.admin_connect(stack.proxy_writer)
    with admin.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS user_database7.held (id INT)")
        cursor.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_BOUND_S}")
    client = logged_in(stack, proxy.endpoint("read_write"), tls=goodbye != "fin_plain")
    assert answer_to(client, b"\x03BEGIN")[:1] == b"\x00"
    # An open transaction that holds the table's metadata lock.
    assert answer_to(client, b"\x03INSERT INTO held VALUES (1)")[:1] == b"\x00"
    if goodbye == "close_notify":
        send_close_notify(client)  # the socket stays open until the test ends
    else:
        client.close()
    try:
        with admin.cursor() as cursor:
            # ERROR 1205 (lock wait timeout) if the backend still holds the transaction.
            cursor.execute("DROP TABLE user_database7.held")
    finally:
        admin.close()
        client.close()
