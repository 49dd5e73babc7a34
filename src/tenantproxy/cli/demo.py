"""`tenantproxy demo`: stack up, a scripted session through the proxy, stack down."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from tenantproxy.errors import TenantProxyError


@click.command("demo")
@click.option(
    "--file",
    "stack_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A stack file (TOML); defaults apply to what it does not set.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one stack setting, e.g. --set tenants=50 (repeatable).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the stack lives (default ./.tenantproxy).",
)
@click.option("--keep", is_flag=True, help="Leave the stack running and print its outputs.")
def command(
    stack_file: Path | None, overrides: tuple[str, ...], state_dir: Path | None, keep: bool
) -> None:
    """Bring the stack up, run a scripted session through the proxy, bring it down.

    Without --keep the stack is brought down at the end, even one that was already running.
    """
    from tenantproxy.demo import ScriptedSession
    from tenantproxy.stack import down, up
    from tenantproxy.stack.settings import load_stack_settings
    from tenantproxy.stack.stack import print_outputs

    console = Console()
    try:
        settings = load_stack_settings(stack_file, overrides, state_dir)
        result = up(settings, console)
        try:
            ScriptedSession(result.outputs, settings.tenants, settings.rows, console).run()
        finally:
            if keep or result.was_running:
                print_outputs(console, result.outputs)
            else:
                console.print()
                down(settings.state_dir, console, settings.stop_timeout_s)
    except TenantProxyError as exc:
        raise click.ClickException(str(exc)) from None
