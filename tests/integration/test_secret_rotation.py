"""Rotation: a database that rejects a cached password makes the proxy re-read the secret once.

The proxy reads secrets from AWS Secrets Manager (moto's server) and caches them for five minutes.
The tenant logs in with tokens, so only the proxy's backend login uses the password.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from tenantproxy.config import AwsSecretStoreConfig
from tenantproxy.identity.access import TenantAccess
from tenantproxy.secretstore import Secret
from tests.integration.clients import ca_path, host_port, pymysql_connect
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack

pytestmark = pytest.mark.integration

TENANT = "user50"
REGION = "us-east-1"
NEW_PASSWORD = "rotated-password-0123456789abcdef"


def set_password(stack: Any, password: str) -> None:
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute(f"ALTER USER '{TENANT}'@'%%' IDENTIFIED BY %s", (password,))


def backend_threads(stack: Any) -> list[int]:
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (TENANT,))
        return [row[0] for row in cursor.fetchall()]


def test_a_rotated_password_is_picked_up_when_the_database_rejects_the_cached_one(
    stack, moto_endpoint, monkeypatch
):
    # The proxy's boto3 client takes its (dummy) credentials from the environment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    manager = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    old = stack.secret(TENANT)
    required = Secret.from_dict({**old.to_dict(), "iam_auth": "required"})
    name = f"rotation/{TENANT}"
    manager.create_secret(Name=name, SecretString=required.to_json())
    store = AwsSecretStoreConfig(endpoint_url=moto_endpoint, region=REGION, cache_ttl_s=300)
    config = proxy_config_from_stack(
        stack.outputs,
        secret_store=store,
        secret_name_prefix="rotation/",
        backend_check_after_idle_s=0.0,
    )
    access = TenantAccess.from_outputs(stack.outputs)
    try:
        with ProxyThread(config) as proxy:
            endpoint = proxy.endpoint("read_write")
            host, port = host_port(endpoint)
            database = old.dbname

            def log_in_and_count() -> int:
                token = access.token(access.assume(TENANT), host, port, TENANT)
                with (
                    pymysql_connect(
                        endpoint, TENANT, token, database, ca_path(stack.outputs)
                    ) as connection,
                    connection.cursor() as cursor,
                ):
                    cursor.execute("SELECT COUNT(*) FROM mytable")
                    return int(cursor.fetchone()[0])

            assert log_in_and_count() > 0  # the secret is now cached, old password
            set_password(stack, NEW_PASSWORD)
            rotated = Secret.from_dict({**required.to_dict(), "password": NEW_PASSWORD})
            manager.put_secret_value(SecretId=name, SecretString=rotated.to_json())
            with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
                for thread_id in backend_threads(stack):  # the warm backend goes away
                    cursor.execute(f"KILL {thread_id}")
            assert log_in_and_count() > 0  # a new backend, with the re-read password
    finally:
        set_password(stack, old.password)
