"""``tenantproxy loadtest --sweep 100,200,400,800``: steps of users, one stack, one session.

Each step is one ordinary run (``runner.run``, its own folder and report) with that many users for
the step's duration; the steps run one after the other against the same stack, in one command.
Each step ramps up within a quarter of its duration at most (the spawn rate is raised to
``users / (step / 4)`` when the given one is slower), so that most of a step runs at full load.

Per stage and step the sweep keeps: requests/s, HTTP 5xx per minute, p50 and p90 (Locust's),
replica CPU (mean, sum over the cluster's replicas), new database connections/s, and the
database-side login CPU: the CPU that token checks cost the cluster, in % of one core over the
step — its mariadbd processes' reaped children (``auth_pam_tool``, one per PAM login) plus, on the
no-proxy cluster with ``noproxy_auth = "token"``, the db-login checker. With native passwords the
login is inside mariadbd's own threads and not told apart (``n/a``).

The sweep folder ``<report-dir>/sweeps/<time>/`` holds each step's run folder and ``sweep.json``,
``sweep.md`` and ``index.html``: the table and "the knee", 5xx/min and p90 against users for both
stages.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from tenantproxy.loadtest.options import LoadTestOptions
from tenantproxy.loadtest.report_summary import STAGES
from tenantproxy.loadtest.runner import make_run_dir, read_outputs, run
from tenantproxy.stack.state import STATE_FILE

CHECKER_PROCESS = "dblogin"
RAMP_SHARE = 0.25
# (field, label): what each step keeps per stage, in table order.
STEP_FIELDS: tuple[tuple[str, str], ...] = (
    ("requests_per_s", "requests/s"),
    ("http_5xx_per_minute", "5xx/min"),
    ("median_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("replica_cpu_mean_percent", "replica CPU %"),
    ("db_new_connections_per_s", "new DB conn/s"),
    ("login_cpu_percent", "DB login CPU %"),
)


def parse_sweep(text: str) -> list[int]:
    """``"100,200,400"`` → ``[100, 200, 400]``; at least one step, each ≥ 1."""
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"bad sweep {text!r}: use users per step, e.g. 100,200,400") from None
    if not steps or any(users < 1 for users in steps):
        raise ValueError(f"bad sweep {text!r}: at least one step, each of 1 user or more")
    return steps


def step_options(options: LoadTestOptions, users: int, report_dir: Path) -> LoadTestOptions:
    ramp_s = max(1.0, options.run_time_s * RAMP_SHARE)
    spawn_rate = max(options.spawn_rate, users / ramp_s)
    return replace(options, users=users, spawn_rate=spawn_rate, report_dir=report_dir)


@dataclass(frozen=True)
class SweepStep:
    users: int
    run_dir: str
    stages: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class SweepResult:
    sweep_dir: Path
    steps: list[SweepStep]
    index: Path


class LoginCpu:
    """Cumulative CPU seconds of token checks, per cluster (see the module docstring)."""

    def __init__(self, state_dir: Path, outputs: Mapping[str, Any]) -> None:
        self._pids: dict[str, list[int]] = {}
        clusters = (("proxy", "ProxyClusterInstances"), ("noproxy", "NoProxyClusterInstances"))
        for stage, key in clusters:
            self._pids[stage] = [
                pid
                for instance in outputs.get(key) or []
                if (pid := _pid_file(state_dir / instance["name"] / "mysqld.pid")) is not None
            ]
        self._checker = _process_pid(state_dir, CHECKER_PROCESS)
        self.is_noproxy_separable = self._checker is not None

    def seconds(self) -> dict[str, float]:
        totals = {
            stage: sum(_children_cpu_s(pid) for pid in pids) for stage, pids in self._pids.items()
        }
        if self._checker is not None:
            totals["noproxy"] = totals.get("noproxy", 0.0) + _process_cpu_s(self._checker)
        return totals


def run_sweep(
    options: LoadTestOptions, steps: list[int], say: Callable[[str], None] = print
) -> SweepResult:
    """Runs every step against the stack in ``options.state_dir``; writes the sweep's files."""
    state_dir = options.state_dir.absolute()
    outputs = read_outputs(state_dir)
    sweep_dir = make_run_dir(options.report_dir.absolute() / "sweeps", datetime.now(UTC))
    say(f"sweep folder: {sweep_dir}")
    login_cpu = LoginCpu(state_dir, outputs)
    done: list[SweepStep] = []
    for number, users in enumerate(steps, start=1):
        say(f"sweep step {number}/{len(steps)}: {users} users for {options.run_time_s} s")
        before, started = login_cpu.seconds(), time.monotonic()
        result = run(step_options(options, users, sweep_dir), say)
        after, elapsed_s = login_cpu.seconds(), max(time.monotonic() - started, 1e-3)
        stages = _step_stages(result.run_dir)
        for stage in STAGES:
            separable = stage == "proxy" or login_cpu.is_noproxy_separable
            used = after.get(stage, 0.0) - before.get(stage, 0.0)
            stages.setdefault(stage, {})["login_cpu_percent"] = (
                100 * used / elapsed_s if separable else None
            )
        done.append(SweepStep(users, str(result.run_dir), stages))
        _write(sweep_dir, options, done, outputs)
    index = sweep_dir / "index.html"
    return SweepResult(sweep_dir, done, index)


