"""TLS towards clients, on memory buffers.

Why not ``loop.start_tls``: a MySQL client sends its SSLRequest and its TLS ClientHello back to
back, without waiting for an answer, so both can arrive in one read. ``start_tls`` cannot take
bytes that were already read; an ``ssl.SSLObject`` over ``MemoryBIO``s can, so no byte is lost.
"""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

# One TLS record's plaintext at most, so one read never asks for more than a record holds.
# SSLObject.read(n) allocates n bytes before it shrinks them: 256 KiB went to mmap and back
# (a 35-byte point select's record cost ~50 µs to read that way, ~6 µs with 16 KiB).
_READ_CHUNK_BYTES = 16 * 1024


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The proxy's TLS context for clients (TLS 1.2+, the server's cipher order)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """The proxy's TLS context towards databases: verifies them against ca_file when given."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if ca_file is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TlsChannel:
    """One TLS server session: ciphertext in, plaintext out, and the reverse."""

    __slots__ = ("_incoming", "_outgoing", "_tls", "is_closed_by_peer", "is_handshake_done")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.is_handshake_done = False
        # The peer sent close_notify: it will send nothing more, whatever TCP still allows.
        self.is_closed_by_peer = False

    def receive_encrypted(self, data: bytes) -> bytes:
        """Feeds bytes from the network; returns the plaintext they complete (maybe empty).

        Raises ssl.SSLError on a broken handshake or record.
        """
        self._incoming.write(data)
        if not self.is_handshake_done:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.is_handshake_done = True
        # Read while bytes are buffered: checking first spares the usual last read that would
        # end in SSLWantReadError (an exception per chunk on the hot path).
        chunks = []
        while self._incoming.pending or self._tls.pending():
            try:
                chunk = self._tls.read(_READ_CHUNK_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:  # how the ssl module reports close_notify (SSL_ERROR_ZERO_RETURN)
                self.is_closed_by_peer = True
                break
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def encrypt(self, plaintext: bytes) -> bytes:
        """Returns the records carrying plaintext.

        Raises ssl.SSLError when there is no TLS session to carry them (the handshake has not
        finished, or failed)."""
        view = memoryview(plaintext)
        while view:
            written = self._tls.write(view)
            view = view[written:]
        return self._outgoing.read()

    def close_notify(self) -> bytes:
        """The close_notify alert to send before closing; empty when TLS is not up."""
        if self.is_handshake_done:
            # unwrap() sends ours, then wants the peer's, which nobody waits for.
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
        return self._outgoing.read()

    def pending_encrypted(self) -> bytes:
        """Bytes the TLS engine wants sent now (handshake messages, alerts)."""
        return self._outgoing.read()
