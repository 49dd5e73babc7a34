"""Re-makes the golden server responses in tests/unit/wire/golden/ from a real MariaDB.

    .venv/bin/python tests/unit/wire/capture_golden.py [--mariadbd /usr/sbin/mariadbd]

It starts a throw-away mariadbd (own datadir, socket and free port in a temp dir), creates a
mysql_native_password user through the unix socket, then logs in over plain TCP with a small raw
client (below) twice: without and with CLIENT_DEPRECATE_EOF. For each case it sends commands and
records the server's bytes. A response is taken to be complete when the server has been quiet for
QUIET_S: that rule is independent of the tracker under test. The server is stopped at the end.

Transcript format (one file per case and capability set; see golden/README.md):

    # capabilities=0x...          negotiated flags
    C <hex>                       a payload the client sent (a command, or LOCAL INFILE data)
    S ends=N status=0x.... error=E <hex>
                                  the server's bytes after it; N responses end in them, at the
                                  last byte; status/error are read from the last packet ('-' when
                                  it is neither OK nor EOF / not ERR)
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"
QUIET_S = 0.4
PASSWORD = "golden-pw"
USER = "golden"

CLIENT_LONG_PASSWORD = 1 << 0
CLIENT_LONG_FLAG = 1 << 2
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_LOCAL_FILES = 1 << 7
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
CLIENT_SESSION_TRACK = 1 << 23
CLIENT_DEPRECATE_EOF = 1 << 24
MARIADB_CLIENT_PROGRESS = 1 << 32
MARIADB_CLIENT_STMT_BULK_OPERATIONS = 1 << 34
MARIADB_CLIENT_EXTENDED_METADATA = 1 << 35
MARIADB_CLIENT_CACHE_METADATA = 1 << 36
# As MariaDB's own clients ask: CLIENT_MYSQL (CLIENT_LONG_PASSWORD) clear, the extended bits set.
MARIADB_EXTENDED_CAPABILITIES = (
    MARIADB_CLIENT_PROGRESS
    | MARIADB_CLIENT_STMT_BULK_OPERATIONS
    | MARIADB_CLIENT_EXTENDED_METADATA
    | MARIADB_CLIENT_CACHE_METADATA
)
BASE_CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_LOCAL_FILES
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_SESSION_TRACK
)

SETUP_SQL = f"""
CREATE USER '{USER}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{PASSWORD}');
GRANT ALL ON *.* TO '{USER}'@'%';
CREATE DATABASE g;
CREATE TABLE g.t (id INT PRIMARY KEY, name VARCHAR(20), score DOUBLE);
INSERT INTO g.t VALUES (1, 'ann', 1.5), (2, 'bob', NULL), (3, 'cy', 3.25);
CREATE TABLE g.li (id INT, v VARCHAR(10));
CREATE TABLE g.b (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10), j JSON);
CREATE TABLE g.alter_me (id INT PRIMARY KEY, v VARCHAR(100));
USE g;
INSERT INTO g.alter_me SELECT seq, REPEAT('x', 100) FROM seq_1_to_20000;
DELIMITER //
CREATE PROCEDURE g.p() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END//
DELIMITER ;
"""


def native_scramble(password: str, salt: bytes) -> bytes:
    """mysql_native_password: SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))."""
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mask = hashlib.sha1(salt + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def frame(payload: bytes, sequence_id: int) -> bytes:
    out = b""
    while True:
        part, payload = payload[:0xFFFFFF], payload[0xFFFFFF:]
        out += len(part).to_bytes(3, "little") + bytes((sequence_id & 0xFF,)) + part
        sequence_id += 1
        if len(part) < 0xFFFFFF:
            return out


class RawClient:
    def __init__(self, port: int, capabilities: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buffer = b""
        self.capabilities = self._login(capabilities)

    def _read_packet(self) -> tuple[int, bytes]:
        while len(self.buffer) < 4 or len(self.buffer) < 4 + int.from_bytes(
            self.buffer[:3], "little"
        ):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        length = int.from_bytes(self.buffer[:3], "little")
        sequence_id, payload = self.buffer[3], self.buffer[4 : 4 + length]
        self.buffer = self.buffer[4 + length :]
        return sequence_id, payload

    def _login(self, capabilities: int) -> int:
        _, greeting = self._read_packet()
        pos = greeting.index(b"\x00", 1) + 1 + 4  # protocol version, server version, thread id
        salt = greeting[pos : pos + 8]
        pos += 9
        server_caps = int.from_bytes(greeting[pos : pos + 2], "little")
        pos += 5
        server_caps |= int.from_bytes(greeting[pos : pos + 2], "little") << 16
        pos += 2 + 1 + 10
        if not server_caps & CLIENT_LONG_PASSWORD:  # MariaDB: extended capabilities
            server_caps |= int.from_bytes(greeting[pos - 4 : pos], "little") << 32
        salt += greeting[pos : pos + 12]
        negotiated = capabilities & server_caps
        response = (
            (negotiated & 0xFFFFFFFF).to_bytes(4, "little")
            + (1 << 24).to_bytes(4, "little")
            + bytes((45,))
            + bytes(19)
            + (negotiated >> 32).to_bytes(4, "little")
            + USER.encode()
            + b"\x00"
            + bytes((20,))
            + native_scramble(PASSWORD, salt)
            + b"g\x00"
            + b"mysql_native_password\x00"
        )
        self.sock.sendall(frame(response, 1))
        sequence_id, reply = self._read_packet()
        if reply[:1] == b"\xfe":  # AuthSwitchRequest
            plugin_end = reply.index(b"\x00", 1)
            new_salt = reply[plugin_end + 1 : plugin_end + 21]
            self.sock.sendall(frame(native_scramble(PASSWORD, new_salt), sequence_id + 1))
            _, reply = self._read_packet()
        if reply[:1] != b"\x00":
            raise ConnectionError(f"login failed: {reply!r}")
        return negotiated

    def send(self, payload: bytes, sequence_id: int = 0) -> None:
        self.sock.sendall(frame(payload, sequence_id))

    def receive_until_quiet(self) -> bytes:
        data = self.buffer
        self.buffer = b""
        while select.select([self.sock], [], [], QUIET_S)[0]:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        return data


def packet_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 4 + int.from_bytes(data[pos : pos + 3], "little")
    return starts


def last_packet_summary(data: bytes, capabilities: int) -> tuple[str, str]:
    """(status, error) of the last logical packet of a block, for the transcript."""
    starts = packet_starts(data)
    last = starts[-1]
    # A logical packet starts after a fragment shorter than 0xFFFFFF.
    for start in reversed(starts[:-1]):
        if int.from_bytes(data[start : start + 3], "little") == 0xFFFFFF:
            last = start
        else:
            break
    length = int.from_bytes(data[last : last + 3], "little")
    payload = data[last + 4 : last + 4 + min(length, 64)]
    is_deprecate_eof = bool(capabilities & CLIENT_DEPRECATE_EOF)
    if payload[:1] == b"\xff":
        return "-", str(int.from_bytes(payload[1:3], "little"))
    is_eof = payload[:1] == b"\xfe" and length < 0xFFFFFF
    if is_eof and not is_deprecate_eof:
        return f"0x{int.from_bytes(payload[3:5], 'little'):04x}", "-"
    if payload[:1] == b"\x00" or is_eof:
        pos = 1
        for _ in range(2):  # affected rows, last insert id
            pos += {0xFC: 3, 0xFD: 4, 0xFE: 9}.get(payload[pos], 1)
        return f"0x{int.from_bytes(payload[pos : pos + 2], 'little'):04x}", "-"
    return "-", "-"


class Transcript:
    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.lines = [f"# capabilities=0x{client.capabilities:08x}"]

    def exchange(self, payload: bytes, ends: int = 1, sequence_id: int = 0) -> bytes:
        self.client.send(payload, sequence_id)
        self.lines.append(f"C {payload.hex()}")
        if ends < 0:  # no response expected (COM_STMT_CLOSE)
            return b""
        data = self.client.receive_until_quiet()
        status, error = last_packet_summary(data, self.client.capabilities) if ends else ("-", "-")
        if payload[:1] == b"\x16":  # COM_STMT_PREPARE_OK starts with 0x00 but is no OK packet
            status = "-"
        self.lines.append(f"S ends={ends} status={status} error={error} {data.hex()}")
        return data

    def save(self, path: Path) -> None:
        text = "\n".join(self.lines) + "\n"
        if path.suffix == ".xz":
            path.write_bytes(lzma.compress(text.encode(), preset=9))
        else:
            path.write_text(text)
        print(f"wrote {path.relative_to(GOLDEN_DIR.parent)} ({path.stat().st_size} bytes)")


def execute_payload(statement_id: int, flags: int = 0, bigint_param: int | None = None) -> bytes:
    """COM_STMT_EXECUTE with no or one BIGINT parameter."""
    payload = bytes((0x17,)) + statement_id.to_bytes(4, "little") + bytes((flags,))
    payload += (1).to_bytes(4, "little")  # iteration count
    if bigint_param is not None:
        payload += b"\x00" + b"\x01" + b"\x08\x00" + bigint_param.to_bytes(8, "little")
    return payload


def prepare(transcript: Transcript, sql: bytes) -> int:
    response = transcript.exchange(b"\x16" + sql)
    return int.from_bytes(response[5:9], "little")


def capture_all(client: RawClient, suffix: str) -> None:
    def simple(name: str, *payloads: bytes) -> None:
        transcript = Transcript(client)
        for payload in payloads:
            transcript.exchange(payload)
        transcript.save(GOLDEN_DIR / f"{name}.{suffix}.txt")

    simple("text_result", b"\x03SELECT id, name, score FROM t ORDER BY id")
    simple("empty_result", b"\x03SELECT id FROM t WHERE id < 0")
    simple("ok_with_session_state", b"\x03SET @a = 1")
    simple("multi_statement", b"\x03SELECT 1; SELECT 2, 3; DO 1")
    simple("call_procedure", b"\x03CALL p()")
    simple("error", b"\x03SELECT * FROM missing_table")
    simple("error_after_result", b"\x03SELECT 1; SELECT * FROM missing_table; SELECT 2")
    simple("field_list", b"\x04t\x00")
    simple("statistics", b"\x09")
    simple("utility_commands", b"\x0e", b"\x02g", b"\x1b\x00\x00", b"\x1f")
    simple("prepare_error", b"\x16SELEC 1")

    transcript = Transcript(client)
    statement_id = prepare(transcript, b"SELECT id, name, score FROM t WHERE id > ?")
    transcript.exchange(execute_payload(statement_id, bigint_param=0))
    transcript.exchange(b"\x19" + statement_id.to_bytes(4, "little"), ends=-1)
    transcript.save(GOLDEN_DIR / f"prepare_execute.{suffix}.txt")

    transcript = Transcript(client)
    statement_id = prepare(transcript, b"SELECT id, name FROM t ORDER BY id")
    transcript.exchange(execute_payload(statement_id, flags=0x01))
    fetch = b"\x1c" + statement_id.to_bytes(4, "little") + (2).to_bytes(4, "little")
    transcript.exchange(fetch)
    transcript.exchange(fetch)
    transcript.exchange(b"\x19" + statement_id.to_bytes(4, "little"), ends=-1)
    transcript.save(GOLDEN_DIR / f"cursor_fetch.{suffix}.txt")

    transcript = Transcript(client)
    statement_id = prepare(transcript, b"CALL p()")
    transcript.exchange(execute_payload(statement_id))
    transcript.exchange(b"\x19" + statement_id.to_bytes(4, "little"), ends=-1)
    transcript.save(GOLDEN_DIR / f"prepared_call.{suffix}.txt")

    transcript = Transcript(client)
    transcript.exchange(
        b"\x03LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE li FIELDS TERMINATED BY ','", ends=0
    )
    file_data = b"10,a\n11,b\n"
    client.send(file_data, 2)
    transcript.lines.append(f"C {file_data.hex()}")
    transcript.exchange(b"", sequence_id=3)
    transcript.save(GOLDEN_DIR / f"local_infile.{suffix}.txt")

    simple_big = Transcript(client)
    simple_big.exchange(b"\x03SELECT REPEAT('x', 17000000) AS big, 1 AS small")
    simple_big.save(GOLDEN_DIR / f"big_row.{suffix}.txt.xz")


def bulk_execute_payload(statement_id: int, values: list[bytes]) -> bytes:
    """COM_STMT_BULK_EXECUTE with SEND_TYPES_TO_SERVER, one string parameter per row."""
    payload = b"\xfa" + statement_id.to_bytes(4, "little") + (128).to_bytes(2, "little")
    payload += b"\xfe\x00"  # MYSQL_TYPE_STRING, signed
    for value in values:
        payload += b"\x00" + bytes((len(value),)) + value  # indicator NONE, lenenc string
    return payload


def capture_mariadb_extended(client: RawClient, suffix: str) -> None:
    """MariaDB's extended capabilities: cached and extended metadata, bulk, progress."""

    def save(transcript: Transcript, name: str) -> None:
        transcript.save(GOLDEN_DIR / f"mariadb_{name}.{suffix}.txt")

    transcript = Transcript(client)
    transcript.exchange(b"\x03SELECT id, name, score FROM t ORDER BY id")
    transcript.exchange(b"\x03SELECT j FROM b")  # JSON: extended metadata says so
    save(transcript, "text_result")

    transcript = Transcript(client)
    statement_id = prepare(transcript, b"SELECT id, name, score FROM t WHERE id > ?")
    transcript.exchange(execute_payload(statement_id, bigint_param=0))
    transcript.exchange(execute_payload(statement_id, bigint_param=1))  # metadata skipped
    transcript.exchange(b"\x19" + statement_id.to_bytes(4, "little"), ends=-1)
    save(transcript, "cached_metadata")

    for name, sql in (
        ("bulk_insert", b"INSERT INTO b (v) VALUES (?)"),
        ("bulk_insert_returning", b"INSERT INTO b (v) VALUES (?) RETURNING id, v"),
    ):
        transcript = Transcript(client)
        statement_id = prepare(transcript, sql)
        transcript.exchange(bulk_execute_payload(statement_id, [b"a", b"bb", b"ccc"]))
        transcript.exchange(b"\x19" + statement_id.to_bytes(4, "little"), ends=-1)
        save(transcript, name)

    transcript = Transcript(client)
    transcript.exchange(b"\x03SET progress_report_time = 1")
    transcript.exchange(b"\x03ALTER TABLE alter_me FORCE, ALGORITHM=COPY")
    save(transcript, "progress_report")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_server(mariadbd: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    datadir, sock = workdir / "data", workdir / "sock"
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={datadir}"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            mariadbd,
            "--no-defaults",
            "--user=root",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--pid-file={workdir / 'pid'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--local-infile=1",
            "--max-allowed-packet=64M",
            f"--log-error={workdir / 'error.log'}",
        ]
    )
    deadline = time.monotonic() + 30
    while not sock.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((workdir / "error.log").read_text())
        time.sleep(0.1)
    client = ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot"]
    for _ in range(100):
        if subprocess.run([*client, "-e", "SELECT 1"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    subprocess.run(client, input=SETUP_SQL.encode(), check=True)
    return server, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mariadbd", default="/usr/sbin/mariadbd")
    args = parser.parse_args()
    GOLDEN_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tenantproxy-golden-") as tmp:
        server, port = run_server(args.mariadbd, Path(tmp))
        try:
            for suffix, extra in (("eof", 0), ("deprecate_eof", CLIENT_DEPRECATE_EOF)):
                client = RawClient(port, BASE_CAPABILITIES | extra)
                if bool(client.capabilities & CLIENT_DEPRECATE_EOF) != bool(extra):
                    raise RuntimeError("server did not negotiate CLIENT_DEPRECATE_EOF as asked")
                capture_all(client, suffix)
                client.sock.close()
                mariadb = BASE_CAPABILITIES & ~CLIENT_LONG_PASSWORD | MARIADB_EXTENDED_CAPABILITIES
                client = RawClient(port, mariadb | extra)
                if client.capabilities & MARIADB_EXTENDED_CAPABILITIES != (
                    MARIADB_EXTENDED_CAPABILITIES
                ):
                    raise RuntimeError("server did not negotiate MariaDB's extended capabilities")
                capture_mariadb_extended(client, suffix)
                client.sock.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
