"""TLS on memory buffers: no byte is lost when the ClientHello arrives with the SSLRequest."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tenantproxy.proxy.tls import TlsChannel, server_context
from tenantproxy.stack.certificates import create_certificates


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory):
    return create_certificates(tmp_path_factory.mktemp("tls"))


def client_side(ca_file: Path) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    context = ssl.create_default_context(cafile=str(ca_file))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return context.wrap_bio(incoming, outgoing, server_hostname="localhost"), incoming, outgoing


def handshake(channel: TlsChannel, client: ssl.SSLObject, c_in, c_out, first: bytes = b"") -> bytes:
    """Runs the handshake; ``first`` is sent in the same chunk as the ClientHello."""
    plaintext = b""
    to_server = first
    for _ in range(10):
        try:
            client.do_handshake()
            is_done = True
        except ssl.SSLWantReadError:
            is_done = False
        to_server += c_out.read()
        if to_server:
            plaintext += channel.receive_encrypted(to_server)
            to_server = b""
        c_in.write(channel.pending_encrypted())
        if is_done and channel.is_handshake_done:
            return plaintext
    raise AssertionError("handshake did not finish")


def test_plaintext_crosses_both_ways_after_the_handshake(certificates):
    channel = TlsChannel(server_context(certificates.server_cert, certificates.server_key))
    client, c_in, c_out = client_side(certificates.ca_cert)
    handshake(channel, client, c_in, c_out)
    client.write(b"\x05\x00\x00\x00\x03SELECT")
    assert channel.receive_encrypted(c_out.read()) == b"\x05\x00\x00\x00\x03SELECT"
    c_in.write(channel.encrypt(b"x" * 100_000))
    received = b""
    while len(received) < 100_000:
        received += client.read(65536)
    assert received == b"x" * 100_000


def test_bytes_sent_with_the_first_record_are_kept(certificates):
    channel = TlsChannel(server_context(certificates.server_cert, certificates.server_key))
    client, c_in, c_out = client_side(certificates.ca_cert)
    handshake(channel, client, c_in, c_out)
    client.write(b"first")
    client.write(b"second")
    assert channel.receive_encrypted(c_out.read()) == b"firstsecond"


def test_garbage_instead_of_a_client_hello_raises_an_ssl_error(certificates):
    channel = TlsChannel(server_context(certificates.server_cert, certificates.server_key))
    with pytest.raises(ssl.SSLError):
        channel.receive_encrypted(b"GET / HTTP/1.1\r\n\r\n" * 4)


def test_close_notify_after_data_is_seen_and_the_data_kept(certificates):
    channel = TlsChannel(server_context(certificates.server_cert, certificates.server_key))
    client, c_in, c_out = client_side(certificates.ca_cert)
    handshake(channel, client, c_in, c_out)
    client.write(b"last words")
    with pytest.raises(ssl.SSLWantReadError):  # it sends close_notify, then waits for ours
        client.unwrap()
    assert channel.receive_encrypted(c_out.read()) == b"last words"
    assert channel.is_closed_by_peer
    c_in.write(channel.close_notify())
    client.unwrap()  # our close_notify completes the client's shutdown


def test_nothing_can_be_encrypted_before_the_handshake_finishes(certificates):
    channel = TlsChannel(server_context(certificates.server_cert, certificates.server_key))
    with pytest.raises(ssl.SSLError):
        channel.encrypt(b"\x07\x00\x00\x02\xff\x13\x04Bad handshake")
    assert channel.close_notify() == b""
