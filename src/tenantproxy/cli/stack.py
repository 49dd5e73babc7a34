"""`tenantproxy stack up | status | down`: the local MariaDB stack behind the proxy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from tenantproxy import stack as stack_lib
from tenantproxy.errors import ConfigError, StackError
from tenantproxy.stack import StackSettings, load_stack_settings


def _stack_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--file",
            "stack_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Stack file (TOML); every setting has a default (see StackSettings).",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override one stack setting, e.g. --set tenants=2000 (repeatable).",
        ),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Where the stack lives (default ./.tenantproxy).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


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
@_stack_options
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
@_stack_options
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
@_stack_options
def down(stack_file: Path | None, overrides: tuple[str, ...], state_dir: Path | None) -> None:
    """Stop every process the stack started (by PID) and remove the state dir."""
    settings = _settings(stack_file, overrides, state_dir)
    try:
        stack_lib.down(settings.state_dir, Console(), settings.stop_timeout_s)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
