"""Token login, as the write-up's access function does it, against the real stack.

boto3 assumes the tenant-access role at the identity service with a session policy scoped to one
DB user, signs a db-auth token, and logs in to the proxy over TLS with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantproxy.config import IamAuthConfig
from tenantproxy.identity.access import TenantAccess
from tenantproxy.identity.tokens import generate_db_auth_token
from tests.integration.clients import ca_path, host_port, pymysql_connect
from tests.integration.identity_server import ACCOUNT_ID, REGION, IdentityServer
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.tenant_secrets import tokens_required_for

pytestmark = pytest.mark.integration


class AccessLayer:
    """What the write-up's Lambda function holds: the principal's keys and the stack's names."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs
        with open(outputs["AccessPrincipalCredentials"]) as handle:
            self._keys = json.load(handle)
        self.region = outputs["Region"]

    def db_user_arn(self, user: str) -> str:
        o = self.outputs
        return f"arn:aws:rds-db:{o['Region']}:{o['AccountId']}:dbuser:{o['ProxyResourceId']}/{user}"

    def assume(self, scope_user: str, role_arn: str | None = None) -> dict[str, Any]:
        sts = boto3.client(
            "sts",
            endpoint_url=self.outputs["IdentityEndpoint"],
            region_name=self.region,
            **self._keys,
        )
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "rds-db:connect",
                    "Resource": self.db_user_arn(scope_user),
                }
            ],
        }
        answer = sts.assume_role(
            RoleArn=role_arn or self.outputs["TenantAccessRoleArn"],
            RoleSessionName=f"tenant-{scope_user}",
            Policy=json.dumps(policy),
            DurationSeconds=900,
        )
        return dict(answer["Credentials"])

    def token(self, credentials: dict[str, Any], user: str, endpoint: str) -> str:
        host, port = host_port(endpoint)
        rds = boto3.client(
            "rds",
            region_name=self.region,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        return str(rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user))


@pytest.fixture(scope="module")
def access(stack: Any) -> AccessLayer:
    return AccessLayer(stack.outputs)


USERS = ["user100", "user101", "user102"]


@pytest.fixture(scope="module", autouse=True)
def tokens_required(stack: Any) -> Iterator[None]:
    with tokens_required_for(stack.outputs, USERS):
        yield


def reader(stack: Any) -> str:
    return str(stack.outputs["ProxyReaderEndpoint"])


def log_in(stack: Any, user: str, token: str, database: str, *, tls: bool = True) -> Any:
    ca_file = ca_path(stack.outputs) if tls else None
    return pymysql_connect(reader(stack), user, token, database, ca_file)


def login_error(stack: Any, user: str, token: str, database: str, **kw: Any) -> tuple[int, str]:
    with pytest.raises(pymysql.err.OperationalError) as caught:
        log_in(stack, user, token, database, **kw).close()
    return caught.value.args[0], caught.value.args[1]


def test_a_token_scoped_to_user100_reads_user100s_rows(stack, access):
    token = access.token(access.assume("user100"), "user100", reader(stack))
    connection = log_in(stack, "user100", token, "user_database100")
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM mytable WHERE ID IN (1, 2, 3, 4, 5)")
        assert len(cursor.fetchall()) == 5


def test_the_same_token_cannot_open_another_tenants_database(stack, access):
    token = access.token(access.assume("user100"), "user100", reader(stack))
    assert login_error(stack, "user100", token, "user_database101") == (
        1044,
        "Access denied for user 'user100'@'%' to database 'user_database101'",
    )


def test_the_same_token_cannot_log_in_as_another_user(stack, access):
    token = access.token(access.assume("user100"), "user100", reader(stack))
    code, message = login_error(stack, "user101", token, "user_database101")
    assert code == 1045
    assert message.startswith("Access denied for user 'user101'@")


def test_a_session_scoped_to_user101_cannot_log_in_as_user100(stack, access):
    token = access.token(access.assume("user101"), "user100", reader(stack))
    assert login_error(stack, "user100", token, "user_database100")[0] == 1045


def test_a_password_is_refused_when_the_secret_requires_a_token(stack):
    password = stack.secret("user100").password
    assert login_error(stack, "user100", password, "user_database100")[0] == 1045


def test_token_login_without_tls_gets_error_3159(stack, access):
    config = proxy_config_from_stack(stack.outputs, require_tls=False)
    with ProxyThread(config) as proxy:
        endpoint = proxy.endpoint("read_only")
        token = access.token(access.assume("user100"), "user100", endpoint)
        with pytest.raises(pymysql.err.OperationalError) as caught:
            pymysql_connect(endpoint, "user100", token, "user_database100", None)
    assert caught.value.args[0] == 3159


def own_token(access: AccessLayer, credentials: dict[str, Any], endpoint: str, **kw: Any) -> str:
    host, port = host_port(endpoint)
    arguments: dict[str, Any] = {
        "host": host,
        "port": port,
        "db_user": "user100",
        "region": access.region,
        "access_key_id": credentials["AccessKeyId"],
        "secret_access_key": credentials["SecretAccessKey"],
        "session_token": credentials["SessionToken"],
    }
    return generate_db_auth_token(**(arguments | kw))


def flip_last_char(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(
            lambda a, c, e: own_token(a, c, e, now=datetime.now(UTC) - timedelta(minutes=16)),
            id="expired",
        ),
        pytest.param(lambda a, c, e: flip_last_char(own_token(a, c, e)), id="tampered-signature"),
        pytest.param(
            lambda a, c, e: own_token(a, c, e, session_token=flip_last_char(c["SessionToken"])),
            id="tampered-sealed-session",
        ),
        pytest.param(
            lambda a, c, e: own_token(a, c, e, host="db.example.com", port=3306),
            id="signed-for-another-host",
        ),
        pytest.param(
            lambda a, c, e: own_token(a, c, e, secret_access_key="x" * 40),
            id="signed-with-another-key",
        ),
    ],
)
def test_a_spoiled_token_gets_error_1045(stack, access, spoil):
    credentials = access.assume("user100")
    token = spoil(access, credentials, reader(stack))
    code, message = login_error(stack, "user100", token, "user_database100")
    assert code == 1045
    assert token not in message


