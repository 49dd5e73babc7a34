"""A wire fuzzer: hypothesis-made bytes from raw sockets, before and after a login, plain and
inside TLS (issue 8 item 1).

Each case asserts that a client that sent whole packets is answered or closed within
ANSWER_BOUND_S. Across all cases: the proxy keeps accepting logins, a bystander connected before
the first case keeps its session, and the log holds no traceback, no ERROR and no "unexpected"
line. `make test` runs FUZZ_CASES (default 2,000) cases, a fifth per fuzzer; `make fuzz` runs 20,000
(TENANTPROXY_FUZZ_CASES). The figures are printed at the end (`pytest -s`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantproxy.wire.mysql.constants import CapabilityFlags, Command
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.handshake import SSLRequest
from tests.integration.async_client import CAPABILITIES
from tests.integration.bystander import undisturbed_client
from tests.integration.clients import ca_path, host_port, tls_context
from tests.integration.proxy_log import LogRecorder
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.raw_client import RawClient

pytestmark = pytest.mark.integration

FUZZ_CASES = int(os.environ.get("TENANTPROXY_FUZZ_CASES", "2000"))
CASES_PER_TEST = max(1, FUZZ_CASES // 5)
LOGIN_TIMEOUT_S = 2.0
# A bound that catches a hang (nothing said, nothing closed), not a measurement.
ANSWER_BOUND_S = 3 * LOGIN_TIMEOUT_S
# Commands the server does not answer: a client sending them waits for nothing.
_UNANSWERED = {Command.COM_STMT_SEND_LONG_DATA, Command.COM_STMT_CLOSE}

FIGURES: Counter[str] = Counter()
FUZZ_SETTINGS = settings(
    max_examples=CASES_PER_TEST,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def log() -> Iterator[LogRecorder]:
    with LogRecorder() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def proxy(stack: Any, log: LogRecorder) -> Iterator[ProxyThread]:
    config = proxy_config_from_stack(
        stack.outputs,
        require_tls=False,
        login_timeout_s=LOGIN_TIMEOUT_S,
        max_packet_bytes=1024 * 1024,
    )
    with ProxyThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def bystander(stack: Any, proxy: ProxyThread) -> Iterator[Any]:
    with undisturbed_client(proxy.endpoint("read_only"), stack, ca_path(stack.outputs)) as conn:
        yield conn


# -- what a case sends ------------------------------------------------------------------------

sequence_ids = st.one_of(st.just(0), st.integers(0, 255))
commands = st.one_of(
    st.sampled_from([c for c in Command if c not in _UNANSWERED]),
    st.integers(0, 255).filter(lambda c: c not in _UNANSWERED),
)
command_packets = st.builds(
    lambda command, body, sequence_id: encode_packet(bytes([command]) + body, sequence_id)[0],
    commands,
    st.binary(max_size=64),
    sequence_ids,
)
# Before the login: HandshakeResponse41-like payloads (random capability bits, then anything).
login_packets = st.builds(
    lambda caps, body, sequence_id: encode_packet(caps.to_bytes(4, "little") + body, sequence_id)[
        0
    ],
    st.integers(0, 2**32 - 1),
    st.binary(max_size=120),
    st.one_of(st.just(1), st.just(2), sequence_ids),
)
garbage = st.binary(min_size=1, max_size=200)


@st.composite
def cases(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> tuple[bytes, bool]:
    """(bytes to send, whether they are whole packets the proxy must react to)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(garbage), False
    return b"".join(draw(st.lists(packets, min_size=1, max_size=4))), True


# -- running a case ----------------------------------------------------------------------------


def answered_or_closed(sock: socket.socket) -> bool:
    """Whether the proxy said something or closed within ANSWER_BOUND_S."""
    sock.settimeout(ANSWER_BOUND_S)
    try:
        sock.recv(65536)
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    return True


