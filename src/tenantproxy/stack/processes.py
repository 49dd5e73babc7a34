"""Detached processes the stack owns: start with a log file, wait for a port, stop by PID.

A process is ours when its PID is alive, it is not a zombie, it started when we recorded, and its
command line ends with the one we launched (a console script runs as ``python <script> ...``).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from tenantproxy.errors import StackError

_POLL_S = 0.05


@dataclass(frozen=True)
class ProcessRecord:
    """One started process, as recorded in state.json."""

    name: str
    pid: int
    cmdline: tuple[str, ...]
    port: int | None
    log_file: str
    create_time: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cmdline": list(self.cmdline)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(
            name=data["name"],
            pid=int(data["pid"]),
            cmdline=tuple(data["cmdline"]),
            port=data.get("port"),
            log_file=data["log_file"],
            create_time=float(data["create_time"]),
        )


# Listening ports come from below the kernel's ephemeral range, which outgoing connections draw
# from: a port that was free when picked could otherwise be a client socket's by the time the
# server binds it (seen with thousands of test connections open: "Address already in use").
_LISTEN_PORTS_FLOOR = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_PORT_DRAWS = random.SystemRandom()  # not the random module's state, which is the program's


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports free now, outside the ephemeral range; held open together so that none repeats."""
    ceiling = _ephemeral_floor()
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, _PORT_DRAWS.randrange(_LISTEN_PORTS_FLOOR, ceiling)))
            except OSError:  # taken: another draw
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ephemeral_floor() -> int:
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return max(low, _LISTEN_PORTS_FLOOR + 1000)


def start_detached(
    name: str,
    argv: Sequence[str],
    log_file: Path,
    port: int | None = None,
    pid_file: Path | None = None,
) -> ProcessRecord:
    """Starts ``argv`` in its own session, stdout and stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawnp(
            argv[0], list(argv), dict(os.environ), file_actions=actions, setsid=True
        )
    except OSError as exc:
        raise StackError(f"{name}: cannot start {argv[0]}: {exc.strerror}") from None
    create_time = _wait_for_exec(pid, argv)
    if pid_file is not None:
        pid_file.write_text(f"{pid}\n")
    return ProcessRecord(name, pid, tuple(argv), port, str(log_file), create_time)


def is_ours(record: ProcessRecord) -> bool:
    """True when the recorded PID still runs the command we started."""
    _reap(record.pid)
    try:
        process = psutil.Process(record.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if record.create_time and abs(process.create_time() - record.create_time) > 1.0:
            return False
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    tail = list(record.cmdline[1:])
    program = os.path.basename(record.cmdline[0])
    has_program = any(os.path.basename(part) == program for part in cmdline)
    return has_program and (not tail or cmdline[-len(tail) :] == tail)


def wait_for_port(record: ProcessRecord, timeout_s: float) -> None:
    """Returns once the process listens on ``record.port``; else StackError with its log's tail."""
    assert record.port is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_ours(record):
            raise StackError(f"{record.name} exited before listening\n{log_tail(record)}")
        # Another program may have taken the port since we picked it: the listener must be ours.
        if _is_listening(record.pid, record.port):
            return
        time.sleep(_POLL_S)
    raise StackError(
        f"{record.name} did not listen on port {record.port} within {timeout_s:.0f} s\n"
        f"{log_tail(record)}"
    )


def stop(record: ProcessRecord, timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; does nothing if the PID is no longer ours."""
    if not is_ours(record):
        return
    try:
        process = psutil.Process(record.pid)
        process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs([process], timeout=timeout_s)
        for survivor in alive:
            survivor.kill()
        psutil.wait_procs(alive, timeout=5.0)
    except psutil.NoSuchProcess:
        pass
    _reap(record.pid)


def log_tail(record: ProcessRecord | Path, lines: int = 15, extra: Path | None = None) -> str:
    """The last lines of a process's log (and of ``extra``), for error messages."""
    paths = [Path(record.log_file) if isinstance(record, ProcessRecord) else record]
    if extra is not None:
        paths.append(extra)
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            parts.append(f"--- last lines of {path} ---\n" + "\n".join(text))
    return "\n".join(parts) or "(no log output)"


def _wait_for_exec(pid: int, argv: Sequence[str], timeout_s: float = 5.0) -> float:
    """The child's start time, once it runs ``argv``: right after the spawn returns, /proc may
    still show an empty command line, which ``is_ours`` would take for "not ours"."""
    deadline = time.monotonic() + timeout_s
    try:
        process = psutil.Process(pid)
        create_time = process.create_time()
        while time.monotonic() < deadline and process.status() != psutil.STATUS_ZOMBIE:
            if process.cmdline()[-len(argv) + 1 :] == list(argv[1:]) or len(argv) == 1:
                break
            time.sleep(0.005)
    except psutil.NoSuchProcess:
        return 0.0
    return create_time


def _is_listening(pid: int, port: int) -> bool:
    # The process itself or a worker it started.
    try:
        parent = psutil.Process(pid)
        connections = []
        for process in [parent, *parent.children(recursive=True)]:
            connections += process.net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections
    )


def _reap(pid: int) -> None:
    # A child of this process that died stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
