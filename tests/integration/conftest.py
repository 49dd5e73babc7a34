"""Fixtures that run a real stack (MariaDB clusters, and the proxy) for integration tests.

``stack`` (session scope) brings a small stack up in a pytest temporary folder (both clusters,
the identity service, the proxy, the access API) and takes it down at the end, also when tests
fail.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
from rich.console import Console

from tenantproxy.config import FileSecretStoreConfig
from tenantproxy.secretstore import FileSecretStore, Secret
from tenantproxy.stack import StackSettings, down, up
from tenantproxy.stack.outputs import read_admin_credentials
from tests.integration.moto_server import moto_endpoint  # noqa: F401  (a fixture for all)


@dataclass
class RunningStack:
    """A stack that is up: its outputs, and helpers to reach it."""

    state_dir: Path
    outputs: dict[str, Any]
    settings: StackSettings

    def secret(self, user: str) -> Secret:
        store = FileSecretStore.from_config(
            FileSecretStoreConfig(
                path=Path(self.outputs["SecretStore"]),
                key_file=Path(self.outputs["SecretsKeyFile"]),
            )
        )
        return store.get(f"tenants/{user}")

    @property
    def proxy_writer(self) -> str:
        """host:port of the proxy cluster's writer, which the read/write endpoint reaches too."""
        instances = self.outputs["ProxyClusterInstances"]
        return str(next(i["endpoint"] for i in instances if i["role"] == "writer"))

    def admin_connect(self, host_port: str, **kwargs: Any) -> pymysql.connections.Connection:  # type: ignore[type-arg]
        """A PyMySQL connection as the stack's admin, over TLS verified with the stack's CA."""
        admin = read_admin_credentials(Path(self.outputs["AdminCredentials"]))
        host, port = host_port.rsplit(":", 1)
        return pymysql.connect(
            host=host,
            port=int(port),
            user=admin.user,
            password=admin.password,
            ssl={"ca": self.outputs["CACertificate"]},
            autocommit=True,
            connect_timeout=10,
            **kwargs,
        )


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=120)


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> StackSettings:
    return StackSettings(
        # Past 101, so that the write-up's user100/user101 demonstration runs as written.
        tenants=110,
        rows=50,
        # Password login for most tests; test_token_login turns tokens on for its tenants.
        iam_auth="disabled",
        replicas=2,
        load_test=True,
        state_dir=tmp_path_factory.mktemp("stack") / "state",
    )


@contextmanager
def running_stack(settings: StackSettings) -> Iterator[RunningStack]:
    """A stack brought up with ``settings``, and down again on any exit."""
    console = quiet_console()
    try:
        result = up(settings, console)
        yield RunningStack(settings.state_dir.absolute(), result.outputs, settings)
    finally:
        down(settings.state_dir, console, settings.stop_timeout_s)


@pytest.fixture(scope="session")
def stack(stack_settings: StackSettings) -> Iterator[RunningStack]:
    with running_stack(stack_settings) as running:
        yield running
