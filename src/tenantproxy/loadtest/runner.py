"""``tenantproxy loadtest``: Locust against the stack's access API, with the sampler alongside.

One run makes ``<report-dir>/<timestamp>/`` with Locust's HTML and CSVs, ``samples.csv`` (the
sampler), ``run.json`` (what ran, where, on what machine) and the logs of the Locust processes,
then builds the report. Locust runs as its own processes (locust_processes.py): headless by
default, its web UI with ``web``, its master/worker mode with ``workers``. Every run stops by
itself: Locust gets the run time, and the processes this module started are stopped by PID if
they outlive it by more than a grace period.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from tenantproxy.errors import StackError
from tenantproxy.loadtest.locust_env import UserSettings
from tenantproxy.loadtest.locust_processes import (
    HOST,
    LocustPlan,
    deadline_s,
    locust_plan,
    start_all,
    stop_all,
    wait_all,
)

# Re-exported: the CLI and the demo import them from here.
from tenantproxy.loadtest.options import LoadTestOptions as LoadTestOptions
from tenantproxy.loadtest.options import parse_run_time as parse_run_time
from tenantproxy.loadtest.report_traces import collect_traces
from tenantproxy.loadtest.sampler import Sampler
from tenantproxy.loadtest.samples import SAMPLES_FILE, SamplesWriter
from tenantproxy.loadtest.sources import build_sources
from tenantproxy.observability.tracing import FLUSH_INTERVAL_S
from tenantproxy.stack.processes import free_ports
from tenantproxy.stack.state import OUTPUTS_FILE, STATE_FILE, write_private_file

RUN_FILE = "run.json"
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
    "NoProxyAuth",
)


@dataclass
class RunResult:
    run_dir: Path
    locust_exit_code: int | None
    report_index: Path
    samples_written: int


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


def trace_ratio(options: LoadTestOptions, settings: Mapping[str, Any]) -> float:
    if options.trace_sample_ratio is not None:
        return options.trace_sample_ratio
    return min(float(settings.get("trace_sample_ratio", 0.0)), 1.0)


def run(options: LoadTestOptions, say: Callable[[str], None] = print) -> RunResult:
    """One load test against the stack in ``options.state_dir``; returns where it is."""
    state_dir = options.state_dir.absolute()
    outputs = read_outputs(state_dir)
    api_url = _api_url(outputs, state_dir)
    settings = stack_settings(state_dir)
    tenants = options.tenants or int(settings.get("tenants", UserSettings().tenants))
    user = UserSettings(
        options.wait_min_s,
        options.wait_max_s,
        tenants,
        # Locust samples (at the stack's ratio unless told) and writes its spans beside the
        # stack's processes' (collect_traces reads the folder): each trace then starts at the
        # measured request, and the unsampled ones cost the stack no spans.
        trace_sample_ratio=trace_ratio(options, settings),
        spans_dir=str(outputs.get("TracesDir") or ""),
    )
    started = datetime.now(UTC)
    run_dir = make_run_dir(options.report_dir.absolute(), started)
    ports = free_ports(2, HOST)
    plan = locust_plan(options, api_url, run_dir, ports)
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
        "trace_sample_ratio": user.trace_sample_ratio,
    }  # fmt: skip
    _write_json(run_dir / RUN_FILE, record)
    say(f"run folder: {run_dir}")
    say(f"access API (APIGatewayURL): {api_url}")
    env = {**os.environ, **user.to_environ()}
    sources = build_sources(outputs, state_dir)
    started_clock = time.monotonic()
    cpu = CpuUse.start()
    with SamplesWriter(run_dir / SAMPLES_FILE) as writer, _live_dashboard(run_dir, state_dir, say):
        sampler = Sampler(sources, writer, options.sample_interval_s)
        exit_code = _run_locust_with_sampler(
            options, plan, sampler, run_dir=run_dir, state_dir=state_dir, env=env,
            started_clock=started_clock, say=say,
        )  # fmt: skip
    ended = datetime.now(UTC)
    spans = _collect_traces(outputs, run_dir, started, ended)
    record.update(
        end=ended.isoformat(),
        spans_collected=spans,
        locust_exit_code=exit_code,
        samples_written=writer.rows_written,
        sampler_errors=sampler.errors,
        cpu=cpu.finish(),
    )
    _write_json(run_dir / RUN_FILE, record)
    return RunResult(run_dir, exit_code, _build_report(run_dir, say), writer.rows_written)


@dataclass
class CpuUse:
    """The machine's CPU over a run, and the Locust processes' share (they are this process's
    children, waited for when they end), for the findings' "not reproducible here" reasons."""

    started_s: float
    children_cpu_s: float

    @classmethod
    def start(cls) -> CpuUse:
        psutil.cpu_percent(None)  # the baseline of the next call
        return cls(time.monotonic(), _children_cpu_s())

    def finish(self) -> dict[str, float]:
        elapsed_s = max(time.monotonic() - self.started_s, 1e-3)
        return {
            "machine_busy_percent": psutil.cpu_percent(None),
            "locust_percent": 100 * (_children_cpu_s() - self.children_cpu_s) / elapsed_s,
        }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _api_url(outputs: Mapping[str, Any], state_dir: Path) -> str:
    api_url = outputs.get("APIGatewayURL")
    if not api_url:
        raise StackError(
            f"{state_dir / OUTPUTS_FILE} has no APIGatewayURL: the stack runs no access API "
            "(bring it up with load_test = true)"
        )
    return str(api_url)


