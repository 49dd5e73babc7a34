"""The command line: thin. Each subcommand parses, calls into the library, prints."""

from __future__ import annotations

import click

from tenantproxy import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tenantproxy")
def main() -> None:
    """tenantproxy: a multi-tenant MySQL/MariaDB proxy and the kit that load-tests it.

    Start with `tenantproxy stack up` (a local MariaDB stack behind the proxy),
    then `tenantproxy demo`.
    """


def _register_subcommands() -> None:
    # Imported here so that each subcommand lives in its own module (cli/<name>.py).
    from importlib import import_module

    for module_name in ("proxy", "stack", "secrets", "demo"):
        try:
            module = import_module(f"tenantproxy.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tenantproxy.cli.{module_name}":
                raise
            continue
        main.add_command(module.command)


_register_subcommands()
