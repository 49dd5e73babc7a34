"""The identity service, run as `tenantproxy identity run`, driven by boto3 unchanged."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tenantproxy.identity import DbAuthTokenVerifier, TokenRejected
from tests.integration.identity_server import ACCOUNT_ID, REGION, IdentityServer

pytestmark = pytest.mark.integration

PROXY_ID = "prx-it"
HOST, PORT = "127.0.0.1", 3306
ACCESS_KEY_ID, SECRET_KEY = "AKIAACCESSAPI00000001", "access-api-secret-key-0123456789abcdef"
OTHER_KEY_ID, OTHER_SECRET = "AKIAOTHERPRINCIPAL01", "other-principal-secret-0123456789"
TENANT_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/tenant-access"
ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/admin"


def policy(resource: str) -> str:
    statement = {"Effect": "Allow", "Action": "rds-db:connect", "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def user_arn(user: str) -> str:
    return f"arn:aws:rds-db:{REGION}:{ACCOUNT_ID}:dbuser:{PROXY_ID}/{user}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    folder: Path = tmp_path_factory.mktemp("identity")
    started = IdentityServer.start(
        folder,
        roles={"tenant-access": policy(user_arn("*")), "admin": policy("*")},
        principals=[
            {
                "name": "access-api",
                "access_key_id": ACCESS_KEY_ID,
                "secret_access_key": SECRET_KEY,
                "may_assume": [TENANT_ROLE],
            },
            {
                "name": "other",
                "access_key_id": OTHER_KEY_ID,
                "secret_access_key": OTHER_SECRET,
                "may_assume": [],
            },
        ],
    )
    yield started
    assert started.stop() == 0


def sts(server: IdentityServer, **credentials: Any) -> Any:
    credentials = credentials or {
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_KEY,
    }
    return boto3.client("sts", endpoint_url=server.url, region_name=REGION, **credentials)


def error_of(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def assume(server: IdentityServer, **overrides: Any) -> Any:
    arguments = {
        "RoleArn": TENANT_ROLE,
        "RoleSessionName": "s1",
        "Policy": policy(user_arn("user7")),
        "DurationSeconds": 900,
    }
    return sts(server).assume_role(**{**arguments, **overrides})


def test_assumed_role_credentials_make_tokens_the_verifier_accepts_for_the_allowed_user_only(
    server: IdentityServer,
) -> None:
    before = time.time()
    answer = assume(server, RoleSessionName="tenant7")
    credentials = answer["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIA") and len(credentials["AccessKeyId"]) == 20
    assert len(credentials["SecretAccessKey"]) == 40
    assert before + 890 < credentials["Expiration"].timestamp() < time.time() + 910
    assert answer["AssumedRoleUser"]["Arn"].endswith(":assumed-role/tenant-access/tenant7")

    rds = boto3.client(
        "rds",
        region_name=REGION,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    verifier = DbAuthTokenVerifier(
        sealing_key=server.key,
        region=REGION,
        account_id=ACCOUNT_ID,
        proxy_resource_id=PROXY_ID,
        allowed_hosts=[f"{HOST}:{PORT}"],
    )
    login = verifier.verify(rds.generate_db_auth_token(HOST, PORT, "user7"), "user7")
    assert (login.role_arn, login.session_name) == (TENANT_ROLE, "tenant7")
    with pytest.raises(TokenRejected, match="no allow in session policy"):
        verifier.verify(rds.generate_db_auth_token(HOST, PORT, "user8"), "user8")


def test_get_caller_identity_works_with_long_term_and_temporary_credentials(
    server: IdentityServer,
) -> None:
    me = sts(server).get_caller_identity()
    assert (me["Account"], me["Arn"]) == (ACCOUNT_ID, f"arn:aws:iam::{ACCOUNT_ID}:user/access-api")
    credentials = assume(server, RoleSessionName="who")["Credentials"]
    session = sts(
        server,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    assert session.get_caller_identity()["Arn"] == (
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/tenant-access/who"
    )


def test_a_wrong_secret_key_gives_signature_does_not_match(server: IdentityServer) -> None:
    client = sts(server, aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key="wrong" * 8)
    assert error_of(client.get_caller_identity)[:2] == ("SignatureDoesNotMatch", 403)


def test_an_unknown_key_gives_invalid_client_token_id(server: IdentityServer) -> None:
    client = sts(server, aws_access_key_id="AKIAUNKNOWN000000000", aws_secret_access_key="x" * 40)
    assert error_of(client.get_caller_identity)[:2] == ("InvalidClientTokenId", 403)


def test_a_forged_session_token_gives_invalid_client_token_id(server: IdentityServer) -> None:
    client = sts(
        server,
        aws_access_key_id="ASIAFORGED0000000000",
        aws_secret_access_key="x" * 40,
        aws_session_token="v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    assert error_of(client.get_caller_identity)[:2] == ("InvalidClientTokenId", 403)


def test_a_role_the_caller_may_not_assume_gives_access_denied(server: IdentityServer) -> None:
    code, status, message = error_of(
        sts(server).assume_role, RoleArn=ADMIN_ROLE, RoleSessionName="s1"
    )
    assert (code, status) == ("AccessDenied", 403)
    assert "sts:AssumeRole" in message and ADMIN_ROLE in message
    other = sts(server, aws_access_key_id=OTHER_KEY_ID, aws_secret_access_key=OTHER_SECRET)
    assert error_of(other.assume_role, RoleArn=TENANT_ROLE, RoleSessionName="s1")[0] == (
        "AccessDenied"
    )
    unknown_role = f"arn:aws:iam::{ACCOUNT_ID}:role/nope"
    assert error_of(sts(server).assume_role, RoleArn=unknown_role, RoleSessionName="s1")[0] == (
        "AccessDenied"
    )


def test_a_policy_over_2048_characters_gives_packed_policy_too_large(
    server: IdentityServer,
) -> None:
    big = json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}] * 40}
    )
    assert len(big) > 2048
    code, status, _ = error_of(assume, server=server, Policy=big[:3000] if len(big) > 3000 else big)
    assert (code, status) == ("PackedPolicyTooLarge", 400)


def test_a_malformed_policy_gives_malformed_policy_document_with_the_reason(
    server: IdentityServer,
) -> None:
    bad = json.dumps({"Statement": [{"Effect": "Permit", "Action": "*", "Resource": "*"}]})
    code, status, message = error_of(assume, server=server, Policy=bad)
    assert (code, status) == ("MalformedPolicyDocument", 400)
    assert message == "Statement[0].Effect must be Allow or Deny"
    condition = json.dumps(
        {"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {}}}
    )
    assert error_of(assume, server=server, Policy=condition)[2] == (
        "Statement[0].Condition is not supported"
    )


def test_a_duration_past_the_maximum_is_a_validation_error(server: IdentityServer) -> None:
    code, status, _ = error_of(assume, server=server, DurationSeconds=3601)
    assert (code, status) == ("ValidationError", 400)
