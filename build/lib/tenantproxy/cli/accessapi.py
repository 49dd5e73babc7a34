"""`tenantproxy accessapi run`: the write-up's API Gateway + Lambda access function."""

from __future__ import annotations

from pathlib import Path

import click

from tenantproxy.cli.options import config_file_option, log_level_option
from tenantproxy.errors import ConfigError


@click.group("accessapi")
def command() -> None:
    """Run the access API (/proxy_stage and /no_proxy_stage, one invocation per request)."""


@command.command("run")
@config_file_option("The access API's TOML config (stack up writes <state>/accessapi.toml).")
@log_level_option
def run(config_path: Path, log_level: str) -> None:
    """Serve the stages on the host and port in CONFIG until SIGTERM.

    Prints 'tenantproxy accessapi ready http://HOST:PORT' once listening.
    """
    import logging

    from tenantproxy.accessapi import load_access_api_config, run_access_api

    try:
        config = load_access_api_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def announce(url: str) -> None:
        click.echo(f"tenantproxy accessapi ready {url}", nl=True)

    run_access_api(config, announce=announce, log_level=log_level)
