"""Re-makes golden/session_track.txt: OK packets with and without session tracking, MariaDB 10.11.

    PYTHONPATH=. .venv/bin/python tests/unit/wire/capture_session_track.py

Starts a throw-away mariadbd (capture_golden.run_server) and logs in twice with
CLIENT_DEPRECATE_EOF: "tracked" with CLIENT_SESSION_TRACK, its tracking armed as the proxy arms
its backends (schema, state change, all system variables, transaction characteristics), and
"plain" without it. Both run the same statements, in step, so each answer can be compared
(the plain client's XA statements name XID 'y' instead of 'x').

Format: `# tracked=0x... plain=0x...` (negotiated capabilities), then per statement
`Q <hex>` (the command payload), `T <hex>` and `P <hex>` (what the server sent each client).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.unit.wire.capture_golden import (
    BASE_CAPABILITIES,
    CLIENT_DEPRECATE_EOF,
    CLIENT_SESSION_TRACK,
    GOLDEN_DIR,
    RawClient,
    run_server,
)

ARM = (
    b"SET session_track_schema = ON, session_track_state_change = ON,"
    b" session_track_system_variables = '*',"
    b" session_track_transaction_info = 'CHARACTERISTICS'"
)
STATEMENTS = (
    b"\x03USE mysql",
    b"\x02g",  # COM_INIT_DB
    b"\x03SET time_zone = '+01:00'",
    b"\x03SET NAMES latin1",
    b"\x03SET sql_mode = 'ANSI', wait_timeout = 1234",
    b"\x03SET autocommit = 0",
    b"\x03INSERT INTO li VALUES (1, 'a'), (2, 'b')",
    b"\x03COMMIT",
    b"\x03SET autocommit = 1",
    b"\x03UPDATE t SET score = score WHERE id = 1",
    b"\x03SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    b"\x03START TRANSACTION READ ONLY",
    b"\x03COMMIT",
    b"\x03SET @u = 1",
    b"\x03SELECT @@session_track_user_variables",
    b"\x03CREATE TEMPORARY TABLE tt (a INT)",
    b"\x03DROP TEMPORARY TABLE tt",
    b"\x03SELECT GET_LOCK('l', 0)",
    b"\x03SELECT RELEASE_LOCK('l')",
    b"\x03PREPARE s FROM 'SELECT 1'",
    b"\x03DEALLOCATE PREPARE s",
    b"\x03LOCK TABLES t READ",
    b"\x03UNLOCK TABLES",
    b"\x03XA START 'x'",
    b"\x03XA END 'x'",
    b"\x03XA ROLLBACK 'x'",
    b"\x03SET @@session.auto_increment_increment = 5",
    b"\x03SELECT 1",
)


def exchange(client: RawClient, payload: bytes) -> bytes:
    client.send(payload)
    return client.receive_until_quiet()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tenantproxy-golden-") as tmp:
        server, port = run_server("/usr/sbin/mariadbd", Path(tmp))
        try:
            caps = BASE_CAPABILITIES | CLIENT_DEPRECATE_EOF
            tracked = RawClient(port, caps)
            plain = RawClient(port, caps & ~CLIENT_SESSION_TRACK)
            exchange(tracked, b"\x03" + ARM)
            lines = [f"# tracked=0x{tracked.capabilities:08x} plain=0x{plain.capabilities:08x}"]
            for payload in STATEMENTS:
                lines.append(f"Q {payload.hex()}")
                lines.append(f"T {exchange(tracked, payload).hex()}")
                # An XA id is server-wide: the plain client takes its own.
                plain_payload = payload.replace(b"'x'", b"'y'")
                lines.append(f"P {exchange(plain, plain_payload).hex()}")
            path = GOLDEN_DIR / "session_track.txt"
            path.write_text("\n".join(lines) + "\n")
            print(f"wrote {path}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
