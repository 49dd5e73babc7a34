"""Capture golden payloads from a real MariaDB, and check ClientConnection logs in to it.

Not part of the unit suite (it needs a server and sockets). Usage, against a throw-away server
with a user ``wc``/``wcpass`` granted on database ``wcdb`` (see golden/README.md)::

    .venv/bin/python tests/unit/wire_connections/capture_golden.py capture PORT
    .venv/bin/python tests/unit/wire_connections/capture_golden.py check PORT

``capture`` speaks the protocol with nothing but the standard library (so the golden files do
not depend on the code they test) and writes packet payloads, headers stripped, to golden/.
"""

from __future__ import annotations

import hashlib
import socket
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
USER, PASSWORD, DATABASE, OTHER_DATABASE = "wc", b"wcpass", "wcdb", "otherdb"
# CLIENT_LONG_PASSWORD | FOUND_ROWS | LONG_FLAG | CONNECT_WITH_DB | PROTOCOL_41 | TRANSACTIONS
# | SECURE_CONNECTION | MULTI_STATEMENTS | MULTI_RESULTS | PLUGIN_AUTH
CAPTURE_CAPABILITIES = 0x1 | 0x2 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x10000 | 0x20000 | 0x80000
CLIENT_SESSION_TRACK = 0x800000


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    header = _read_exactly(sock, 4)
    length = int.from_bytes(header[:3], "little")
    return header[3], _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


def _native(password: bytes, nonce: bytes) -> bytes:
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mask = hashlib.sha1(nonce + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def _nonce(handshake: bytes) -> bytes:
    rest = handshake[1:]
    rest = rest[rest.index(b"\x00") + 1 :]  # server version
    part1 = rest[4:12]
    part2 = rest[4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10 :][:12]
    return part1 + part2


def _login(
    port: int, password: bytes, database: str, caps: int = CAPTURE_CAPABILITIES
) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        _, handshake = _read_packet(sock)
        response = (
            caps.to_bytes(4, "little")
            + (16 * 1024 * 1024).to_bytes(4, "little")
            + bytes((45,))
            + bytes(23)
            + USER.encode()
            + b"\x00"
        )
        scramble = _native(password, _nonce(handshake))
        response += bytes((len(scramble),)) + scramble
        response += database.encode() + b"\x00" + b"mysql_native_password\x00"
        sock.sendall(len(response).to_bytes(3, "little") + b"\x01" + response)
        _, reply = _read_packet(sock)
        return handshake, reply


def capture(port: int) -> None:
    GOLDEN.mkdir(exist_ok=True)
    handshake, ok = _login(port, PASSWORD, DATABASE)
    _, err_1045 = _login(port, b"wrong-password", DATABASE)
    _, err_1044 = _login(port, PASSWORD, OTHER_DATABASE)
    _, ok_tracked = _login(port, PASSWORD, DATABASE, CAPTURE_CAPABILITIES | CLIENT_SESSION_TRACK)
    assert ok[0] == 0x00 and err_1045[0] == 0xFF and err_1044[0] == 0xFF
    for name, payload in [
        ("handshake_v10.bin", handshake),
        ("ok_after_login.bin", ok),
        ("err_1045.bin", err_1045),
        ("err_1044.bin", err_1044),
        ("ok_after_login_session_track.bin", ok_tracked),
    ]:
        (GOLDEN / name).write_bytes(payload)
        print(f"{name}: {len(payload)} bytes")


def check(port: int) -> None:
    """Log in with tenantproxy's ClientConnection, run SELECT 1, and refuse a bad password."""
    from tenantproxy.wire.mysql.client_connection import ClientConnection
    from tenantproxy.wire.mysql.constants import CapabilityFlags as F
    from tenantproxy.wire.mysql.events import NEED_DATA, Authenticated, LoginFailed

    caps = F.CLIENT_LONG_PASSWORD | F.CLIENT_TRANSACTIONS | F.CLIENT_MULTI_RESULTS
    caps |= F.CLIENT_SESSION_TRACK | F.CLIENT_DEPRECATE_EOF | F.CLIENT_CONNECT_ATTRS
    for password, expected in [(PASSWORD, Authenticated), (b"nope", LoginFailed)]:
        conn = ClientConnection(
            username=USER,
            password=password,
            database=DATABASE,
            capabilities=caps,
            connect_attrs={"program_name": "tenantproxy-check"},
        )
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            event = _drive(conn, sock, NEED_DATA)
            assert isinstance(event, expected), event
            print(event)
            if isinstance(event, Authenticated):
                sock.sendall(conn.send_command(b"\x03SELECT 1"))
                for _ in range(3):  # column count, column definition, row (+ final OK)
                    print(" ", _drive(conn, sock, NEED_DATA))


def _drive(conn: object, sock: socket.socket, need_data: object) -> object:
    while True:
        event = conn.next_event()  # type: ignore[attr-defined]
        sock.sendall(conn.data_to_send())  # type: ignore[attr-defined]
        if event is not need_data:
            return event
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        conn.receive_data(data)  # type: ignore[attr-defined]


if __name__ == "__main__":
    {"capture": capture, "check": check}[sys.argv[1]](int(sys.argv[2]))
