"""The STS adapter in-process (no sockets): requests boto3 would refuse to send, and the XML."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode
from xml.etree import ElementTree

import botocore.auth
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tenantproxy.identity import IdentityConfig, PrincipalConfig, RoleConfig, new_key, unseal
from tenantproxy.identity.sts import build_sts_app

NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}
KEY = new_key()
ACCESS_KEY_ID, SECRET_KEY = "AKIAEXAMPLE000000001", "a-secret-access-key-0123456789"
ROLE_POLICY = json.dumps({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}})
ROLE_ARN = "arn:aws:iam::123456789012:role/r"
CONFIG = IdentityConfig(
    account_id="123456789012",
    region="eu-west-1",
    key_file="unused.key",  # type: ignore[arg-type]
    max_session_duration_s=3600,
    roles=[RoleConfig(name="r", policy=ROLE_POLICY)],
    principals=[
        PrincipalConfig(
            name="p",
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_KEY,
            may_assume=[ROLE_ARN],
        )
    ],
)


class Clock:
    now = 1_700_000_000.0
    signing_offset_s = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The service's clock; botocore signs at the same time unless ``clock.signing_offset_s``."""
    clock = Clock()
    monkeypatch.setattr(
        botocore.auth,
        "get_current_datetime",
        lambda: dt.datetime.fromtimestamp(clock.now + clock.signing_offset_s, dt.UTC),
    )
    return clock


@pytest.fixture
async def client(clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_sts_app(CONFIG, KEY, clock=clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def call(
    client: httpx.AsyncClient,
    params: dict[str, str],
    *,
    key: tuple[str, str, str | None] = (ACCESS_KEY_ID, SECRET_KEY, None),
    region: str = "eu-west-1",
    sign: bool = True,
) -> tuple[int, ElementTree.Element]:
    body = urlencode({"Version": "2011-06-15", **params})
    request = AWSRequest(
        method="POST",
        url="http://testserver/",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    if sign:
        SigV4Auth(Credentials(*key), "sts", region).add_auth(request)
    response = await client.post("/", content=body, headers=dict(request.headers.items()))
    return response.status_code, ElementTree.fromstring(response.text)


def error_code(answer: tuple[int, ElementTree.Element]) -> tuple[int, str]:
    status, xml = answer
    return status, xml.findtext("sts:Error/sts:Code", namespaces=NS) or ""


async def assume(client: httpx.AsyncClient, **params: str) -> tuple[int, ElementTree.Element]:
    return await call(
        client, {"Action": "AssumeRole", "RoleArn": ROLE_ARN, "RoleSessionName": "s1", **params}
    )


async def test_assume_role_answers_sts_xml_and_seals_the_session(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    status, xml = await assume(client, DurationSeconds="900")
    assert status == 200
    credentials = xml.find("sts:AssumeRoleResult/sts:Credentials", NS)
    assert credentials is not None
    token = credentials.findtext("sts:SessionToken", namespaces=NS) or ""
    session = unseal(KEY, token)
    assert session == {
        "access_key_id": credentials.findtext("sts:AccessKeyId", namespaces=NS),
        "secret_access_key": credentials.findtext("sts:SecretAccessKey", namespaces=NS),
        "role_arn": ROLE_ARN,
        "role_policy": ROLE_POLICY,
        "session_policy": None,
        "session_name": "s1",
        "expires_at": int(clock.now) + 900,
    }
    assert credentials.findtext("sts:Expiration", namespaces=NS) == "2023-11-14T22:28:20Z"


async def test_the_default_duration_is_an_hour_capped_by_the_maximum(
    client: httpx.AsyncClient,
) -> None:
    status, xml = await assume(client)
    token = xml.findtext("sts:AssumeRoleResult/sts:Credentials/sts:SessionToken", namespaces=NS)
    assert status == 200 and unseal(KEY, token or "")["expires_at"] == 1_700_000_000 + 3600


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"DurationSeconds": "899"}, (400, "ValidationError")),
        ({"DurationSeconds": "3601"}, (400, "ValidationError")),
        ({"DurationSeconds": "soon"}, (400, "ValidationError")),
        ({"RoleSessionName": "a b"}, (400, "ValidationError")),
        ({"RoleSessionName": ""}, (400, "MissingParameter")),
        ({"Policy": "x" * 2049}, (400, "PackedPolicyTooLarge")),
        ({"Policy": "{}"}, (400, "MalformedPolicyDocument")),
    ],
)
async def test_invalid_parameters_get_sts_errors(
    client: httpx.AsyncClient, params: dict[str, str], expected: tuple[int, str]
) -> None:
    assert error_code(await assume(client, **params)) == expected


