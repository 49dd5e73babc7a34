"""`tenantproxy proxy run`: one proxy process from its config file."""

from __future__ import annotations

from pathlib import Path

import click

from tenantproxy.cli.options import config_file_option, log_level_option
from tenantproxy.errors import TenantProxyError


@click.group("proxy")
def command() -> None:
    """Run the proxy."""


@command.command("run")
@config_file_option("The proxy's TOML config file (see docs/configuration.md).")
@log_level_option
def run(config_path: Path, log_level: str) -> None:
    """Serve the endpoints in CONFIG until SIGTERM; prints 'tenantproxy ready' when listening."""
    from tenantproxy.app import run_proxy

    try:
        run_proxy(config_path, log_level)
    except TenantProxyError as exc:
        raise click.ClickException(str(exc)) from None
