"""The client's side of the socket: writes, TLS (on memory buffers, see tls.py), closing."""

from __future__ import annotations

import asyncio
import ssl

from tenantproxy.proxy.tls import TlsChannel


class ClientChannel:
    """Bytes to and from one client, through TLS once it has started."""

    __slots__ = ("_tls", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._tls: TlsChannel | None = None

    @property
    def is_tls(self) -> bool:
        return self._tls is not None

    def peer_host(self) -> str:
        peer = self._transport.get_extra_info("peername")
        return str(peer[0]) if peer else "localhost"

    def start_tls(self, context: ssl.SSLContext, early: bytes) -> bytes:
        """Starts TLS; ``early`` are bytes already read after the SSLRequest (the ClientHello).
        Returns the plaintext they complete."""
        self._tls = TlsChannel(context)
        plaintext = self._tls.receive_encrypted(early) if early else b""
        self._flush_tls()
        return plaintext

    def decrypt(self, data: bytes) -> bytes:
        """Plaintext from bytes read off the socket (as they are without TLS).

        Raises ssl.SSLError on a broken TLS stream."""
        if self._tls is None:
            return data
        plaintext = self._tls.receive_encrypted(data)
        self._flush_tls()
        return plaintext

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        if self._tls is not None:
            data = self._tls.encrypt(data)
        transport.write(data)

    def pause_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        """Closes after what was written has been sent."""
        if not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def _flush_tls(self) -> None:
        assert self._tls is not None
        outgoing = self._tls.pending_encrypted()
        if outgoing:
            self._transport.write(outgoing)
