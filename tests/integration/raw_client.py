"""A blocking MySQL client driven by our own sans-IO ClientConnection, for tests that must send
bytes no driver would send (malformed packets) after a real TLS login."""

from __future__ import annotations

import contextlib
import socket
import ssl

from tenantproxy.wire.mysql.client_connection import ClientConnection
from tenantproxy.wire.mysql.constants import CapabilityFlags
from tenantproxy.wire.mysql.events import NEED_DATA, Authenticated, LoginFailed, StartTls
from tenantproxy.wire.mysql.responses import ErrPacket
from tests.integration.async_client import CAPABILITIES
from tests.integration.clients import host_port, tls_context

_NO_EXTRA_CAPABILITIES = CapabilityFlags(0)


class RawClient:
    def __init__(self, endpoint: str, ca_file: str | None = None) -> None:
        host, port = host_port(endpoint)
        self.sock: socket.socket = socket.create_connection((host, port), timeout=15)
        self._ca_file = ca_file
        self.nonce = b""  # the scramble of the login, for a COM_CHANGE_USER's auth response

    def log_in(
        self,
        user: str,
        password: str,
        database: str | None,
        extra_capabilities: CapabilityFlags = _NO_EXTRA_CAPABILITIES,
    ) -> Authenticated:
        connection = ClientConnection(
            username=user,
            password=password.encode(),
            database=database,
            capabilities=CAPABILITIES | extra_capabilities,
            use_tls=self._ca_file is not None,
        )
        while True:
            event = connection.next_event()
            self.sock.sendall(connection.data_to_send())
            if event is NEED_DATA:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("proxy closed during login")
                connection.receive_data(data)
            elif isinstance(event, StartTls):
                assert self._ca_file is not None
                self.sock = tls_context(self._ca_file).wrap_socket(self.sock)
                connection.tls_started()
            elif isinstance(event, Authenticated):
                self.nonce = connection.auth_nonce
                return event
            elif isinstance(event, LoginFailed):
                raise ConnectionError(f"login refused: {event.error}")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_ignoring_reset(self, data: bytes) -> None:
        """Sends, and shrugs if the proxy hangs up first (it may, on purpose)."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.sock.sendall(data)

    def read_until_closed(self) -> bytes:
        """Everything the proxy sends until it closes the connection."""
        chunks = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


def errors_in(stream: bytes) -> list[ErrPacket]:
    """The ERR packets in a byte stream of whole packets."""
    found = []
    position = 0
    while position + 4 <= len(stream):
        length = int.from_bytes(stream[position : position + 3], "little")
        payload = stream[position + 4 : position + 4 + length]
        if payload[:1] == b"\xff":
            found.append(ErrPacket.decode(payload))
        position += 4 + length
    return found
