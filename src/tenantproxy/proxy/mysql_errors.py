"""The MySQL errors the proxy itself sends, with MySQL's codes, SQL states and wording.

A client of the proxy should see what it would see from the server (REFERENCE.md, "MySQL errors a
client should see"), so that applications and drivers handle them as they already do.
"""

from __future__ import annotations

from typing import NamedTuple

from tenantproxy.wire.mysql.constants import Command


class MysqlError(NamedTuple):
    code: int
    sql_state: str
    message: str


def access_denied(user: str, host: str, *, is_password_used: bool) -> MysqlError:
    using = "YES" if is_password_used else "NO"
    return MysqlError(
        1045, "28000", f"Access denied for user '{user}'@'{host}' (using password: {using})"
    )


def database_access_denied(user: str, database: str) -> MysqlError:
    return MysqlError(
        1044, "42000", f"Access denied for user '{user}'@'%' to database '{database}'"
    )


INSECURE_TRANSPORT = MysqlError(
    3159,
    "HY000",
    "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
)
BORROW_TIMEOUT = MysqlError(9501, "HY000", "Timed-out waiting to acquire database connection")
TOO_MANY_CONNECTIONS = MysqlError(1040, "08004", "Too many connections")
BAD_HANDSHAKE = MysqlError(1043, "08S01", "Bad handshake")
PACKETS_OUT_OF_ORDER = MysqlError(1156, "08S01", "Got packets out of order")
PACKET_TOO_LARGE = MysqlError(1153, "08S01", "Got a packet bigger than 'max_allowed_packet' bytes")
MALFORMED_PACKET = MysqlError(1835, "HY000", "Malformed communication packet.")
SERVER_SHUTDOWN = MysqlError(1053, "08S01", "Server shutdown in progress")
IDLE_TIMEOUT = MysqlError(
    4031, "HY000", "The client was disconnected by the server because of inactivity."
)


def too_many_user_connections(user: str) -> MysqlError:
    return MysqlError(
        1203,
        "42000",
        f"User {user} already has more than 'max_user_connections' active connections",
    )


def backend_unavailable(target: str) -> MysqlError:
    # 2003 is what a client reports when it cannot reach a server; the proxy says it for the
    # database behind it, naming the target but nothing secret.
    return MysqlError(2003, "HY000", f"Can't connect to MySQL server '{target}' through the proxy")


def backend_lost() -> MysqlError:
    return MysqlError(2013, "HY000", "Lost connection to MySQL server during query")


def unknown_thread(thread_id: int) -> MysqlError:
    return MysqlError(1094, "HY000", f"Unknown thread id: {thread_id}")


UNKNOWN_COMMAND = MysqlError(1047, "08S01", "Unknown command")
REPLICATION_SLAVE_NEEDED = MysqlError(
    1227,
    "42000",
    "Access denied; you need (at least one of) the REPLICATION SLAVE privilege(s)"
    " for this operation",
)


def refused_command(command: int) -> MysqlError:
    """What MariaDB 10.11 answers a user without REPLICATION SLAVE: 1227 for COM_BINLOG_DUMP;
    COM_BINLOG_DUMP_GTID is MySQL's, unknown to MariaDB."""
    return REPLICATION_SLAVE_NEEDED if command == Command.COM_BINLOG_DUMP else UNKNOWN_COMMAND
