"""CPU time of the processes a benchmark started, read around each run (psutil)."""

from __future__ import annotations

from contextlib import suppress

import psutil


def cpu_s(pid: int | None) -> float:
    """user+sys seconds of a process, of its live descendants, and of the children it has reaped.

    The reaped ones matter for postgres: a backend that exits during a run (a direct pgbench
    client's, when pgbench disconnects) leaves its time in the postmaster's children times.
    0 for no process."""
    if pid is None:
        return 0.0
    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


def cpu_by_name(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_s(pid) for name, pid in pids.items()}
