"""The client's side of the socket: writes, TLS (on memory buffers, see tls.py), protocol
compression (CLIENT_COMPRESS, wire/mysql/compression.py), closing.

Layering follows MariaDB's (net_serv.cc over vio): compressed packets travel inside TLS, so a
read is decrypted then decompressed and a write compressed then encrypted. Compression starts
only after the OK that ends the login, which is sent plain (MySQL "Compression" pages).

``PendingBytes`` holds the client's plaintext that no relay takes yet (during the login, or
while the proxy answers a command itself)."""

from __future__ import annotations

import asyncio
import ssl

from tenantproxy.observability.metrics import Metrics
from tenantproxy.proxy.tls import TlsChannel
from tenantproxy.wire.mysql.compression import CompressedStream

# A client that does not read what the proxy sent before closing loses it after this long; the
# socket is not held for it.
_FLUSH_BEFORE_CLOSE_S = 10.0


class ClientChannel:
    """Bytes to and from one client, through TLS once it has started."""

    __slots__ = ("_compression", "_metrics", "_tls", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._tls: TlsChannel | None = None
        self._compression: CompressedStream | None = None
        self._metrics: Metrics | None = None

    @property
    def is_tls(self) -> bool:
        return self._tls is not None

    @property
    def is_tls_handshaking(self) -> bool:
        """TLS has started and its handshake has not finished: nothing can be written."""
        return self._tls is not None and not self._tls.is_handshake_done

    @property
    def is_closed_by_peer(self) -> bool:
        """The client sent TLS close_notify: it has said its last word (a TCP FIN shows as
        connection_lost instead)."""
        return self._tls is not None and self._tls.is_closed_by_peer

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

    @property
    def is_compressed(self) -> bool:
        return self._compression is not None

    def start_compression(self, metrics: Metrics) -> None:
        """From now on both ways go in compressed packets; ``metrics`` counts their bytes."""
        self._compression = CompressedStream()
        self._metrics = metrics

    def decrypt(self, data: bytes) -> bytes:
        """The packet stream from bytes read off the socket (as they are without TLS and
        compression).

        Raises ssl.SSLError on a broken TLS stream, ProtocolError on a broken compressed one."""
        if self._tls is not None:
            data = self._tls.receive_encrypted(data)
            self._flush_tls()
        if self._compression is not None and data:
            data = self._decompress(data)
        return data

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        if self._compression is not None:
            data = self._compress(data)
        if self._tls is not None:
            try:
                data = self._tls.encrypt(data)
            except ssl.SSLError:  # no TLS session to carry it: nothing more can be said
                transport.abort()
                return
        transport.write(data)

    def _decompress(self, data: bytes) -> bytes:
        stream = self._compression
        assert stream is not None and self._metrics is not None
        before = stream.compressed_bytes_received
        packets = stream.decompress(data)
        # Counted as compressed packets complete, so both counters cover the same packets.
        self._metrics.count("ClientBytesCompressed", stream.compressed_bytes_received - before)
        self._metrics.count("ClientBytesUncompressed", len(packets))
        return packets

    def _compress(self, data: bytes) -> bytes:
        assert self._compression is not None and self._metrics is not None
        framed = self._compression.compress(data)
        self._metrics.count("ClientBytesCompressed", len(framed))
        self._metrics.count("ClientBytesUncompressed", len(data))
        return framed

    def pause_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        """Closes after what was written has been sent (with TLS, our close_notify last), and
        aborts if the client has not read it all within _FLUSH_BEFORE_CLOSE_S."""
        transport = self._transport
        if transport.is_closing():
            return
        if self._tls is not None:
            transport.write(self._tls.close_notify())
        transport.close()
        if transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(_FLUSH_BEFORE_CLOSE_S, transport.abort)

    def abort(self) -> None:
        self._transport.abort()

    def _flush_tls(self) -> None:
        assert self._tls is not None
        outgoing = self._tls.pending_encrypted()
        if outgoing:
            self._transport.write(outgoing)


class PendingBytes:
    """The client's plaintext that no relay takes (during the login, or while the proxy
    answers a command), and the wake-up of the step that waits for more of it."""

    __slots__ = ("_arrived", "data")

    def __init__(self) -> None:
        self.data = b""
        self._arrived = asyncio.Event()

    def add(self, data: bytes) -> None:
        self.data += data
        self._arrived.set()

    def take(self) -> bytes:
        data, self.data = self.data, b""
        return data

    def wake(self) -> None:
        """The session ended: a step waiting for the client's bytes sees it at once."""
        self._arrived.set()

    async def wait(self, timeout_s: float) -> None:
        """Until more bytes came (or the session ended); TimeoutError after ``timeout_s``."""
        self._arrived.clear()
        await asyncio.wait_for(self._arrived.wait(), timeout_s)