def test_a_token_reused_after_its_expiry_is_refused_even_when_cached(stack, access):
    with ProxyThread(proxy_config_from_stack(stack.outputs)) as proxy:
        endpoint = proxy.endpoint("read_only")
        credentials = access.assume("user100")
        almost_expired = datetime.now(UTC) - timedelta(seconds=890)
        token = own_token(access, credentials, endpoint, now=almost_expired)
        ca_file = ca_path(stack.outputs)
        pymysql_connect(endpoint, "user100", token, "user_database100", ca_file).close()
        assert proxy.call(lambda: cache_hits_and_misses(proxy)) == (0, 1)
        pymysql_connect(endpoint, "user100", token, "user_database100", ca_file).close()
        assert proxy.call(lambda: cache_hits_and_misses(proxy)) == (1, 1)
        # Past the token's 15 minutes and the allowed clock skew (60 s).
        proxy.call(lambda: move_clock(proxy, seconds=120))
        with pytest.raises(pymysql.err.OperationalError) as caught:
            pymysql_connect(endpoint, "user100", token, "user_database100", ca_file)
        assert caught.value.args[0] == 1045


def cache_hits_and_misses(proxy: ProxyThread) -> tuple[int, int]:
    assert proxy.server is not None and proxy.server.context.token_logins is not None
    logins = proxy.server.context.token_logins
    return logins.cache_hits, logins.cache_misses


def move_clock(proxy: ProxyThread, seconds: float) -> None:
    """Moves the proxy's token clock (and its verifier's) forward."""
    assert proxy.server is not None and proxy.server.context.token_logins is not None
    logins = proxy.server.context.token_logins
    real_clock = logins._clock
    logins._clock = lambda: real_clock() + seconds
    logins._verifier._clock = logins._clock


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scope=st.sampled_from(USERS), login=st.sampled_from(USERS), db=st.sampled_from(USERS))
def test_login_and_query_succeed_exactly_when_scope_user_and_database_match(
    stack, access, scope, login, db
):
    token = access.token(access.assume(scope), login, reader(stack))
    database = db.replace("user", "user_database")
    expected = scope == login == db
    try:
        with log_in(stack, login, token, database) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM mytable")
            succeeded = cursor.fetchone()[0] > 0
    except pymysql.err.OperationalError as exc:
        assert exc.args[0] in (1044, 1045)
        succeeded = False
    assert succeeded == expected


def test_an_explicit_deny_in_the_role_policy_wins_over_a_matching_session_policy(stack, tmp_path):
    """A second identity service whose role allows every DB user but denies user101."""
    resource = f"arn:aws:rds-db:{REGION}:{ACCOUNT_ID}:dbuser:{stack.outputs['ProxyResourceId']}"
    role_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "rds-db:connect", "Resource": f"{resource}/*"},
            {"Effect": "Deny", "Action": "rds-db:*", "Resource": f"{resource}/user101"},
        ],
    }
    role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/deny-one"
    principal = {
        "name": "tester",
        "access_key_id": "AKIATESTDENYONE0001",
        "secret_access_key": "test-secret-key-that-is-long-enough",
        "may_assume": [role_arn],
    }
    service = IdentityServer.start(tmp_path, {"deny-one": json.dumps(role_policy)}, [principal])
    try:
        key_file = tmp_path / "identity.key"
        iam = IamAuthConfig(
            key_file=key_file,
            region=REGION,
            account_id=ACCOUNT_ID,
            proxy_resource_id=stack.outputs["ProxyResourceId"],
        )
        with ProxyThread(proxy_config_from_stack(stack.outputs, iam_auth=iam)) as proxy:
            endpoint = proxy.endpoint("read_only")
            access = TenantAccess(
                sts_endpoint=service.url,
                region=REGION,
                account_id=ACCOUNT_ID,
                proxy_resource_id=stack.outputs["ProxyResourceId"],
                role_arn=role_arn,
                access_key_id=principal["access_key_id"],
                secret_access_key=principal["secret_access_key"],
            )
            host, port = host_port(endpoint)
            ca_file = ca_path(stack.outputs)
            for user, is_allowed in (("user100", True), ("user101", False)):
                token = access.token(access.assume(user), host, port, user)
                database = user.replace("user", "user_database")
                if is_allowed:
                    pymysql_connect(endpoint, user, token, database, ca_file).close()
                else:
                    with pytest.raises(pymysql.err.OperationalError) as caught:
                        pymysql_connect(endpoint, user, token, database, ca_file)
                    assert caught.value.args[0] == 1045
    finally:
        service.stop()


def test_change_user_to_a_token_tenant_without_tls_gets_error_3159(stack):
    import mysql.connector

    config = proxy_config_from_stack(stack.outputs, require_tls=False)
    with ProxyThread(config) as proxy:
        endpoint = proxy.endpoint("read_write")
        host, port = host_port(endpoint)
        connection = mysql.connector.connect(
            host=host,
            port=port,
            user="user5",
            password=stack.secret("user5").password,
            database="user_database5",
            ssl_disabled=True,
            use_pure=True,
        )
        try:
            with pytest.raises(mysql.connector.Error) as caught:
                connection.cmd_change_user(
                    username="user100", password="a-token", database="user_database100"
                )
            assert caught.value.errno == 3159
        finally:
            connection.close()
