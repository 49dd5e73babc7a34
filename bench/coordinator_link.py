"""What one coordinator call costs (proxy/link.py, workers = N): a worker asks, the coordinator
answers, over a Unix socket pair between two processes, as ``admit_client`` does per login.

Run: .venv/bin/python bench/coordinator_link.py
Prints µs per round trip one call at a time, µs per call with many in flight (their lines
coalesced into one write per loop turn), and the coordinator's CPU µs per call (getrusage of
its process, so the machine's other load inflates it less than wall time). No assertion.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import time

import uvloop

from tenantproxy.proxy.link import Link

CALLS = 20_000
LOG = logging.getLogger("bench.coordinator_link")


def coordinator(sock: socket.socket, report: socket.socket) -> None:
    """Answers admit_client until the worker closes; sends its CPU seconds back."""

    async def serve() -> None:
        admitted: dict[str, int] = {}

        def admit_client(user: str) -> bool:
            admitted[user] = admitted.get(user, 0) + 1
            return True

        link = await Link.over(sock, {"admit_client": admit_client}, LOG)
        await link.run()

    uvloop.run(serve())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report.sendall(f"{usage.ru_utime + usage.ru_stime}".encode())


async def worker(sock: socket.socket) -> tuple[float, float]:
    link = await Link.over(sock, {}, LOG)
    reading = asyncio.create_task(link.run())
    half = CALLS // 2
    started = time.perf_counter()
    for i in range(half):
        await link.call("admit_client", user=f"user{i % 100}")
    one_at_a_time_us = (time.perf_counter() - started) / half * 1e6
    started = time.perf_counter()
    await asyncio.gather(*(link.call("admit_client", user=f"user{i % 100}") for i in range(half)))
    in_flight_us = (time.perf_counter() - started) / half * 1e6
    link.close()
    await reading
    return one_at_a_time_us, in_flight_us


def main() -> None:
    ours, theirs = socket.socketpair()
    report_in, report_out = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        report_in.close()
        coordinator(theirs, report_out)
        os._exit(0)
    theirs.close()
    report_out.close()
    one_at_a_time_us, in_flight_us = uvloop.run(worker(ours))
    cpu_s = float(report_in.recv(64).decode())
    os.waitpid(pid, 0)
    print(f"round trip, one call at a time: {one_at_a_time_us:.1f} µs")
    print(f"per call, {CALLS // 2} in flight:    {in_flight_us:.1f} µs")
    print(f"coordinator CPU per call:       {cpu_s * 1e6 / CALLS:.1f} µs")


if __name__ == "__main__":
    main()
