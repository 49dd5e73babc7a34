"""``tenantproxy loadtest``: Locust against the stack's access API, with the sampler alongside.

One run makes ``<report-dir>/<timestamp>/`` with Locust's HTML and CSVs, ``samples.csv`` (the
sampler), ``run.json`` (what ran, where, on what machine) and the logs of the Locust processes,
then builds the report. Locust runs as its own processes (it patches the interpreter with gevent):
headless by default, its web UI with ``web``, its master/worker mode with ``workers``. Every run
stops by itself: Locust gets the run time, and the processes this module started are stopped by
PID if they outlive it by more than a grace period.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from tenantproxy.errors import StackError
from tenantproxy.loadtest.locust_env import UserSettings
from tenantproxy.loadtest.sampler import Sampler
from tenantproxy.loadtest.samples import SAMPLES_FILE, SamplesWriter
from tenantproxy.loadtest.sources import build_sources
from tenantproxy.stack.processes import free_ports
from tenantproxy.stack.state import OUTPUTS_FILE, STATE_FILE, write_private_file

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
HOST = "127.0.0.1"
RUN_FILE = "run.json"
LOCUST_CSV_PREFIX = "locust"
LOCUST_HTML = "locust.html"
# Past the run time: spawning, workers connecting, users finishing, reports being written.
GRACE_S = 60.0
EXPECT_WORKERS_MAX_WAIT_S = 60
WEB_AUTOQUIT_S = 10
_STOP_WAIT_S = 10.0
OUTPUTS_TO_RECORD = (
    "APIGatewayURL",
    "ProxyEndpoint",
    "ProxyReaderEndpoint",
    "NoProxyWriterEndpoint",
    "NoProxyReaderEndpoint",
    "ProxyClusterInstances",
    "NoProxyClusterInstances",
    "ProxyMetricsEndpoint",
    "IdentityEndpoint",
    "Region",
    "ProxyResourceId",
)


@dataclass(frozen=True)
class LoadTestOptions:
    """What one run does; defaults are the write-up's suggested start."""

    users: int = 1000
    spawn_rate: float = 10.0
    run_time_s: int = 180
    workers: int = 0
    web: bool = False
    report_dir: Path = Path("loadtest-reports")
    state_dir: Path = Path(".tenantproxy")
    wait_min_s: float = 5.0
    wait_max_s: float = 9.0
    sample_interval_s: float = 5.0
    tenants: int | None = None  # None: the stack's
    stop_timeout_s: int = 10

    def __post_init__(self) -> None:
        if self.users < 1 or self.spawn_rate <= 0 or self.run_time_s < 1:
            raise ValueError("users, spawn rate and run time must be positive")
        if self.workers < 0:
            raise ValueError("workers must be 0 (no master/worker mode) or more")
        if self.sample_interval_s <= 0:
            raise ValueError("the sample interval must be positive")


@dataclass(frozen=True)
class LocustPlan:
    """The Locust processes of one run: argv of each, and where its web UI will be."""

    master: list[str]
    workers: list[list[str]] = field(default_factory=list)
    web_address: str | None = None


@dataclass
class RunResult:
    run_dir: Path
    locust_exit_code: int | None
    report_index: Path
    samples_written: int


