"""`tenantproxy loadtest`: the write-up's Locust load against the stack, sampled, then reported."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from tenantproxy.errors import StackError
from tenantproxy.loadtest.runner import LoadTestOptions, parse_run_time, run


def _sweep(options: LoadTestOptions, sweep_text: str, console: Console) -> None:
    from tenantproxy.loadtest.sweep import parse_sweep, render_sweep_text, run_sweep

    try:
        steps = parse_sweep(sweep_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--sweep") from None
    try:
        result = run_sweep(options, steps, say=console.print)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(render_sweep_text(result.steps), markup=False, highlight=False)
    console.print(f"sweep report: {result.index}")


def _run_time(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_run_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("loadtest")
@click.option(
    "--users",
    "-u",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Concurrent Locust users (the write-up suggests 1,000 to start).",
)
@click.option(
    "--spawn-rate",
    "-r",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Users started per second.",
)
@click.option(
    "--run-time",
    "-t",
    "run_time_s",
    default="3m",
    show_default=True,
    callback=_run_time,
    help="How long the load lasts: e.g. 90s, 3m, 1h30m.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Run Locust as a master and this many worker processes (0: one process).",
)
@click.option(
    "--web",
    is_flag=True,
    help="Serve Locust's web UI on 127.0.0.1 (address printed and written to "
    "outputs.json as LocustAddress); the run still starts and stops by itself.",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("loadtest-reports"),
    show_default=True,
    help="Each run gets a folder <report-dir>/<timestamp>/ with the report and data.",
)
@click.option(
    "--wait-min-s",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Shortest wait of a user between two calls, in seconds.",
)
@click.option(
    "--wait-max-s",
    type=click.FloatRange(min=0),
    default=9.0,
    show_default=True,
    help="Longest wait of a user between two calls, in seconds.",
)
@click.option(
    "--sample-interval-s",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="How often the stack's side (stages, databases, proxy) is sampled, seconds.",
)
@click.option(
    "--tenants",
    type=click.IntRange(min=1),
    default=None,
    help="Tenants the users pick from, 0..N-1 (default: all of the stack's).",
)
@click.option(
    "--trace-sample-ratio",
    type=click.FloatRange(min=0, max=1),
    default=None,
    help="Share of the requests traced end to end, decided by Locust for the whole trace "
    "(default: the stack's trace_sample_ratio).",
)
@click.option(
    "--sweep",
    "sweep_text",
    default=None,
    metavar="USERS,USERS,...",
    help="A load sweep: one step per number of users (e.g. 100,200,400,800), each lasting "
    "--run-time, one after the other against the same stack; writes the per-step table and "
    "the knee chart (5xx/min and p90 against users) under <report-dir>/sweeps/. --users is "
    "then ignored.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".tenantproxy"),
    show_default=True,
    help="The running stack's folder (its outputs.json names every endpoint).",
)
def command(
    users: int,
    spawn_rate: float,
    run_time_s: int,
    workers: int,
    web: bool,
    report_dir: Path,
    wait_min_s: float,
    wait_max_s: float,
    sample_interval_s: float,
    tenants: int | None,
    trace_sample_ratio: float | None,
    sweep_text: str | None,
    state_dir: Path,
) -> None:
    """Load-test the running stack with Locust: the proxy stage against the no-proxy stage.

    Headless by default. While it runs, the access API's stages, every database instance and
    the proxy are sampled into samples.csv; at the end the report is built and its index.html
    printed.
    """
    if wait_max_s < wait_min_s:
        raise click.BadParameter("must be at least --wait-min-s", param_hint="--wait-max-s")
    try:
        options = LoadTestOptions(
            users=users,
            spawn_rate=spawn_rate,
            run_time_s=run_time_s,
            workers=workers,
            web=web,
            report_dir=report_dir,
            state_dir=state_dir,
            wait_min_s=wait_min_s,
            wait_max_s=wait_max_s,
            sample_interval_s=sample_interval_s,
            tenants=tenants,
            trace_sample_ratio=trace_sample_ratio,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    console = Console()
    if sweep_text is not None:
        _sweep(options, sweep_text, console)
        return
    try:
        result = run(options, say=console.print)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    if result.locust_exit_code is None:
        console.print("[yellow]Locust did not exit by itself in time and was stopped")
    console.print(f"samples written: {result.samples_written}")
    console.print(f"report: {result.report_index}")
