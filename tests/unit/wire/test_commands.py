from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.wire.mysql.commands import (
    com_init_db,
    com_ping,
    com_query,
    com_quit,
    com_reset_connection,
    com_statistics,
    com_stmt_close,
    command_of,
)
from tenantproxy.wire.mysql.constants import Command


def test_com_query_is_the_command_byte_followed_by_the_utf8_text() -> None:
    assert com_query("SELECT 'é'") == b"\x03SELECT '\xc3\xa9'"


def test_com_query_sends_bytes_unchanged() -> None:
    assert com_query(b"SELECT \xff") == b"\x03SELECT \xff"


def test_com_init_db_carries_the_schema_name() -> None:
    assert com_init_db("user_database7") == b"\x02user_database7"


@pytest.mark.parametrize(
    ("payload", "command"),
    [
        (com_ping(), Command.COM_PING),
        (com_quit(), Command.COM_QUIT),
        (com_reset_connection(), Command.COM_RESET_CONNECTION),
        (com_statistics(), Command.COM_STATISTICS),
    ],
)
def test_commands_without_arguments_are_one_byte(payload: bytes, command: Command) -> None:
    assert payload == bytes((command,))


def test_com_stmt_close_writes_the_statement_id_in_4_little_endian_bytes() -> None:
    assert com_stmt_close(0x01020304) == b"\x19\x04\x03\x02\x01"


@pytest.mark.parametrize("statement_id", [-1, 1 << 32])
def test_com_stmt_close_refuses_a_statement_id_out_of_range(statement_id: int) -> None:
    with pytest.raises(ValueError, match="statement id"):
        com_stmt_close(statement_id)


@given(st.text())
def test_command_of_reads_back_the_command_of_every_builder(sql: str) -> None:
    assert command_of(com_query(sql)) is Command.COM_QUERY
    assert command_of(com_init_db(sql)) is Command.COM_INIT_DB


@given(st.sampled_from(Command), st.binary(max_size=20))
def test_command_of_knows_every_command_byte(command: Command, rest: bytes) -> None:
    assert command_of(bytes((command,)) + rest) is command


def test_command_of_is_none_for_an_empty_payload() -> None:
    assert command_of(b"") is None


def test_command_of_is_none_for_an_unknown_command_byte() -> None:
    assert command_of(b"\xf0\x00") is None
