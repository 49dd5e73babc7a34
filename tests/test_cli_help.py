"""Every command of the CLI explains itself: a help text, and a help for each of its parameters."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from tenantproxy.cli import main


def walk(
    command: click.Command, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    """``(words after `tenantproxy`, command)`` for the command and everything below it."""
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += walk(sub, (*path, name))
    return found


COMMANDS = walk(main)


def label(path: tuple[str, ...]) -> str:
    return " ".join(("tenantproxy", *path))


def test_the_tree_holds_the_commands_the_readme_names() -> None:
    names = {label(path) for path, _ in COMMANDS}
    assert {
        "tenantproxy stack up",
        "tenantproxy stack status",
        "tenantproxy stack down",
        "tenantproxy proxy run",
        "tenantproxy secrets list",
        "tenantproxy secrets get",
        "tenantproxy demo",
    } <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[label(p) for p, _ in COMMANDS])
def test_every_command_has_a_help_text(path: tuple[str, ...], command: click.Command) -> None:
    assert (command.help or "").strip(), f"{label(path)} has no help text"
    assert command.get_short_help_str().strip(), f"{label(path)} has no short help"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[label(p) for p, _ in COMMANDS])
def test_every_option_and_argument_is_documented(
    path: tuple[str, ...], command: click.Command
) -> None:
    docstring = (command.help or "").upper()
    for param in command.params:
        if isinstance(param, click.Option):
            if param.name == "help":
                continue
            assert (param.help or "").strip(), f"{label(path)} {param.opts[0]} has no help"
        elif isinstance(param, click.Argument):
            # click arguments take no help=; the command's docstring names them (e.g. NAME).
            name = (param.name or "").upper()
            assert name and name in docstring, f"{label(path)}: argument {name} not in its help"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[label(p) for p, _ in COMMANDS])
def test_help_exits_zero(path: tuple[str, ...], command: click.Command) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="tenantproxy")
    assert result.exit_code == 0, result.output
    assert f"Usage: {label(path)}" in result.output
