"""Backends: connections the proxy opens to a target.

A backend's ``mode`` says who owns the bytes the server sends, and only ``_move_to`` changes it,
along ``ALLOWED_MODE_CHANGES``:

- CONNECTING: the login (``log_in``) reads them;
- COMMANDS: the proxy itself talks to it, one command at a time (reset, COM_INIT_DB, COM_PING,
  COM_CHANGE_USER, health checks: ``run_command``), or it sits idle in its pool; a byte nobody
  asked for breaks it;
- RELAYING: a session's relay holds it (``relay_to`` / ``stop_relaying``), and every byte goes to
  the relay at once, undecoded, with the connection's loss and its write buffer's fill and drain;
- CLOSED: the connection is gone; nothing comes back from there.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, cast

from tenantproxy.errors import BackendAuthError, BackendError
from tenantproxy.proxy.session_state import ARMING_STATEMENT, TRACKED_VARIABLES, TrackedState
from tenantproxy.wire.mysql import auth_plugins, commands
from tenantproxy.wire.mysql.client_connection import ClientConnection
from tenantproxy.wire.mysql.codec import Reader
from tenantproxy.wire.mysql.constants import (
    CapabilityFlags,
    PacketHeader,
    ServerStatus,
)
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.events import (
    NEED_DATA,
    Authenticated,
    LoginFailed,
    StartTls,
)
from tenantproxy.wire.mysql.framing import PacketDecoder, encode_packet
from tenantproxy.wire.mysql.handshake import AuthSwitchRequest, ComChangeUser
from tenantproxy.wire.mysql.response_editor import ResponseEditor
from tenantproxy.wire.mysql.response_tracker import ResponseTracker
from tenantproxy.wire.mysql.responses import ErrPacket, OkPacket

if TYPE_CHECKING:
    from tenantproxy.proxy.statement_routing import CachedStatements

# MariaDB's extended capabilities (MariaDB "Connection" page), which the proxy relays: bulk
# execute (COM_STMT_BULK_EXECUTE), type names in column definitions (JSON, GIS), progress reports
# inside a response, and column definitions left out of a COM_STMT_EXECUTE answer when the
# client has them. Offered to clients only when every target has them (Router).
MARIADB_RELAYED_CAPABILITIES = (
    CapabilityFlags.MARIADB_CLIENT_PROGRESS
    | CapabilityFlags.MARIADB_CLIENT_STMT_BULK_OPERATIONS
    | CapabilityFlags.MARIADB_CLIENT_EXTENDED_METADATA
    | CapabilityFlags.MARIADB_CLIENT_CACHE_METADATA
)
# The capabilities that change the bytes of a response. A backend relays to a client only when
# both negotiated the same ones, so pools are kept per profile (see BackendProfile).
RELAYED_CAPABILITIES = (
    CapabilityFlags.CLIENT_FOUND_ROWS
    | CapabilityFlags.CLIENT_LONG_FLAG
    | CapabilityFlags.CLIENT_LOCAL_FILES
    | CapabilityFlags.CLIENT_IGNORE_SPACE
    | CapabilityFlags.CLIENT_MULTI_STATEMENTS
    | CapabilityFlags.CLIENT_MULTI_RESULTS
    | CapabilityFlags.CLIENT_PS_MULTI_RESULTS
    | CapabilityFlags.CLIENT_SESSION_TRACK
    | CapabilityFlags.CLIENT_DEPRECATE_EOF
    | MARIADB_RELAYED_CAPABILITIES
)
# What every backend asks for besides the relayed ones.
BASE_CAPABILITIES = (
    CapabilityFlags.CLIENT_LONG_PASSWORD
    | CapabilityFlags.CLIENT_PROTOCOL_41
    | CapabilityFlags.CLIENT_SECURE_CONNECTION
    | CapabilityFlags.CLIENT_TRANSACTIONS
    | CapabilityFlags.CLIENT_PLUGIN_AUTH
    | CapabilityFlags.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CapabilityFlags.CLIENT_CONNECT_WITH_DB
    | CapabilityFlags.CLIENT_CONNECT_ATTRS
)
_LOGIN_TIMEOUT_S = 10.0
# The tracked variables a multiplexed backend starts with (only those this server has).
BASELINE_QUERY = (
    "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.SESSION_VARIABLES"
    " WHERE VARIABLE_NAME IN ("
    + ", ".join(f"'{name.upper()}'" for name in sorted(TRACKED_VARIABLES))
    + ")"
)


class BackendProfile(NamedTuple):
    """What must match between a client and the backend relaying to it.

    ``has_database`` is False for clients that log in without a database: their backends log in
    without one too, and must still have none when they go back to the pool.
    """

    capabilities: CapabilityFlags
    character_set: int
    has_database: bool = True
    # Shared per transaction (pool_mode = "transaction"): the backend always negotiates
    # CLIENT_SESSION_TRACK and has session tracking armed (session_state.ARMING_STATEMENT).
    is_multiplexed: bool = False

    @classmethod
    def of_client(
        cls,
        capabilities: CapabilityFlags,
        character_set: int,
        database: str | None,
        *,
        is_multiplexed: bool = False,
    ) -> BackendProfile:
        relayed = CapabilityFlags(capabilities & RELAYED_CAPABILITIES)
        if is_multiplexed:
            relayed |= CapabilityFlags.CLIENT_SESSION_TRACK
        return cls(relayed, character_set, database is not None, is_multiplexed)

    def with_database(self, has_database: bool) -> BackendProfile:
        return self._replace(has_database=has_database)


@dataclass(frozen=True)
class Target:
    """One database server behind the proxy."""

    name: str
    role: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class BackendCredentials:
    username: str
    password: str = field(repr=False)
    database: str | None = None


class BackendLoginRejected(BackendAuthError):
    """The target refused the login; ``error`` is its ERR packet, to relay as it is."""

    def __init__(self, target: Target, error: ErrPacket) -> None:
        super().__init__(f"{target.name} refused the login: ERROR {error.error_code}")
        self.error = error


class BackendMode(enum.Enum):
    """Who owns the bytes the server sends (the module docstring)."""

    CONNECTING = "connecting"
    COMMANDS = "commands"
    RELAYING = "relaying"
    CLOSED = "closed"


ALLOWED_MODE_CHANGES: dict[BackendMode, frozenset[BackendMode]] = {
    BackendMode.CONNECTING: frozenset({BackendMode.COMMANDS, BackendMode.CLOSED}),
    BackendMode.COMMANDS: frozenset({BackendMode.RELAYING, BackendMode.CLOSED}),
    BackendMode.RELAYING: frozenset({BackendMode.COMMANDS, BackendMode.CLOSED}),
    BackendMode.CLOSED: frozenset(),
}
_CONNECTING = BackendMode.CONNECTING
_COMMANDS = BackendMode.COMMANDS
_RELAYING = BackendMode.RELAYING
_CLOSED = BackendMode.CLOSED


class RelayHooks(NamedTuple):
    """Where a RELAYING backend's events go: the relay that holds it."""

    received: Callable[[bytes], None]  # every byte the server sends
    lost: Callable[[], None]  # the connection dropped
    # This connection's write buffer filled (the target reads slower than the client writes):
    # stop reading from the client; and drained again.
    pause_client: Callable[[], None]
    resume_client: Callable[[], None]


