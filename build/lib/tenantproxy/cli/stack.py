"""`tenantproxy stack up | status | down`: the local MariaDB stack behind the proxy."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from tenantproxy import stack as stack_lib
from tenantproxy.cli.options import stack_options
from tenantproxy.errors import ConfigError, StackError
from tenantproxy.stack import StackSettings, load_stack_settings


def _settings(
    stack_file: Path | None, overrides: tuple[str, ...], state_dir: Path | None
) -> StackSettings:
    try:
        return load_stack_settings(stack_file, overrides, state_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("stack")
def command() -> None:
    """The local stack: two MariaDB clusters (proxy, noproxy), the seeded tenants, the proxy."""


@command.command("up")
@stack_options
def up(stack_file: Path | None, overrides: tuple[str, ...], state_dir: Path | None) -> None:
    """Bring the stack up (does nothing if it is already running)."""
    settings = _settings(stack_file, overrides, state_dir)
    console = Console()
    try:
        result = stack_lib.up(settings, console)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    stack_lib.print_outputs(console, result.outputs)


@command.command("status")
@stack_options
def status(stack_file: Path | None, overrides: tuple[str, ...], state_dir: Path | None) -> None:
    """Show each process alive or dead, and the endpoints. Exit 1 if any is dead."""
    settings = _settings(stack_file, overrides, state_dir)
    console = Console()
    try:
        processes, outputs = stack_lib.status(settings.state_dir)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    stack_lib.print_status(console, processes, outputs)
    if not all(p.is_alive for p in processes) or outputs is None:
        raise SystemExit(1)


@command.command("down")
@stack_options
def down(stack_file: Path | None, overrides: tuple[str, ...], state_dir: Path | None) -> None:
    """Stop every process the stack started (by PID) and remove the state dir."""
    settings = _settings(stack_file, overrides, state_dir)
    try:
        stack_lib.down(settings.state_dir, Console(), settings.stop_timeout_s)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
