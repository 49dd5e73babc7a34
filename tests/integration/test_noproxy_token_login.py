"""Token login checked by MariaDB itself, on the no-proxy cluster (noproxy_auth = "token").

The write-up's Aurora users are IDENTIFIED WITH AWSAuthenticationPlugin; ours are IDENTIFIED VIA
pam, and MariaDB's auth_pam runs the stack's PAM service, which asks the db-login checker. The
client is the write-up's no-proxy Lambda: AssumeRole scoped to the tenant, a token signed for the
replica, a clear-text login over TLS. Each refusal must be MariaDB's 1045, for the right reason
(the checker's log names the rule that refused).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymysql
import pytest

from tenantproxy.identity.access import TemporaryCredentials, TenantAccess
from tenantproxy.identity.tokens import generate_db_auth_token
from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.integration

USER = "user7"
IDS = (1, 2, 3, 4, 5)


def _access(stack: RunningStack) -> TenantAccess:
    return TenantAccess.from_outputs(stack.outputs)


def _replicas(stack: RunningStack) -> list[tuple[str, int]]:
    endpoints = stack.outputs["NoProxyReplicaEndpoints"]
    return [(e.rsplit(":", 1)[0], int(e.rsplit(":", 1)[1])) for e in endpoints]


def _assume(stack: RunningStack, scope_user: str) -> TemporaryCredentials:
    return _access(stack).assume(scope_user, resource_id=stack.outputs["NoProxyResourceId"])


def _login(stack: RunningStack, host: str, port: int, password: str, *, tls: bool = True) -> int:
    """Logs in as USER and counts the rows of the write-up's SELECT."""
    connection = pymysql.connect(
        host=host,
        port=port,
        user=USER,
        password=password,
        database="user_database7",
        ssl={"ca": stack.outputs["CACertificate"]} if tls else None,
        ssl_disabled=not tls,
        connect_timeout=10,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM mytable WHERE ID IN {IDS}")
            return len(cursor.fetchall())
    finally:
        connection.close()


def _refused(stack: RunningStack, host: str, port: int, password: str, **kwargs: bool) -> int:
    with pytest.raises(pymysql.err.OperationalError) as caught:
        _login(stack, host, port, password, **kwargs)
    code: int = caught.value.args[0]
    return code


def _checker_log(stack: RunningStack) -> str:
    return (Path(stack.outputs["StateDir"]) / "dblogin.log").read_text()


def test_the_noproxy_cluster_checks_tokens_itself(stack: RunningStack) -> None:
    assert stack.outputs["NoProxyAuth"] == "token"
    admin = stack.admin_connect(stack.outputs["NoProxyReaderEndpoint"])
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT plugin, authentication_string FROM mysql.user WHERE user=%s", (USER,)
        )
        assert cursor.fetchone() == ("pam", stack.outputs["NoProxyPamService"])
    admin.close()


def test_a_valid_token_signed_for_the_replica_logs_in_and_reads_five_rows(
    stack: RunningStack,
) -> None:
    access = _access(stack)
    for host, port in _replicas(stack):
        token = access.token(_assume(stack, USER), host, port, USER)
        assert _login(stack, host, port, token) == 5


def test_the_database_refuses_bad_tokens_with_1045_each_for_its_reason(
    stack: RunningStack,
) -> None:
    access = _access(stack)
    (host, port), (other_host, other_port) = _replicas(stack)[:2]
    credentials = _assume(stack, USER)
    twenty_minutes_ago = datetime.now(UTC) - timedelta(minutes=20)
    expired = generate_db_auth_token(
        host=host,
        port=port,
        db_user=USER,
        region=access.region,
        access_key_id=credentials.access_key_id,
        secret_access_key=credentials.secret_access_key,
        session_token=credentials.session_token,
        now=twenty_minutes_ago,
    )
    other_user = access.token(_assume(stack, "user8"), host, port, "user8")
    other_host_token = access.token(credentials, other_host, other_port, USER)
    other_tenant_policy = access.token(_assume(stack, "user8"), host, port, USER)
    cases = {
        "token expired": expired,
        "token's DBUser is not the login user": other_user,
        "token was signed for another host": other_host_token,
        "dbuser:cluster-noproxy/user7 denied": other_tenant_policy,
    }
    for reason, token in cases.items():
        assert _refused(stack, host, port, token) == 1045, reason
        assert reason in _checker_log(stack), reason
    # The checker never writes a token into its log.
    assert all(token not in _checker_log(stack) for token in cases.values())


def test_a_valid_token_without_tls_is_refused(stack: RunningStack) -> None:
    host, port = _replicas(stack)[0]
    token = _access(stack).token(_assume(stack, USER), host, port, USER)
    assert _refused(stack, host, port, token, tls=False) == 1045
