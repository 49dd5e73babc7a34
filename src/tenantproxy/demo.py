"""`tenantproxy demo`: a scripted session through the proxy that prints what it does.

Logins over TLS (with db-auth tokens where the tenant's secret requires them, as the write-up's
access function does, else with the tenant's password), queries on both endpoints, denied
cross-tenant accesses, a wrong credential, and backend reuse seen from the database side.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
from rich.console import Console
from rich.table import Table

from tenantproxy.config import FileSecretStoreConfig
from tenantproxy.identity.access import TenantAccess
from tenantproxy.secretstore import FileSecretStore

SECRET_PREFIX = "tenants/"


class ScriptedSession:
    def __init__(self, outputs: dict[str, Any], tenants: int, rows: int, console: Console) -> None:
        self._outputs = outputs
        self._tenants = tenants
        self._rows = max(rows, 1)
        self._console = console
        self._tls = ssl.create_default_context(cafile=outputs["CACertificate"])
        self._tls.check_hostname = False
        self._access = TenantAccess.from_outputs(outputs) if "IdentityEndpoint" in outputs else None
        self._secrets = FileSecretStore.from_config(
            FileSecretStoreConfig(
                path=Path(outputs["SecretStore"]), key_file=Path(outputs["SecretsKeyFile"])
            )
        )

    def run(self) -> None:
        tenant = min(7, self._tenants - 1)
        other = (tenant + 1) % self._tenants
        self._say("Endpoints", "")
        for key in ("ProxyEndpoint", "ProxyReaderEndpoint", "NoProxyReaderEndpoint"):
            self._console.print(f"  {key:<24} {self._outputs.get(key)}")
        self.read_rows(tenant)
        self.write_then_read_on_a_replica(tenant)
        self.cross_tenant_access_is_denied(tenant, other)
        if self._uses_tokens(tenant):
            self.token_for_one_tenant_does_not_open_another(tenant, other)
        self.wrong_password_is_denied(tenant)
        self.backends_are_reused(tenant)

    def read_rows(self, tenant: int) -> None:
        ids = sorted(random.sample(range(1, self._rows + 1), min(5, self._rows)))
        self._say(
            f"user{tenant} logs in to the reader endpoint over TLS and reads its rows",
            f"SELECT * FROM mytable WHERE ID IN ({', '.join(map(str, ids))})",
        )
        with self._connect("ProxyReaderEndpoint", tenant) as connection:
            cursor = connection.cursor()
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            cursor.execute(f"SELECT * FROM mytable WHERE ID IN ({', '.join(map(str, ids))})")
            table = Table(*(column[0] for column in cursor.description))
            for row in cursor.fetchall():
                table.add_row(*(str(value) for value in row))
            self._console.print(table)

    def write_then_read_on_a_replica(self, tenant: int) -> None:
        marker = f"demo{random.randint(0, 99999)}"[:10]
        self._say(
            f"user{tenant} writes through the read/write endpoint; a replica has it soon after",
            f"INSERT INTO mytable (Column_A) VALUES ('{marker}')",
        )
        with self._connect("ProxyEndpoint", tenant) as connection:
            connection.cursor().execute("INSERT INTO mytable (Column_A) VALUES (%s)", (marker,))
            connection.commit()
        self._write_the_same_on_the_noproxy_cluster(tenant, marker)
        started = time.monotonic()
        with self._connect("ProxyReaderEndpoint", tenant) as connection:
            cursor = connection.cursor()
            while time.monotonic() - started < 10:
                cursor.execute("SELECT COUNT(*) FROM mytable WHERE Column_A = %s", (marker,))
                if cursor.fetchone()[0]:
                    waited_ms = (time.monotonic() - started) * 1000
                    self._console.print(f"  the replica has the row after {waited_ms:.0f} ms")
                    return
                time.sleep(0.05)
        self._console.print("  [red]the row did not reach the replica within 10 s")

    def _write_the_same_on_the_noproxy_cluster(self, tenant: int, marker: str) -> None:
        """Both clusters keep the same data, so that the load test compares like with like."""
        endpoint = self._outputs.get("NoProxyWriterEndpoint")
        if not endpoint:
            return
        host, port = endpoint.rsplit(":", 1)
        secret = self._secrets.get(f"{SECRET_PREFIX}user{tenant}")
        password = secret.password
        if self._outputs.get("NoProxyAuth") == "token" and self._access is not None:
            # The no-proxy cluster checks db-auth tokens itself (noproxy_auth = "token").
            credentials = self._access.assume(
                secret.username, resource_id=self._outputs["NoProxyResourceId"]
            )
            password = self._access.token(credentials, host, int(port), secret.username)
        connection = pymysql.connect(
            host=host,
            port=int(port),
            user=secret.username,
            password=password,
            database=secret.dbname,
            ssl=self._tls,
            connect_timeout=10,
        )
        with connection:
            connection.cursor().execute("INSERT INTO mytable (Column_A) VALUES (%s)", (marker,))
            connection.commit()

    def cross_tenant_access_is_denied(self, tenant: int, other: int) -> None:
        self._say(
            f"user{tenant} asks for user_database{other}, another tenant's database",
            f"connect user{tenant} → user_database{other}",
        )
        self._show_refusal(lambda: self._connect("ProxyReaderEndpoint", tenant, other))

    def token_for_one_tenant_does_not_open_another(self, tenant: int, other: int) -> None:
        self._say(
            f"a token from a session scoped to user{tenant} is used to log in as user{other}",
            f"AssumeRole with a session policy on dbuser/user{tenant} → token for user{other}",
        )
        self._show_refusal(
            lambda: self._connect("ProxyReaderEndpoint", other, scope_user=f"user{tenant}")
        )

    def wrong_password_is_denied(self, tenant: int) -> None:
        self._say(f"user{tenant} logs in with a wrong password or token", "connect with 'wrong'")
        self._show_refusal(lambda: self._connect("ProxyReaderEndpoint", tenant, password="wrong"))

    def backends_are_reused(self, tenant: int) -> None:
        logins = 20
        self._say(
            f"{logins} logins in a row as user{tenant}, each asking the database its thread id",
            "SELECT CONNECTION_ID()",
        )
        backend_ids = set()
        for _ in range(logins):
            with self._connect("ProxyReaderEndpoint", tenant) as connection:
                cursor = connection.cursor()
                cursor.execute("SELECT CONNECTION_ID()")
                backend_ids.add(cursor.fetchone()[0])
        self._console.print(
            f"  {logins} client connections were served by {len(backend_ids)} database "
            "connection(s): the proxy keeps them warm and resets them between clients"
        )

    # -- helpers ---------------------------------------------------------------------------

    def _uses_tokens(self, tenant: int) -> bool:
        secret = self._secrets.get(f"{SECRET_PREFIX}user{tenant}")
        return secret.extra.get("iam_auth") == "required" and self._access is not None

    def _credential(self, tenant: int, host: str, port: int, scope_user: str | None) -> str:
        """The tenant's token when its secret requires one (scoped to ``scope_user``), else
        its password."""
        user = f"user{tenant}"
        if not self._uses_tokens(tenant):
            return self._secrets.get(f"{SECRET_PREFIX}{user}").password
        assert self._access is not None
        credentials = self._access.assume(scope_user or user)
        return self._access.token(credentials, host, port, user)

    @contextmanager
    def _connect(
        self,
        endpoint_key: str,
        tenant: int,
        database: int | None = None,
        password: str = "",
        scope_user: str | None = None,
    ) -> Iterator[pymysql.Connection[Any]]:
        host, port = self._outputs[endpoint_key].rsplit(":", 1)
        connection = pymysql.connect(
            host=host,
            port=int(port),
            user=f"user{tenant}",
            password=password or self._credential(tenant, host, int(port), scope_user),
            database=f"user_database{tenant if database is None else database}",
            ssl=self._tls,
            connect_timeout=10,
        )
        try:
            yield connection
        finally:
            connection.close()

    def _show_refusal(self, attempt: Any) -> None:
        try:
            with attempt():
                pass
        except pymysql.err.OperationalError as exc:
            code, message = exc.args
            self._console.print(f"  refused: ERROR {code}: {message}")
            return
        self._console.print("  [red]unexpectedly accepted")

    def _say(self, title: str, detail: str) -> None:
        self._console.print()
        self._console.print(f"[bold]▶ {title}")
        if detail:
            self._console.print(f"  [dim]{detail}")
