"""`tenantproxy identity run | new-key`: the STS-compatible identity service."""

from __future__ import annotations

import os
from pathlib import Path

import click

from tenantproxy.cli.options import config_file_option, log_level_option
from tenantproxy.identity import IdentityError, encode_key, load_identity_config, load_key, new_key


@click.group("identity")
def command() -> None:
    """Run the identity service (STS AssumeRole for boto3, keys for db-auth tokens)."""


@command.command("run")
@config_file_option("The identity service's TOML config file (roles, principals, key_file).")
@log_level_option
def run(config_path: Path, log_level: str) -> None:
    """Serve STS on the host and port in CONFIG until SIGTERM.

    Prints 'tenantproxy identity ready http://HOST:PORT' once listening.
    """
    from tenantproxy.identity.service import run_identity_service

    try:
        config = load_identity_config(config_path)
        key = load_key(config.key_file)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None

    def announce(url: str) -> None:
        click.echo(f"tenantproxy identity ready {url}")

    run_identity_service(config, key, announce=announce, log_level=log_level)


@command.command("new-key")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the new sealing key (base64, mode 0600); an existing file is kept.",
)
def new_key_command(out: Path) -> None:
    """Write a new random identity (sealing) key; the proxy needs the same key file."""
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{out} exists; not overwriting a key") from None
    with os.fdopen(descriptor, "w") as file:
        file.write(encode_key(new_key()))
    click.echo(str(out))


@command.command("check-db-logins")
@config_file_option("The checker's TOML config (written by `stack up` as dblogin.toml).")
@log_level_option
def check_db_logins(config_path: Path, log_level: str) -> None:
    """Check db-auth token logins for MariaDB's PAM service until SIGTERM.

    The no-proxy cluster's PAM module asks it one line per login (noproxy_auth = "token").
    Prints 'tenantproxy db-login checker ready HOST:PORT' once listening.
    """
    import logging

    from tenantproxy.identity.db_login_check import run_db_login_check

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def announce(address: str) -> None:
        click.echo(f"tenantproxy db-login checker ready {address}", nl=True)

    try:
        run_db_login_check(config_path, announce)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None
