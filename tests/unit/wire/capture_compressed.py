"""Re-makes golden/compressed_session.hex: a real `mariadb --compress` session, as the wire saw it.

    .venv/bin/python tests/unit/wire/capture_compressed.py

It starts a throw-away mariadbd (capture_golden.run_server), then runs the `mariadb` client with
--compress through a small recording TCP relay, and writes every chunk after the login (the
first three: greeting, login, OK) as it crossed the wire, one line each:

    C <hex>      bytes the client sent
    S <hex>      bytes the server sent
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.unit.wire.capture_golden import GOLDEN_DIR, PASSWORD, USER, run_server

QUERIES = "SELECT 1; SELECT REPEAT('a', 100); SELECT seq, MD5(seq) FROM seq_1_to_2000"
LOGIN_CHUNKS = 3


def record(listener: socket.socket, server_port: int, chunks: list[tuple[str, bytes]]) -> None:
    client, _ = listener.accept()
    server = socket.create_connection(("127.0.0.1", server_port))
    lock = threading.Lock()

    def pump(source: socket.socket, sink: socket.socket, tag: str) -> None:
        while data := source.recv(1 << 20):
            with lock:
                chunks.append((tag, data))
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)

    threads = [
        threading.Thread(target=pump, args=(client, server, "C")),
        threading.Thread(target=pump, args=(server, client, "S")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tenantproxy-golden-") as tmp:
        server, port = run_server("/usr/sbin/mariadbd", Path(tmp))
        try:
            listener = socket.create_server(("127.0.0.1", 0))
            chunks: list[tuple[str, bytes]] = []
            recorder = threading.Thread(target=record, args=(listener, port, chunks))
            recorder.start()
            subprocess.run(
                [
                    *("mariadb", "--no-defaults", "--compress", "--host=127.0.0.1"),
                    f"--port={listener.getsockname()[1]}",
                    *(f"--user={USER}", "--database=g", f"--execute={QUERIES}"),
                ],
                env={**os.environ, "MYSQL_PWD": PASSWORD},
                check=True,
                capture_output=True,
            )
            recorder.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
    lines = [f"{tag} {data.hex()}" for tag, data in chunks[LOGIN_CHUNKS:]]
    (GOLDEN_DIR / "compressed_session.hex").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
