"""`tenantproxy secrets list | get`: read the stack's secret store.

`get` prints the secret's JSON, password included: operators need it, and this is the one place
it is printed, on request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tenantproxy.errors import SecretStoreError, StackError
from tenantproxy.secretstore import FileSecretStore
from tenantproxy.stack.state import read_outputs


def _store_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("./.tenantproxy"),
            show_default=True,
            help="A stack's state dir: the store and its key are read from its outputs.json.",
        ),
        click.option(
            "--store",
            type=click.Path(dir_okay=False, path_type=Path),
            help="An encrypted secret store file (instead of --state-dir).",
        ),
        click.option(
            "--key-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The store's key file (with --store).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _open_store(state_dir: Path, store: Path | None, key_file: Path | None) -> FileSecretStore:
    if (store is None) != (key_file is None):
        raise click.UsageError("--store and --key-file go together")
    if store is None or key_file is None:
        outputs = read_outputs(state_dir)
        if outputs is None:
            raise click.ClickException(f"no stack in {state_dir} (no outputs.json)")
        store, key_file = Path(outputs["SecretStore"]), Path(outputs["SecretsKeyFile"])
    try:
        return FileSecretStore(store, key_file.read_bytes())
    except OSError as exc:
        raise click.ClickException(f"cannot read {key_file}: {exc.strerror}") from None


@click.group("secrets")
def command() -> None:
    """Read the secret store (one secret per tenant, Secrets Manager shape)."""


@command.command("list")
@_store_options
@click.option("--prefix", default="", help="Only names starting with this, e.g. tenants/.")
def list_names(state_dir: Path, store: Path | None, key_file: Path | None, prefix: str) -> None:
    """List secret names."""
    try:
        for name in _open_store(state_dir, store, key_file).list_names(prefix):
            click.echo(name)
    except (SecretStoreError, StackError) as exc:
        raise click.ClickException(str(exc)) from None


@command.command("get")
@_store_options
@click.argument("name")
def get(state_dir: Path, store: Path | None, key_file: Path | None, name: str) -> None:
    """Print secret NAME as JSON, password included."""
    try:
        secret = _open_store(state_dir, store, key_file).get(name)
    except (SecretStoreError, StackError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    click.echo(json.dumps(secret.to_dict(), indent=2, sort_keys=True))