async def test_unknown_actions_and_versions_are_refused(client: httpx.AsyncClient) -> None:
    assert error_code(await call(client, {"Action": "GetSessionToken"})) == (400, "InvalidAction")
    answer = await call(client, {"Action": "GetCallerIdentity", "Version": "2020-01-01"})
    assert error_code(answer) == (400, "InvalidParameterValue")


async def test_unsigned_requests_are_refused(client: httpx.AsyncClient) -> None:
    assert error_code(await call(client, {"Action": "GetCallerIdentity"}, sign=False)) == (
        403,
        "IncompleteSignature",
    )


async def test_a_request_scoped_to_another_region_is_refused(client: httpx.AsyncClient) -> None:
    answer = await call(client, {"Action": "GetCallerIdentity"}, region="us-east-1")
    assert error_code(answer) == (403, "SignatureDoesNotMatch")


async def test_a_request_signed_more_than_15_minutes_away_is_refused(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    clock.signing_offset_s = -16 * 60
    assert error_code(await call(client, {"Action": "GetCallerIdentity"})) == (
        403,
        "SignatureDoesNotMatch",
    )


async def test_expired_temporary_credentials_get_expired_token(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    _, xml = await assume(client, DurationSeconds="900")
    credentials = xml.find("sts:AssumeRoleResult/sts:Credentials", NS)
    assert credentials is not None
    key = (
        credentials.findtext("sts:AccessKeyId", namespaces=NS) or "",
        credentials.findtext("sts:SecretAccessKey", namespaces=NS) or "",
        credentials.findtext("sts:SessionToken", namespaces=NS),
    )
    status, who = await call(client, {"Action": "GetCallerIdentity"}, key=key)
    assert status == 200
    assert who.findtext("sts:GetCallerIdentityResult/sts:Arn", namespaces=NS) == (
        "arn:aws:sts::123456789012:assumed-role/r/s1"
    )
    # a session cannot assume a role again (no role chaining)
    chained = await call(
        client, {"Action": "AssumeRole", "RoleArn": ROLE_ARN, "RoleSessionName": "s2"}, key=key
    )
    assert error_code(chained) == (403, "AccessDenied")
    clock.now += 901
    assert error_code(await call(client, {"Action": "GetCallerIdentity"}, key=key)) == (
        403,
        "ExpiredToken",
    )


async def test_error_answers_have_the_sts_shape(client: httpx.AsyncClient) -> None:
    status, xml = await assume(client, RoleArn="arn:aws:iam::123456789012:role/other")
    assert status == 403
    assert xml.tag == "{https://sts.amazonaws.com/doc/2011-06-15/}ErrorResponse"
    assert xml.findtext("sts:Error/sts:Type", namespaces=NS) == "Sender"
    assert xml.findtext("sts:RequestId", namespaces=NS)


@pytest.mark.parametrize(
    "params",
    [
        {"PolicyArns.member.1.arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
        {"Tags.member.1.Key": "team"},
        {"ExternalId": "x"},
    ],
)
async def test_an_assume_role_parameter_we_do_not_implement_is_refused_not_ignored(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    answer = await assume(client, **params)
    assert error_code(answer) == (400, "InvalidParameterValue")
    _, xml = answer
    message = xml.findtext("sts:Error/sts:Message", namespaces=NS) or ""
    assert next(iter(params)).split(".")[0] in message
