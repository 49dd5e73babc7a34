"""`tenantproxy proxy run`: one proxy process from its config file."""

from __future__ import annotations

from pathlib import Path

import click

from tenantproxy.errors import TenantProxyError


@click.group("proxy")
def command() -> None:
    """Run the proxy."""


@command.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The proxy's TOML config file (see docs/configuration.md).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="INFO",
    show_default=True,
    help="Lowest level of log lines written to stderr.",
)
def run(config_path: Path, log_level: str) -> None:
    """Serve the endpoints in CONFIG until SIGTERM; prints 'tenantproxy ready' when listening."""
    from tenantproxy.app import run_proxy

    try:
        run_proxy(config_path, log_level)
    except TenantProxyError as exc:
        raise click.ClickException(str(exc)) from None
