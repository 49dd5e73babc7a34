"""The Locust processes of one run: their argv (``locust_plan``), how long they may live
(``deadline_s``), and starting, waiting for and stopping them by PID.

Locust runs as its own processes (it patches the interpreter with gevent): headless by default,
its web UI with ``web``, its master/worker mode with ``workers``. A process that outlives its
deadline is stopped: SIGTERM first (Locust writes its reports on it), then SIGKILL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tenantproxy.loadtest.options import LoadTestOptions

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
HOST = "127.0.0.1"
LOCUST_CSV_PREFIX = "locust"
LOCUST_HTML = "locust.html"
# Past the run time: spawning, workers connecting, users finishing, reports being written.
GRACE_S = 60.0
EXPECT_WORKERS_MAX_WAIT_S = 60
WEB_AUTOQUIT_S = 10
_STOP_WAIT_S = 10.0


@dataclass(frozen=True)
class LocustPlan:
    """The Locust processes of one run: argv of each, and where its web UI will be."""

    master: list[str]
    workers: list[list[str]] = field(default_factory=list)
    web_address: str | None = None


def locust_plan(
    options: LoadTestOptions, host_url: str, run_dir: Path, ports: Sequence[int]
) -> LocustPlan:
    """The argv of every Locust process; ``ports`` are free ports: web UI, then master."""
    web_port, master_port = ports[0], ports[1]
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", host_url]
    master = [
        *base,
        "--users", str(options.users),
        "--spawn-rate", f"{options.spawn_rate:g}",
        "--run-time", f"{options.run_time_s}s",
        "--stop-timeout", str(options.stop_timeout_s),
        "--csv", str(run_dir / LOCUST_CSV_PREFIX),
        # Two request names: a row each per second, cheap, and the per-stage client view.
        "--csv-full-history",
        "--html", str(run_dir / LOCUST_HTML),
        "--only-summary",
        # Failures are what is measured (the no-proxy stage's 500s), not a failed run.
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    web_address = None
    if options.web:
        master += [
            "--autostart",
            "--autoquit", str(WEB_AUTOQUIT_S),
            "--web-host", HOST,
            "--web-port", str(web_port),
        ]  # fmt: skip
        web_address = f"http://{HOST}:{web_port}"
    else:
        master.append("--headless")
    workers: list[list[str]] = []
    if options.workers:
        master += [
            "--master",
            "--expect-workers", str(options.workers),
            "--expect-workers-max-wait", str(EXPECT_WORKERS_MAX_WAIT_S),
            "--master-bind-host", HOST,
            "--master-bind-port", str(master_port),
        ]  # fmt: skip
        worker = [*base, "--worker", "--master-host", HOST, "--master-port", str(master_port)]
        workers = [list(worker) for _ in range(options.workers)]
    return LocustPlan(master, workers, web_address)


def deadline_s(options: LoadTestOptions) -> float:
    """How long the Locust master may live before it is stopped by PID."""
    extra = options.stop_timeout_s + GRACE_S
    if options.workers:
        extra += EXPECT_WORKERS_MAX_WAIT_S
    if options.web:
        extra += WEB_AUTOQUIT_S
    spawn_s = options.users / options.spawn_rate
    return options.run_time_s + min(spawn_s, options.run_time_s) + extra


def start_all(
    plan: LocustPlan, run_dir: Path, env: Mapping[str, str], started: list[subprocess.Popen[bytes]]
) -> None:
    """Starts the master, then each worker, appending each to ``started`` as it starts (so the
    caller can stop those that did if a later one fails to start)."""
    started.append(_start(plan.master, run_dir / "locust-master.log", env))
    for number, argv in enumerate(plan.workers, start=1):
        started.append(_start(argv, run_dir / f"locust-worker{number}.log", env))


def wait_all(
    processes: Sequence[subprocess.Popen[bytes]], deadline: float, say: Callable[[str], None]
) -> int | None:
    """The master's exit code, or None if it outlived ``deadline`` (on ``time.monotonic``); the
    workers then get a short while to follow it."""
    exit_code = _wait(processes[0], deadline, say)
    for worker in processes[1:]:
        _wait(worker, time.monotonic() + _STOP_WAIT_S, say)
    return exit_code


def stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        _stop(process)


def _start(argv: list[str], log_file: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        # Its own session: a Ctrl-C here reaches the runner, which stops Locust in order.
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env), start_new_session=True,
        )  # fmt: skip


def _wait(
    process: subprocess.Popen[bytes], deadline: float, say: Callable[[str], None]
) -> int | None:
    try:
        return process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        say(f"Locust process {process.pid} outlived its run; stopping it")
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID (Locust writes its reports on it), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