def _step_stages(run_dir: Path) -> dict[str, dict[str, float | None]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        stage: {name: figures.get(name) for name, _ in STEP_FIELDS}
        for stage, figures in summary.get("stages", {}).items()
    }


def _write(
    sweep_dir: Path, options: LoadTestOptions, steps: list[SweepStep], outputs: Mapping[str, Any]
) -> None:
    document = {
        "options": {**asdict(options), "report_dir": str(options.report_dir),
                    "state_dir": str(options.state_dir)},
        "step_s": options.run_time_s,
        "noproxy_auth": outputs.get("NoProxyAuth"),
        "steps": [asdict(step) for step in steps],
    }  # fmt: skip
    (sweep_dir / "sweep.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (sweep_dir / "sweep.md").write_text(render_sweep_markdown(steps, document), encoding="utf-8")
    (sweep_dir / "index.html").write_text(render_sweep_page(steps, document), encoding="utf-8")


def sweep_rows(steps: list[SweepStep]) -> list[tuple[str, ...]]:
    """Header, then one row per step and stage."""
    rows: list[tuple[str, ...]] = [("users", "stage", *(label for _, label in STEP_FIELDS))]
    for step in steps:
        for stage in STAGES:
            figures = step.stages.get(stage, {})
            rows.append((str(step.users), stage, *(_cell(figures.get(n)) for n, _ in STEP_FIELDS)))
    return rows


def render_sweep_text(steps: list[SweepStep]) -> str:
    rows = sweep_rows(steps)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(lines) + "\n"


def render_sweep_markdown(steps: list[SweepStep], document: Mapping[str, Any]) -> str:
    header, *rows = sweep_rows(steps)
    lines = [
        "# Load sweep: proxy against no proxy",
        "",
        f"Steps of {document['step_s']} s, one stack; no-proxy login: "
        f"{document.get('noproxy_auth') or 'not recorded'}.",
        "",
        "| " + " | ".join(header) + " |",
        "| ---: | --- |" + " ---: |" * (len(header) - 2),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"


def render_sweep_page(steps: list[SweepStep], document: Mapping[str, Any]) -> str:
    # Imported here: plotly is heavy, and the CLI need not load it to parse options.
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    from tenantproxy.loadtest.sweep_chart import knee_chart

    header, *rows = sweep_rows(steps)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    links = "".join(
        f'<li><a href="{html.escape(Path(s.run_dir).name)}/index.html">{s.users} users</a></li>'
        for s in steps
    )
    auth = html.escape(str(document.get("noproxy_auth") or "not recorded"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Load sweep</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd;
padding: 0.2rem 0.6rem; text-align: right; }}</style>
<script>{get_plotlyjs()}</script></head><body>
<h1>Load sweep: proxy against no proxy</h1>
<p>Steps of {int(document["step_s"])} s against one stack; no-proxy login: {auth}.</p>
{knee_chart(steps)}
<h2>Per step and stage</h2>
<table class="sweep"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Each step's report</h2><ul>{links}</ul>
</body></html>
"""


def _cell(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _process_pid(state_dir: Path, name: str) -> int | None:
    try:
        state = json.loads((state_dir / STATE_FILE).read_text())
        return next(int(p["pid"]) for p in state["processes"] if p["name"] == name)
    except (OSError, ValueError, KeyError, StopIteration):
        return None


def _children_cpu_s(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.children_user + times.children_system


def _process_cpu_s(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system
