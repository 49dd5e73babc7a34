"""A small asyncio MySQL client made of our own wire layer, cheap enough to run 1,000 at once.

A driver like PyMySQL spends ~750 µs of CPU per connect+query+close (REFERENCE.md); this one
spends a fraction, so a storm test measures the proxy rather than the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from tenantproxy.wire.mysql import commands
from tenantproxy.wire.mysql.client_connection import ClientConnection
from tenantproxy.wire.mysql.constants import CapabilityFlags
from tenantproxy.wire.mysql.events import NEED_DATA, Authenticated, LoginFailed, StartTls
from tenantproxy.wire.mysql.response_tracker import ResponseTracker
from tenantproxy.wire.mysql.responses import ErrPacket

CAPABILITIES = (
    CapabilityFlags.CLIENT_LONG_PASSWORD
    | CapabilityFlags.CLIENT_PROTOCOL_41
    | CapabilityFlags.CLIENT_TRANSACTIONS
    | CapabilityFlags.CLIENT_MULTI_RESULTS
    | CapabilityFlags.CLIENT_DEPRECATE_EOF
)


class QueryFailed(Exception):
    def __init__(self, error: ErrPacket) -> None:
        super().__init__(f"ERROR {error.error_code} ({error.sql_state}): {error.error_message}")
        self.error = error


class AsyncMysqlClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._tracker: ResponseTracker | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str | None,
        tls: ssl.SSLContext | None,
    ) -> AsyncMysqlClient:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        try:
            await client._log_in(user, password, database, tls)
        except BaseException:
            # A refused login (ERROR 1040 before the greeting, a wrong password) closes its
            # socket here, or the transport is left to the garbage collector's ResourceWarning.
            await client._close_socket()
            raise
        return client

    async def _log_in(
        self, user: str, password: str, database: str | None, tls: ssl.SSLContext | None
    ) -> None:
        login = ClientConnection(
            username=user,
            password=password.encode(),
            database=database,
            capabilities=CAPABILITIES,
            use_tls=tls is not None,
        )
        while True:
            event = login.next_event()
            self._writer.write(login.data_to_send())
            if event is NEED_DATA:
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection during login")
                login.receive_data(data)
            elif isinstance(event, StartTls):
                await self._writer.drain()
                await self._writer.start_tls(tls)  # type: ignore[arg-type]
                login.tls_started()
            elif isinstance(event, Authenticated):
                self._tracker = ResponseTracker(event.capability_flags)
                return
            elif isinstance(event, LoginFailed):
                raise QueryFailed(event.error)

    async def query(self, sql: str) -> bytes:
        """Runs one statement; returns the raw response bytes; raises QueryFailed on an ERR."""
        assert self._tracker is not None
        payload = commands.com_query(sql)
        self._tracker.command_sent(payload[:16])
        self._writer.write(len(payload).to_bytes(3, "little") + b"\x00" + payload)
        chunks = []
        while True:
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the connection during a query")
            chunks.append(data)
            if self._tracker.server_data(data):
                break
        response = b"".join(chunks)
        if response[4:5] == b"\xff":
            raise QueryFailed(ErrPacket.decode(response[4:]))
        return response

    async def close(self) -> None:
        self._writer.write(b"\x01\x00\x00\x00" + commands.com_quit())
        await self._close_socket()

    async def _close_socket(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self._writer.wait_closed()
