"""The command line: thin. Each subcommand parses, calls into the library, prints."""

from __future__ import annotations

import click

from tenantproxy import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tenantproxy")
def main() -> None:
    """tenantproxy: a multi-tenant MySQL/MariaDB proxy and the kit that load-tests it.

    Start with `tenantproxy demo` (brings a local MariaDB stack up behind the proxy, runs a
    scripted session through it, brings it down), or `tenantproxy stack up` to keep a stack
    running. See README.md and docs/.
    """


def _register_subcommands() -> None:
    # Each subcommand lives in its own module, cli/<module>.py, as ``command``.
    from tenantproxy.cli import (
        accessapi,
        db_token,
        demo,
        identity,
        loadtest,
        proxy,
        secret_store,
        stack,
    )

    for module in (stack, proxy, secret_store, demo, identity, db_token, accessapi, loadtest):
        main.add_command(module.command)


_register_subcommands()
