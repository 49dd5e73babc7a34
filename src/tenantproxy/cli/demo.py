"""`tenantproxy demo`: the write-up's experiment in one command.

Stack up, a short scripted session through the proxy, the Locust load test of the proxy stage
against the no-proxy stage, the report, stack down. The load's defaults are sized so that the
whole demo takes about four minutes on a 2-core machine (see the README for why these).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from tenantproxy.cli.options import stack_options
from tenantproxy.errors import TenantProxyError

# 400 write-up users (5-9 s between calls) make ~57 requests/s: enough for the no-proxy side's
# connection churn to show in replica CPU and connection counts, while Locust, the access API,
# the identity service, the proxy and six MariaDB servers still share two cores.
DEMO_USERS = 400
DEMO_SPAWN_RATE = 10.0
DEMO_RUN_TIME_S = 180


@click.command("demo")
@stack_options
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=DEMO_USERS,
    show_default=True,
    help="Locust users, each calling a random tenant's stage every 5-9 s.",
)
@click.option(
    "--spawn-rate",
    type=click.FloatRange(min=0.1),
    default=DEMO_SPAWN_RATE,
    show_default=True,
    help="Users started per second.",
)
@click.option(
    "--run-time-s",
    type=click.IntRange(min=10),
    default=DEMO_RUN_TIME_S,
    show_default=True,
    help="How long the load runs, seconds.",
)
@click.option(
    "--trace-sample-ratio",
    type=click.FloatRange(min=0, max=1),
    default=None,
    help="Share of the load test's requests traced end to end, Locust deciding (default: the "
    "stack's trace_sample_ratio). The report's breakdown adds up to the median within 15 % "
    "only with most requests traced.",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("loadtest-reports"),
    show_default=True,
    help="Where the run's report folder is made.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the stack running at the end and print its outputs "
    "(a stack that was already running is always left running).",
)
def command(
    stack_file: Path | None,
    overrides: tuple[str, ...],
    state_dir: Path | None,
    users: int,
    spawn_rate: float,
    run_time_s: int,
    trace_sample_ratio: float | None,
    report_dir: Path,
    keep: bool,
) -> None:
    """Bring the stack up, show a scripted session, load-test proxy against no proxy, report,
    and bring the stack down. Prints the summary table and the report's path."""
    from tenantproxy.demo import ScriptedSession
    from tenantproxy.loadtest.report import findings_table, summary_table
    from tenantproxy.loadtest.runner import LoadTestOptions, run
    from tenantproxy.stack import down, up
    from tenantproxy.stack.settings import load_stack_settings
    from tenantproxy.stack.stack import print_outputs

    console = Console()
    try:
        settings = load_stack_settings(stack_file, overrides, state_dir)
        result = up(settings, console)
        try:
            ScriptedSession(result.outputs, settings.tenants, settings.rows, console).run()
            if not settings.load_test:
                console.print("load_test = false: no no-proxy side to compare; no load test")
                return
            console.rule("load test: proxy stage against no-proxy stage")
            options = LoadTestOptions(
                users=users,
                spawn_rate=spawn_rate,
                run_time_s=run_time_s,
                trace_sample_ratio=trace_sample_ratio,
                report_dir=report_dir,
                state_dir=settings.state_dir,
            )
            run_result = run(options, say=console.print)
            console.print(summary_table(run_result.run_dir), markup=False, highlight=False)
            console.rule("findings of the write-up, measured here")
            console.print(
                findings_table(run_result.run_dir), markup=False, highlight=False, soft_wrap=True
            )
            console.print(f"report: {run_result.report_index}")
        finally:
            if keep or result.was_running:
                print_outputs(console, result.outputs)
            else:
                console.print()
                down(settings.state_dir, console, settings.stop_timeout_s)
    except TenantProxyError as exc:
        raise click.ClickException(str(exc)) from None