def parse_run_time(text: str) -> int:
    """``"3m"``, ``"1h30m"``, ``"90s"`` or ``"90"`` → seconds (Locust's --run-time forms)."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        match = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", value)
        if not match or not any(match.groups()):
            raise ValueError(f"bad run time {text!r}: use e.g. 180, 90s, 3m or 1h30m")
        hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds < 1:
        raise ValueError(f"bad run time {text!r}: at least one second")
    return seconds


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


def read_outputs(state_dir: Path) -> dict[str, Any]:
    path = state_dir / OUTPUTS_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise StackError(f"{path} not found: is the stack up (`tenantproxy stack up`)?") from None
    except (OSError, ValueError) as exc:
        raise StackError(f"{path}: unreadable: {exc}") from None
    return data


def update_outputs(state_dir: Path, changes: Mapping[str, Any | None]) -> None:
    """Read-modify-write of outputs.json, atomically; a None value removes the key."""
    outputs = read_outputs(state_dir)
    for key, value in changes.items():
        if value is None:
            outputs.pop(key, None)
        else:
            outputs[key] = value
    write_private_file(state_dir / OUTPUTS_FILE, json.dumps(outputs, indent=2) + "\n")


def stack_settings(state_dir: Path) -> dict[str, Any]:
    """The settings the stack was brought up with (tenants, rows, …), from state.json."""
    try:
        settings: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return settings


def make_run_dir(report_dir: Path, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    for suffix in ["", *(f"-{n}" for n in range(2, 100))]:
        run_dir = report_dir / f"{stamp}{suffix}"
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise StackError(f"cannot make a run folder under {report_dir}")


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "locust": version("locust"),
    }


def run(options: LoadTestOptions, say: Callable[[str], None] = print) -> RunResult:
    """One load test against the stack in ``options.state_dir``; returns where it is."""
    state_dir = options.state_dir.absolute()
    outputs = read_outputs(state_dir)
    api_url = outputs.get("APIGatewayURL")
    if not api_url:
        raise StackError(
            f"{state_dir / OUTPUTS_FILE} has no APIGatewayURL: the stack runs no access API "
            "(bring it up with load_test = true)"
        )
    settings = stack_settings(state_dir)
    tenants = options.tenants or int(settings.get("tenants", UserSettings().tenants))
    user = UserSettings(options.wait_min_s, options.wait_max_s, tenants)
    started = datetime.now(UTC)
    run_dir = make_run_dir(options.report_dir.absolute(), started)
    ports = free_ports(2, HOST)
    plan = locust_plan(options, str(api_url), run_dir, ports)
    record: dict[str, Any] = {
        "start": started.isoformat(),
        "end": None,
        "options": {**asdict(options), "report_dir": str(options.report_dir),
                    "state_dir": str(state_dir)},
        "tenants": tenants,
        "rows": settings.get("rows"),
        "outputs": {k: outputs[k] for k in OUTPUTS_TO_RECORD if k in outputs},
        "machine": machine(),
        "locust_address": plan.web_address,
    }  # fmt: skip
    _write_json(run_dir / RUN_FILE, record)
    say(f"run folder: {run_dir}")
    say(f"access API (APIGatewayURL): {api_url}")

    env = {**os.environ, **user.to_environ()}
    sources = build_sources(outputs, state_dir)
    started_clock = time.monotonic()
    exit_code: int | None = None
    with SamplesWriter(run_dir / SAMPLES_FILE) as writer:
        sampler = Sampler(sources, writer, options.sample_interval_s)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes.append(_start(plan.master, run_dir / "locust-master.log", env))
            for number, argv in enumerate(plan.workers, start=1):
                processes.append(_start(argv, run_dir / f"locust-worker{number}.log", env))
            if plan.web_address:
                update_outputs(state_dir, {"LocustAddress": plan.web_address})
                say(f"Locust web UI (LocustAddress): {plan.web_address}")
            say(
                f"Locust: {options.users} users, spawn rate {options.spawn_rate:g}/s, "
                f"{options.run_time_s} s, "
                + (f"master + {options.workers} workers" if options.workers else "one process")
            )
            sampler.start(started_clock)
            exit_code = _wait(processes[0], started_clock + deadline_s(options), say)
            for worker in processes[1:]:
                _wait(worker, time.monotonic() + _STOP_WAIT_S, say)
        finally:
            for process in processes:
                _stop(process)
            sampler.stop()
            if plan.web_address:
                update_outputs(state_dir, {"LocustAddress": None})
    record.update(
        end=datetime.now(UTC).isoformat(),
        locust_exit_code=exit_code,
        samples_written=writer.rows_written,
        sampler_errors=sampler.errors,
    )
    _write_json(run_dir / RUN_FILE, record)
    return RunResult(run_dir, exit_code, _build_report(run_dir, say), writer.rows_written)


def _build_report(run_dir: Path, say: Callable[[str], None]) -> Path:
    # Imported here: the report pulls in plotly, which the CLI need not load for every command.
    from tenantproxy.loadtest.report import build_report

    say("building the report")
    return build_report(run_dir)


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


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(temporary, path)