def _run_locust_with_sampler(
    options: LoadTestOptions,
    plan: LocustPlan,
    sampler: Sampler,
    *,
    run_dir: Path,
    state_dir: Path,
    env: Mapping[str, str],
    started_clock: float,
    say: Callable[[str], None],
) -> int | None:
    """Starts Locust and the sampler, waits for Locust, stops both; Locust's exit code."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        start_all(plan, run_dir, env, processes)
        if plan.web_address:
            update_outputs(state_dir, {"LocustAddress": plan.web_address})
            say(f"Locust web UI (LocustAddress): {plan.web_address}")
        say(
            f"Locust: {options.users} users, spawn rate {options.spawn_rate:g}/s, "
            f"{options.run_time_s} s, "
            + (f"master + {options.workers} workers" if options.workers else "one process")
        )
        sampler.start(started_clock)
        return wait_all(processes, started_clock + deadline_s(options), say)
    finally:
        stop_all(processes)
        sampler.stop()
        if plan.web_address:
            update_outputs(state_dir, {"LocustAddress": None})


@contextmanager
def _live_dashboard(run_dir: Path, state_dir: Path, say: Callable[[str], None]) -> Iterator[None]:
    """The live dashboard for the run's length; its address in outputs.json meanwhile."""
    # Imported here: the dashboard pulls in plotly, like the report.
    from tenantproxy.loadtest.dashboard import Dashboard, ProcessCpu, locust_pids, stack_pids

    process_cpu = ProcessCpu(lambda: {**locust_pids(), **stack_pids(state_dir)})
    with Dashboard(run_dir / SAMPLES_FILE, process_cpu) as dashboard:
        update_outputs(state_dir, {"DashboardAddress": dashboard.address})
        say(f"live dashboard (DashboardAddress): {dashboard.address}")
        try:
            yield
        finally:
            update_outputs(state_dir, {"DashboardAddress": None})


def _collect_traces(
    outputs: Mapping[str, Any], run_dir: Path, started: datetime, ended: datetime
) -> int:
    traces_dir = outputs.get("TracesDir")
    if not traces_dir:
        return 0
    # The processes export every FLUSH_INTERVAL_S: wait for the last requests' spans.
    time.sleep(2 * FLUSH_INTERVAL_S)
    start_ns, end_ns = int(started.timestamp() * 1e9), int(ended.timestamp() * 1e9)
    return collect_traces(Path(traces_dir), run_dir, start_ns, end_ns)


def _build_report(run_dir: Path, say: Callable[[str], None]) -> Path:
    # Imported here: the report pulls in plotly, which the CLI need not load for every command.
    from tenantproxy.loadtest.report import build_report

    say("building the report")
    return build_report(run_dir)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(temporary, path)