def _nothing() -> None:
    return None


def _ignored(data: bytes) -> None:
    return None


_NO_RELAY = RelayHooks(_ignored, _nothing, _nothing, _nothing)


class BackendConnection(asyncio.Protocol):
    """One connection to a target, in one mode at a time (the module docstring)."""

    def __init__(self, target: Target, max_packet_bytes: int, login: ClientConnection) -> None:
        self.target = target
        self._max_packet_bytes = max_packet_bytes
        self.transport: asyncio.Transport | None = None
        self.tracker: ResponseTracker | None = None
        self.status_flags = ServerStatus.SERVER_STATUS_AUTOCOMMIT
        # The session as the server reported it: its schema and, for a multiplexed backend,
        # the tracked variables (all of them, from the baseline on).
        self.state = TrackedState()
        # A multiplexed backend's tracked variables after login (or reset) and init_query.
        self.baseline: dict[str, str] = {}
        # The editor of its responses while it relays for multiplexed clients.
        self.editor: ResponseEditor | None = None
        # Its binary prepared statements, kept across multiplexed clients (statement_routing.py).
        self.statements: CachedStatements | None = None
        self.is_broken = False
        self.last_given_back_at = time.monotonic()
        self.connection_id = 0
        self.server_version = ""
        self.auth_nonce = b""
        self.profile: BackendProfile | None = None
        # From the start: the server speaks first, maybe before log_in() runs.
        self.mode = _CONNECTING
        self._hooks = _NO_RELAY  # the relay's, while RELAYING
        self.negotiated_capabilities = CapabilityFlags(0)
        # What the target offered in its handshake (the router learns targets' capabilities).
        self.server_capabilities = CapabilityFlags(0)
        self._login: ClientConnection | None = login  # until log_in() ends
        self._inbox = asyncio.Event()
        # Set when the transport is gone: a TLS close ends a round trip after close().
        self._is_lost = asyncio.Event()
        self._decoder: PacketDecoder | None = None
        self._reply: asyncio.Future[list[bytes]] | None = None
        self._reply_packets: list[bytes] = []
        # True while waiting for one packet outside the tracker (the steps of COM_CHANGE_USER).
        self._expects_one_packet = False

    @property
    def current_schema(self) -> str | None:
        return self.state.schema

    @current_schema.setter
    def current_schema(self, schema: str | None) -> None:
        self.state.schema = schema

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        mode = self.mode
        if mode is _RELAYING:
            self._hooks.received(data)
        elif mode is _COMMANDS:
            self._receive_reply(data)
        elif mode is _CONNECTING and self._login is not None:
            self._login.receive_data(data)
            self._inbox.set()
        else:  # after a failed login: the backend can no longer be trusted
            self.mark_broken()

    def connection_lost(self, exc: Exception | None) -> None:
        was_relaying = self.mode is _RELAYING
        self._move_to(_CLOSED)
        self.is_broken = True
        self._is_lost.set()
        self._inbox.set()
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(BackendError(f"{self.target.name} closed the connection"))
        if was_relaying:
            self._hooks.lost()

    def pause_writing(self) -> None:
        if self.mode is _RELAYING:
            self._hooks.pause_client()

    def resume_writing(self) -> None:
        if self.mode is _RELAYING:
            self._hooks.resume_client()

    # -- modes ---------------------------------------------------------------------------

    def _move_to(self, mode: BackendMode) -> None:
        """The one place the mode changes."""
        if mode not in ALLOWED_MODE_CHANGES[self.mode]:
            raise RuntimeError(f"backend of {self.target.name}: {self.mode.name} -> {mode.name}")
        self.mode = mode

    def relay_to(self, hooks: RelayHooks) -> None:
        """A session's relay holds this backend from now on. A backend whose connection is
        gone already cannot relay: the relay is told it is lost, as if it had dropped now."""
        self._hooks = hooks
        if self.mode is _CLOSED:
            asyncio.get_running_loop().call_soon(self._tell_lost, hooks)
            return
        self._move_to(_RELAYING)

    def _tell_lost(self, hooks: RelayHooks) -> None:
        if self._hooks is hooks:  # still held by that relay
            hooks.lost()

    def stop_relaying(self) -> None:
        """The relay lets go: the proxy owns the bytes again (a lost backend stays CLOSED)."""
        self._hooks = _NO_RELAY
        if self.mode is _RELAYING:
            self._move_to(_COMMANDS)

    # -- login -------------------------------------------------------------------------

    async def log_in(self, database: str | None, tls_context: ssl.SSLContext | None) -> None:
        """Authenticates; raises BackendLoginRejected with the server's ERR on refusal."""
        login = self._login
        assert login is not None, "log_in() runs once"
        try:
            await asyncio.wait_for(self._drive_login(login, tls_context), _LOGIN_TIMEOUT_S)
        except TimeoutError:
            raise BackendError(f"{self.target.name}: login timed out") from None
        finally:
            self._login = None
        if self.mode is _CONNECTING:  # else the connection dropped after the login's last byte
            self._move_to(_COMMANDS)
        self.current_schema = database

    async def _drive_login(
        self, login: ClientConnection, tls_context: ssl.SSLContext | None
    ) -> None:
        while True:
            event = login.next_event()
            self._flush_login(login)
            if event is NEED_DATA:
                if self.is_broken:
                    raise BackendError(f"{self.target.name} closed the connection during login")
                self._inbox.clear()
                await self._inbox.wait()
            elif isinstance(event, StartTls):
                assert tls_context is not None and self.transport is not None
                self._flush_login(login)
                loop = asyncio.get_running_loop()
                new_transport = await loop.start_tls(self.transport, self, tls_context)
                self.transport = cast(asyncio.Transport, new_transport)
                login.tls_started()
            elif isinstance(event, Authenticated):
                self._flush_login(login)
                self.connection_id = event.connection_id
                self.server_version = event.server_version
                self.auth_nonce = login.auth_nonce
                self.status_flags = event.status_flags
                self.tracker = ResponseTracker(event.capability_flags)
                self.negotiated_capabilities = event.capability_flags
                self.server_capabilities = login.server_capabilities
                return
            elif isinstance(event, LoginFailed):
                raise BackendLoginRejected(self.target, event.error)
            else:
                raise ProtocolError(f"unexpected login event {type(event).__name__}")

    def _flush_login(self, login: ClientConnection) -> None:
        outgoing = login.data_to_send()
        if outgoing and self.transport is not None:
            self.transport.write(outgoing)

    # -- commands the proxy sends itself -----------------------------------------------

    async def run_command(self, payload: bytes) -> list[bytes]:
        """Sends one command and returns the payloads of its response (proxy-side use only)."""
        if self.is_broken or self.transport is None or self.tracker is None:
            raise BackendError(f"{self.target.name}: connection is broken")
        assert self.mode is _COMMANDS, "a relaying backend's bytes belong to its session"
        loop = asyncio.get_running_loop()
        self._reply = loop.create_future()
        self._reply_packets = []
        self._decoder = PacketDecoder(self._max_packet_bytes, expected_sequence_id=1)
        self.tracker.command_sent(payload[:16])
        self.transport.write(encode_packet(payload, 0)[0])
        try:
            return await self._reply
        finally:
            self._reply = None
            self._decoder = None

    def _receive_reply(self, data: bytes) -> None:
        decoder, reply, tracker = self._decoder, self._reply, self.tracker
        if decoder is None or reply is None or tracker is None or reply.done():
            # Bytes nobody asked for: the backend can no longer be trusted.
            self.mark_broken()
            return
        try:
            decoder.feed(data)
            while (packet := decoder.next_packet()) is not None:
                self._reply_packets.append(packet[1])
            if self._expects_one_packet:
                is_done = bool(self._reply_packets)
            else:
                is_done = tracker.server_data(data) > 0
        except ProtocolError as exc:
            self.mark_broken()
            reply.set_exception(BackendError(f"{self.target.name}: {exc}"))
            return
        if is_done:
            if not self._expects_one_packet:
                self.status_flags = tracker.status_flags
            reply.set_result(self._reply_packets)

    async def change_user(self, credentials: BackendCredentials, character_set: int) -> None:
        """COM_CHANGE_USER: logs this idle connection in again as another user, on its database
        (the session's state goes, as with COM_RESET_CONNECTION). ProxySQL hands backends
        between users this way; it spares the server a new connection. Raises BackendError
        when refused; the connection should then be closed."""
        self._forget_statements()
        password = credentials.password.encode()
        request = ComChangeUser(
            username=credentials.username,
            auth_response=auth_plugins.native_password_scramble(password, self.auth_nonce),
            database=credentials.database,
            character_set=character_set,
            auth_plugin_name=auth_plugins.MYSQL_NATIVE_PASSWORD,
            connect_attrs={"program_name": "tenantproxy"},
        )
        answer = await self._exchange(request.encode(self.negotiated_capabilities), 0)
        if answer[:1] == bytes((PacketHeader.EOF,)):  # AuthSwitchRequest: a fresh scramble
            switch = AuthSwitchRequest.decode(answer)
            if switch.plugin_name != auth_plugins.MYSQL_NATIVE_PASSWORD:
                raise BackendError(f"{self.target.name}: change user wants {switch.plugin_name}")
            nonce = switch.plugin_data.rstrip(b"\x00")
            answer = await self._exchange(auth_plugins.native_password_scramble(password, nonce), 2)
        if answer[:1] == bytes((PacketHeader.ERR,)):
            raise BackendCommandFailed(self.target, ErrPacket.decode(answer))
        if answer[:1] != bytes((PacketHeader.OK,)):
            raise BackendError(f"{self.target.name}: unexpected answer to COM_CHANGE_USER")
        self.current_schema = credentials.database
        self.status_flags = OkPacket.decode(answer, self.negotiated_capabilities).status_flags

    async def _exchange(self, payload: bytes, sequence_id: int) -> bytes:
        """Sends one packet and returns the next one the server sends (no tracker)."""
        if self.is_broken or self.transport is None:
            raise BackendError(f"{self.target.name}: connection is broken")
        self._reply = asyncio.get_running_loop().create_future()
        self._reply_packets = []
        self._decoder = PacketDecoder(self._max_packet_bytes, sequence_id + 1)
        self._expects_one_packet = True
        self.transport.write(encode_packet(payload, sequence_id)[0])
        try:
            return (await self._reply)[0]
        finally:
            self._reply = None
            self._decoder = None
            self._expects_one_packet = False

    async def run_simple_command(self, payload: bytes) -> None:
        """Runs a command answered by OK; raises BackendCommandFailed with the server's ERR."""
        packets = await self.run_command(payload)
        if packets and packets[-1][:1] == bytes((PacketHeader.ERR,)):
            raise BackendCommandFailed(self.target, ErrPacket.decode(packets[-1]))

    async def select_value(self, sql: str) -> bytes | None:
        """Runs a query whose answer is one row of one column; returns it (None for NULL)."""
        packets = await self.run_command(commands.com_query(sql))
        if packets[0][:1] == bytes((PacketHeader.ERR,)):
            raise BackendCommandFailed(self.target, ErrPacket.decode(packets[0]))
        # column count, column definition, [EOF], row, terminator
        has_eof_after_columns = not (
            self.negotiated_capabilities & CapabilityFlags.CLIENT_DEPRECATE_EOF
        )
        row = packets[3 if has_eof_after_columns else 2]
        if row[:1] == b"\xfb":  # NULL in a text row
            return None
        return Reader(row).bytes_lenenc()

    async def select_rows(self, sql: str) -> list[tuple[bytes, ...]]:
        """Runs a query; its text rows (NULL as b"")."""
        packets = await self.run_command(commands.com_query(sql))
        if packets[0][:1] == bytes((PacketHeader.ERR,)):
            raise BackendCommandFailed(self.target, ErrPacket.decode(packets[0]))
        columns = Reader(packets[0]).int_lenenc()
        has_eof = not self.negotiated_capabilities & CapabilityFlags.CLIENT_DEPRECATE_EOF
        rows = []
        for row in packets[1 + columns + has_eof : -1]:
            reader = Reader(row)
            rows.append(tuple(_text_value(reader) for _ in range(columns)))
        return rows

    async def reset_session(self, init_query: str | None) -> None:
        """Makes the session as a fresh login's: COM_RESET_CONNECTION drops session variables,
        temporary tables, prepared statements, user locks and any open transaction, and keeps
        the login and the database the client left it on; then init_query runs, the schema
        is learned from the server, and a multiplexed backend's tracking is armed again.
        Raises BackendError."""
        self._forget_statements()
        await self.run_simple_command(commands.com_reset_connection())
        if init_query:
            await self.run_simple_command(commands.com_query(init_query))
        await self.learn_current_schema()
        if self.profile is not None and self.profile.is_multiplexed:
            await self.arm_session_tracking()

    def _forget_statements(self) -> None:
        # COM_RESET_CONNECTION and COM_CHANGE_USER close every prepared statement.
        if self.statements is not None:
            self.statements.clear()

    async def arm_session_tracking(self) -> None:
        """For a multiplexed backend, after login and every reset: the server reports every
        change of session state from now on, and the baseline is read."""
        await self.run_simple_command(commands.com_query(ARMING_STATEMENT))
        rows = await self.select_rows(BASELINE_QUERY)
        self.baseline = {name.decode().lower(): value.decode() for name, value in rows}
        self.state.variables = dict(self.baseline)

    async def learn_current_schema(self) -> str | None:
        """Asks the server which database this connection is on and remembers the answer.

        The schema is what the server says, never what the proxy last asked for: a client's
        USE, COM_INIT_DB or DROP DATABASE moves it without the proxy seeing a reliable sign.
        A name that is not UTF-8 is kept as one no login can name, so that the next client's
        database is selected again."""
        value = await self.select_value("SELECT DATABASE()")
        self.current_schema = None if value is None else value.decode("utf-8", "replace")
        return self.current_schema

    # -- life ----------------------------------------------------------------------------

    def mark_broken(self) -> None:
        self.is_broken = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Says COM_QUIT and closes (a polite close: the server logs no aborted connection)."""
        if self.transport is not None and not self.transport.is_closing():
            if not self.is_broken:
                self.transport.write(encode_packet(commands.com_quit(), 0)[0])
            self.transport.close()
        self.is_broken = True

    async def wait_closed(self, timeout_s: float) -> None:
        """Waits until the transport is gone, and aborts it after timeout_s: a TLS transport
        lives on after close() until the server's close_notify, and one left when the loop
        stops is a leak."""
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(self._is_lost.wait(), timeout_s)
        except TimeoutError:
            self.transport.abort()


def _text_value(reader: Reader) -> bytes:
    if reader.remaining() and reader.bytes_fixed(1) == b"\xfb":  # NULL in a text row
        return b""
    reader.pos -= 1
    return reader.bytes_lenenc()


class BackendCommandFailed(BackendError):
    """A command the proxy sent got an ERR; ``error`` is the server's packet."""

    def __init__(self, target: Target, error: ErrPacket) -> None:
        super().__init__(f"{target.name}: ERROR {error.error_code}")
        self.error = error
