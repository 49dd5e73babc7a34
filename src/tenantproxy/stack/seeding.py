"""The write-up's dummy data, on a cluster's writer (replication carries it to the replicas).

Per tenant ``i``: user ``user{i}``@'%' (a random 32-character password, mysql_native_password),
database ``user_database{i}``, table ``mytable`` with ``rows`` rows of random integers
1..1,000,000 as strings, inserted with ONE multi-row INSERT, and the write-up's grant. A tenant's
statements go in one round trip (multi-statements).

The rows of tenant ``i`` come from a generator seeded with ``(data_seed, i)``, so two clusters
seeded with the same seed hold the same data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pymysql
from pymysql.constants import CLIENT

from tenantproxy.errors import StackError
from tenantproxy.stack.mariadb import AdminAccount, InstanceSpec, connect, random_password

_COLUMNS = ("Column_A", "Column_B", "Column_C", "Column_D", "Column_E")
_TABLE = (
    "CREATE TABLE {db}.mytable (ID INT AUTO_INCREMENT PRIMARY KEY, "
    + ", ".join(f"{column} VARCHAR(10)" for column in _COLUMNS)
    + ")"
)
_GRANT = "GRANT SELECT, INSERT, UPDATE, CREATE VIEW, SHOW VIEW ON {db}.* TO '{user}'@'%'"


@dataclass(frozen=True)
class Tenant:
    index: int
    password: str = field(repr=False)

    @property
    def user(self) -> str:
        return f"user{self.index}"

    @property
    def database(self) -> str:
        return f"user_database{self.index}"


def make_tenants(count: int) -> list[Tenant]:
    return [Tenant(i, random_password()) for i in range(count)]


def tenant_sql(tenant: Tenant, rows: int, data_seed: int, pam_service: str | None = None) -> str:
    """Every statement that creates one tenant, as one multi-statement string; with
    ``pam_service``, the user logs in with a db-auth token that PAM checks (pam_login.py)."""
    db = tenant.database
    identified = (
        f"IDENTIFIED BY '{tenant.password}'"
        if pam_service is None
        # RDS takes tokens over TLS only: the clear-text token must not cross in the open.
        else f"IDENTIFIED VIA pam USING '{pam_service}' REQUIRE SSL"
    )
    statements = [
        f"CREATE USER '{tenant.user}'@'%' {identified}",
        f"CREATE DATABASE {db}",
        _TABLE.format(db=db),
    ]
    if rows:
        generator = random.Random(data_seed * 1_000_003 + tenant.index)
        values = ",".join(
            "('{}','{}','{}','{}','{}')".format(
                *(generator.randint(1, 1_000_000) for _ in _COLUMNS)
            )
            for _ in range(rows)
        )
        statements.append(f"INSERT INTO {db}.mytable ({', '.join(_COLUMNS)}) VALUES {values}")
    statements.append(_GRANT.format(db=db, user=tenant.user))
    return ";\n".join(statements)


def seed(
    writer: InstanceSpec,
    admin: AdminAccount,
    tenants: list[Tenant],
    rows: int,
    data_seed: int,
    on_tenant: Callable[[Tenant], None] = lambda _tenant: None,
    pam_service: str | None = None,
) -> None:
    """Creates every tenant on ``writer``; calls ``on_tenant`` after each one."""
    passwords: Mapping[str, str] = {t.user: t.password for t in tenants}
    conn = connect(writer.port, admin, client_flag=CLIENT.MULTI_STATEMENTS)
    try:
        with conn.cursor() as cursor:
            for tenant in tenants:
                try:
                    cursor.execute(tenant_sql(tenant, rows, data_seed, pam_service))
                    while cursor.nextset():
                        pass
                except pymysql.MySQLError as exc:
                    # A server message may quote the statement: keep passwords out of it.
                    message = str(exc)
                    for password in passwords.values():
                        message = message.replace(password, "********")
                    raise StackError(
                        f"{writer.name}: seeding {tenant.user} failed: {message}"
                    ) from None
                on_tenant(tenant)
    finally:
        conn.close()
