"""``stack up`` waits for each mariadbd's unix socket, not its TCP port alone.

mariadbd listens on TCP before it opens its socket, and the admin account is created over the
socket: under load ``create_admin`` once met no socket (ERROR 2002). The stand-in below is a real
process that does what mariadbd does in that window: TCP port open, socket not yet, then a
greeting on the socket once told to.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tenantproxy.errors import StackError
from tenantproxy.stack import mariadb
from tenantproxy.stack.mariadb import InstanceSpec
from tenantproxy.stack.processes import free_ports, start_detached, stop

pytestmark = pytest.mark.integration

# Listens on TCP at once; opens the unix socket only when the trigger file exists, then greets
# every connection with the start of a HandshakeV10 (protocol version 10) and closes it.
STAND_IN = """
import os, socket, sys, time
port, socket_path, trigger = int(sys.argv[1]), sys.argv[2], sys.argv[3]
tcp = socket.create_server(("127.0.0.1", port))
while not os.path.exists(trigger):
    time.sleep(0.01)
unix = socket.socket(socket.AF_UNIX)
unix.bind(socket_path)
unix.listen()
payload = b"\\x0a5.5.5-10.11.0-MariaDB\\x00"
while True:
    client, _ = unix.accept()
    client.sendall(len(payload).to_bytes(3, "little") + b"\\x00" + payload)
    client.close()
"""


def test_wait_ready_refuses_while_only_the_tcp_port_listens_then_returns_on_a_greeting(
    tmp_path: Path,
):
    (port,) = free_ports(1)
    spec = InstanceSpec("readiness", "stand-in", "writer", 1, port, tmp_path / "stand-in")
    spec.base_dir.mkdir()
    trigger = tmp_path / "open-the-socket"
    argv = [sys.executable, "-c", STAND_IN, str(port), str(spec.socket.absolute()), str(trigger)]
    record = start_detached(spec.name, argv, spec.log_file, port=port)
    try:
        with pytest.raises(StackError, match="does not answer on its socket"):
            mariadb.wait_ready(spec, record, timeout_s=1.0)
        trigger.touch()
        mariadb.wait_ready(spec, record, timeout_s=30.0)
    finally:
        stop(record, timeout_s=5.0)
