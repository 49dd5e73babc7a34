"""2,000 sockets that send an SSLRequest and stop, against a proxy with max_clients = 100: they
are all closed by the login deadline, real logins made meanwhile succeed, and the proxy's memory
comes back (issue 8 item 1).

The proxy runs in a process of its own, so that its RSS is its own.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantproxy.wire.mysql.constants import CapabilityFlags
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.handshake import SSLRequest
from tests.integration.async_client import CAPABILITIES
from tests.integration.clients import ca_path, host_port, pymysql_connect
from tests.integration.proxy_process import ProxyProcess
from tests.integration.proxy_thread import proxy_config_from_stack

pytestmark = pytest.mark.integration

FLOOD_SOCKETS = 2000
MAX_CLIENTS = 100
LOGIN_TIMEOUT_S = 3.0
# Bounds on waits (a proxy that never closes, or never gives memory back, fails here), not
# measurements.
CLOSE_BOUND_S = 4 * LOGIN_TIMEOUT_S
MEMORY_SETTLE_BOUND_S = 20.0
RSS_MARGIN_BYTES = 10 * 1024 * 1024
SSL_REQUEST = encode_packet(SSLRequest(CAPABILITIES | CapabilityFlags.CLIENT_SSL).encode(), 1)[0]


@pytest.fixture
def proxy(stack: Any, tmp_path: Path) -> Iterator[ProxyProcess]:
    config = proxy_config_from_stack(
        stack.outputs, require_tls=False, max_clients=MAX_CLIENTS, login_timeout_s=LOGIN_TIMEOUT_S
    )
    with ProxyProcess(config, tmp_path) as running:
        yield running


def real_login(stack: Any, proxy: ProxyProcess) -> int:
    """A TLS login and a query, as an application makes them; the table's row count."""
    connection = pymysql_connect(
        proxy.endpoint("read_only"),
        "user7",
        stack.secret("user7").password,
        "user_database7",
        ca_path(stack.outputs),
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mytable")
        return int(cursor.fetchone()[0])


def counter(proxy: ProxyProcess, name: str) -> float:
    text = httpx.get(f"http://{proxy.endpoint('metrics')}/metrics", timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith(f"tenantproxy_{name} "))
    return float(line.split()[1])


class Flood:
    """Opens sockets that send an SSLRequest and nothing more, from a thread."""

    def __init__(self, endpoint: str, count: int) -> None:
        self._address = host_port(endpoint)
        self._count = count
        self.sockets: list[socket.socket] = []
        self.half_way = threading.Event()
        self.refused = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=120)

    def _run(self) -> None:
        for number in range(self._count):
            sock = socket.create_connection(self._address, timeout=30)
            try:
                sock.sendall(SSL_REQUEST)
            except OSError:  # evicted before it could even send
                self.refused += 1
            self.sockets.append(sock)
            if number == self._count // 2:
                self.half_way.set()

    def wait_until_all_closed(self, bound_s: float) -> int:
        """Reads every socket until the proxy closes it; the number still open at the bound."""
        selector = selectors.DefaultSelector()
        for sock in self.sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        open_count = len(self.sockets)
        deadline = time.monotonic() + bound_s
        while open_count and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    is_closed = sock.recv(65536) == b""
                except ConnectionResetError:
                    is_closed = True
                if is_closed:
                    selector.unregister(sock)
                    open_count -= 1
        selector.close()
        for sock in self.sockets:
            sock.close()
        return open_count


def test_a_flood_of_stalled_tls_requests_locks_no_one_out_and_leaves_no_memory_behind(stack, proxy):
    rows = real_login(stack, proxy)  # warms up what a login allocates once
    time.sleep(1.0)  # let the warm-up's backend reset settle before the baseline
    rss_before = proxy.rss_bytes()

    flood = Flood(proxy.endpoint("read_only"), FLOOD_SOCKETS)
    flood.start()
    assert flood.half_way.wait(timeout=120)
    assert real_login(stack, proxy) == rows  # while the flood is arriving
    flood.join()
    assert len(flood.sockets) == FLOOD_SOCKETS
    rss_peak = proxy.rss_bytes()
    assert real_login(stack, proxy) == rows  # with all 2,000 sent and stalled

    assert flood.wait_until_all_closed(CLOSE_BOUND_S) == 0

    deadline = time.monotonic() + MEMORY_SETTLE_BOUND_S
    while (rss_after := proxy.rss_bytes()) > rss_before + RSS_MARGIN_BYTES:
        assert time.monotonic() < deadline, (
            f"RSS {rss_before / 2**20:.1f} MiB before the flood, {rss_after / 2**20:.1f} MiB after"
        )
        time.sleep(0.5)
    evicted = counter(proxy, "client_logins_evicted_total")
    timed_out = counter(proxy, "client_login_timeouts_total")
    print(
        f"\nflood: {FLOOD_SOCKETS} sockets, max_clients={MAX_CLIENTS}: {evicted:.0f} evicted,"
        f" {timed_out:.0f} closed at the deadline; RSS before {rss_before / 2**20:.1f} MiB,"
        f" with the flood {rss_peak / 2**20:.1f} MiB, after {rss_after / 2**20:.1f} MiB"
    )
    assert evicted + timed_out >= FLOOD_SOCKETS
    log = proxy.log_text()
    assert "Traceback" not in log and " ERROR " not in log
