"""Payloads of the commands the proxy itself sends to a backend (Command Phase pages).

Each builder returns the command PAYLOAD; frame it with ``framing.encode_packet(payload, 0)``.
"""

from __future__ import annotations

from tenantproxy.wire.mysql.constants import Command

_COMMAND_BY_BYTE: dict[int, Command] = {command.value: command for command in Command}


def com_query(sql: str | bytes) -> bytes:
    """COM_QUERY: the statement text (str is sent as UTF-8)."""
    text = sql.encode("utf-8") if isinstance(sql, str) else sql
    return bytes((Command.COM_QUERY,)) + text


def com_init_db(schema: str) -> bytes:
    """COM_INIT_DB: the schema name, unquoted, as UTF-8."""
    return bytes((Command.COM_INIT_DB,)) + schema.encode("utf-8")


def com_ping() -> bytes:
    return bytes((Command.COM_PING,))


def com_quit() -> bytes:
    return bytes((Command.COM_QUIT,))


def com_reset_connection() -> bytes:
    return bytes((Command.COM_RESET_CONNECTION,))


def com_statistics() -> bytes:
    return bytes((Command.COM_STATISTICS,))


def com_stmt_close(statement_id: int) -> bytes:
    """COM_STMT_CLOSE: statement_id as a 4-byte little-endian integer."""
    if not 0 <= statement_id <= 0xFFFFFFFF:
        raise ValueError(f"statement id out of range: {statement_id}")
    return bytes((Command.COM_STMT_CLOSE,)) + statement_id.to_bytes(4, "little")


def command_of(payload: bytes) -> Command | None:
    """The Command of a command payload; None if the payload is empty or the byte unknown."""
    if not payload:
        return None
    return _COMMAND_BY_BYTE.get(payload[0])
