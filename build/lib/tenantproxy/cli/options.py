"""Options that several commands take, declared once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def config_file_option(help_text: str) -> Callable[[F], F]:
    """``--config PATH`` (required, must exist), passed as ``config_path``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        required=True,
        help=help_text,
    )


def log_level_option(function: F) -> F:
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS),
        default="INFO",
        show_default=True,
        help="Lowest level of log lines written to stderr.",
    )(function)


def stack_options(function: F) -> F:
    """``--file``, ``--set`` (repeatable) and ``--state-dir``: which stack, with what settings."""
    options = [
        click.option(
            "--file",
            "stack_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Stack file (TOML); every setting has a default (docs/configuration.md).",
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
