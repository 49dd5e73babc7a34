"""What the two connection state machines report from ``next_event()``.

ServerConnection (the proxy facing a client): NEED_DATA, TlsRequested, LoginRequested,
AuthResponseReceived, CommandReceived, ConnectionClosed.
ClientConnection (the proxy facing a backend): NEED_DATA, StartTls, Authenticated, LoginFailed,
ResponsePacket.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tenantproxy.wire.mysql.constants import CapabilityFlags, ServerStatus
from tenantproxy.wire.mysql.handshake import HandshakeResponse41, SSLRequest
from tenantproxy.wire.mysql.responses import ErrPacket


class NeedData(enum.Enum):
    """Sentinel type: feed more bytes with ``receive_data`` (h11's NEED_DATA)."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value


NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True)
class TlsRequested:
    """The client sent an SSLRequest: start TLS, then call ``tls_started()``."""

    ssl_request: SSLRequest


@dataclass(frozen=True)
class LoginRequested:
    """The client sent its HandshakeResponse41; answer with OK, ERR or an auth switch."""

    response: HandshakeResponse41

    @property
    def username(self) -> str:
        return self.response.username

    @property
    def database(self) -> str | None:
        return self.response.database

    @property
    def auth_plugin_name(self) -> str:
        return self.response.auth_plugin_name

    @property
    def auth_response(self) -> bytes:
        return self.response.auth_response

    @property
    def capability_flags(self) -> CapabilityFlags:
        return self.response.capability_flags

    @property
    def character_set(self) -> int:
        return self.response.character_set

    @property
    def connect_attrs(self) -> dict[str, str]:
        return self.response.connect_attrs


@dataclass(frozen=True, repr=False)
class AuthResponseReceived:
    """The client's answer to an AuthSwitchRequest or AuthMoreData."""

    data: bytes

    def __repr__(self) -> str:
        # The data may be a clear-text password or token.
        return f"AuthResponseReceived(<{len(self.data)} bytes>)"


@dataclass(frozen=True)
class CommandReceived:
    """One command packet in the command phase (``command`` is its first byte)."""

    command: int
    payload: bytes


@dataclass(frozen=True)
class ConnectionClosed:
    """The client sent COM_QUIT, or the connection was closed after an error."""


@dataclass(frozen=True)
class StartTls:
    """The SSLRequest is in ``data_to_send()``: send it, wrap the socket, call ``tls_started()``."""


@dataclass(frozen=True)
class Authenticated:
    """The backend accepted the login."""

    server_version: str
    connection_id: int
    capability_flags: CapabilityFlags
    status_flags: ServerStatus


@dataclass(frozen=True)
class LoginFailed:
    """The backend refused the login with an ERR_Packet."""

    error: ErrPacket


@dataclass(frozen=True)
class ResponsePacket:
    """One packet of a response in the command phase."""

    payload: bytes


ServerEvent = (
    NeedData
    | TlsRequested
    | LoginRequested
    | AuthResponseReceived
    | CommandReceived
    | ConnectionClosed
)
ClientEvent = NeedData | StartTls | Authenticated | LoginFailed | ResponsePacket
Event = ServerEvent | ClientEvent