def run_case(sock: socket.socket, data: bytes, is_whole: bool, proxy: ProxyThread) -> None:
    FIGURES["cases"] += 1
    with contextlib.suppress(OSError):
        sock.sendall(data)
    try:
        if is_whole and not answered_or_closed(sock):
            FIGURES["hangs"] += 1
            pytest.fail(f"no answer and no close within {ANSWER_BOUND_S} s to {data!r}")
    finally:
        sock.close()
    if FIGURES["cases"] % 100 == 0:
        assert_proxy_is_up(proxy)


def assert_proxy_is_up(proxy: ProxyThread) -> None:
    try:
        with socket.create_connection(host_port(proxy.endpoint("read_only")), timeout=10) as s:
            assert s.recv(1), "no handshake"
    except (OSError, AssertionError):
        FIGURES["crashes"] += 1
        raise


def before_login(proxy: ProxyThread, stack: Any, *, tls: bool) -> socket.socket:
    sock = socket.create_connection(host_port(proxy.endpoint("read_only")), timeout=10)
    sock.recv(65536)  # the handshake
    if not tls:
        return sock
    caps = CAPABILITIES | CapabilityFlags.CLIENT_SSL
    sock.sendall(encode_packet(SSLRequest(caps).encode(), 1)[0])
    return tls_context(ca_path(stack.outputs)).wrap_socket(sock)


def after_login(proxy: ProxyThread, stack: Any, *, tls: bool) -> socket.socket:
    client = RawClient(proxy.endpoint("read_only"), ca_path(stack.outputs) if tls else None)
    client.log_in("user7", stack.secret("user7").password, "user_database7")
    return client.sock


# -- the fuzzers -------------------------------------------------------------------------------


# Past a TLS record header's 5 bytes, so that TLS can judge them without waiting for more (a
# shorter start waits for the login deadline, which test_proxy_hostile.py covers).
@settings(FUZZ_SETTINGS, max_examples=max(1, CASES_PER_TEST // 4))
@given(data=st.binary(min_size=8, max_size=200))
def test_fuzz_garbage_instead_of_a_tls_handshake(stack, proxy, bystander, data):
    # Whatever follows an SSLRequest, the proxy closes by the login deadline at the latest.
    sock = before_login(proxy, stack, tls=False)
    caps = CAPABILITIES | CapabilityFlags.CLIENT_SSL
    run_case(sock, encode_packet(SSLRequest(caps).encode(), 1)[0] + data, True, proxy)


@FUZZ_SETTINGS
@given(case=cases(login_packets))
def test_fuzz_before_the_login_plain(stack, proxy, bystander, case):
    run_case(before_login(proxy, stack, tls=False), *case, proxy)


@FUZZ_SETTINGS
@given(case=cases(login_packets))
def test_fuzz_before_the_login_inside_tls(stack, proxy, bystander, case):
    run_case(before_login(proxy, stack, tls=True), *case, proxy)


@FUZZ_SETTINGS
@given(case=cases(command_packets))
def test_fuzz_after_the_login_plain(stack, proxy, bystander, case):
    run_case(after_login(proxy, stack, tls=False), *case, proxy)


@FUZZ_SETTINGS
@given(case=cases(command_packets))
def test_fuzz_after_the_login_inside_tls(stack, proxy, bystander, case):
    run_case(after_login(proxy, stack, tls=True), *case, proxy)


def test_after_the_fuzz_the_proxy_serves_and_logged_no_traceback(stack, proxy, bystander, log):
    assert_proxy_is_up(proxy)
    after_login(proxy, stack, tls=True).close()  # a real login still succeeds
    troubles = log.troubles()
    FIGURES["tracebacks"] = len(troubles)
    print(
        f"\nwire fuzz: {FIGURES['cases']} cases, {FIGURES['crashes']} crashes,"
        f" {FIGURES['hangs']} hangs, {FIGURES['tracebacks']} tracebacks or ERROR lines"
    )
    assert not troubles, troubles[:20]
