"""GTID replication from a cluster's writer to its replicas.

Every instance starts from a fresh install with an empty binlog (see ``mariadb.create_admin``), so
a replica needs no dump: ``RESET MASTER; SET GLOBAL gtid_slave_pos=''`` and
``CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos``.
"""

from __future__ import annotations

import time

from tenantproxy.errors import StackError
from tenantproxy.stack.mariadb import HOST, AdminAccount, InstanceSpec, connect

_POLL_S = 0.05


def start_replica(replica: InstanceSpec, writer: InstanceSpec, admin: AdminAccount) -> None:
    """Points ``replica`` at ``writer`` and starts it replicating."""
    with connect(replica.port, admin) as conn, conn.cursor() as cursor:
        cursor.execute("STOP SLAVE")
        cursor.execute("RESET MASTER")
        cursor.execute("SET GLOBAL gtid_slave_pos=''")
        cursor.execute(
            "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
            "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
            (HOST, writer.port, admin.user, admin.password),
        )
        cursor.execute("START SLAVE")


def writer_position(writer: InstanceSpec, admin: AdminAccount) -> str:
    with connect(writer.port, admin) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT @@GLOBAL.gtid_binlog_pos")
        row = cursor.fetchone()
    return str(row[0]) if row else ""


def wait_caught_up(
    replica: InstanceSpec, position: str, admin: AdminAccount, timeout_s: float
) -> None:
    """Returns once ``replica`` has applied ``position``; names the replication error if not."""
    deadline = time.monotonic() + timeout_s
    with connect(replica.port, admin) as conn, conn.cursor() as cursor:
        while True:
            remaining = deadline - time.monotonic()
            # MASTER_GTID_WAIT returns 0 once the position is applied, -1 on timeout.
            cursor.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (position, min(1.0, remaining)))
            row = cursor.fetchone()
            if row is not None and row[0] == 0:
                return
            problem = _replication_problem(cursor)
            if problem:
                raise StackError(f"{replica.name}: replication stopped: {problem}")
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{replica.name} did not reach GTID {position} within {timeout_s:.0f} s"
                )


def _replication_problem(cursor: object) -> str:
    cursor.execute("SHOW SLAVE STATUS")  # type: ignore[attr-defined]
    row = cursor.fetchone()  # type: ignore[attr-defined]
    if row is None:
        return "the replica is not configured"
    columns = [column[0] for column in cursor.description]  # type: ignore[attr-defined]
    status = dict(zip(columns, row, strict=True))
    # While a thread runs, its last error may be a transient one it has retried past.
    for thread, error in (
        ("Slave_IO_Running", "Last_IO_Error"),
        ("Slave_SQL_Running", "Last_SQL_Error"),
    ):
        if status.get(thread) == "No" and status.get(error):
            return f"{error}: {status[error]}"
    return ""
