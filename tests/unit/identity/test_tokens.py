"""db-auth tokens: boto3's verify, ours equal boto3's, and each way to fail has its own reason."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.auth
import pytest

from tenantproxy.identity import (
    DbAuthTokenVerifier,
    TokenRejected,
    VerifiedLogin,
    generate_db_auth_token,
    new_key,
    seal,
)

KEY = new_key()
REGION, ACCOUNT, PROXY_ID = "eu-west-1", "123456789012", "prx-test"
HOST, PORT, USER = "proxy.example.com", 3306, "user7"
SIGNED_AT = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
NOW = SIGNED_AT.timestamp()
ACCESS_KEY_ID, SECRET_KEY = "ASIAABCDEFGHIJKLMNOP", "TemporarySecretKey/0123456789+abcdefghijk"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/tenant-access"


def policy(resource: str, effect: str = "Allow") -> str:
    statement = {"Effect": effect, "Action": "rds-db:connect", "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


ROLE_POLICY = policy(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{PROXY_ID}/*")
SESSION_POLICY = policy(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{PROXY_ID}/{USER}")


def session_token(**changes: Any) -> str:
    session = {
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_KEY,
        "role_arn": ROLE_ARN,
        "role_policy": ROLE_POLICY,
        "session_policy": SESSION_POLICY,
        "session_name": "tenant7",
        "expires_at": int(NOW) + 3600,
    }
    return seal(KEY, {**session, **changes})


SESSION_TOKEN = session_token()


def make_token(**changes: Any) -> str:
    arguments: dict[str, Any] = {
        "host": HOST,
        "port": PORT,
        "db_user": USER,
        "region": REGION,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_KEY,
        "session_token": SESSION_TOKEN,
        "now": SIGNED_AT,
    }
    return generate_db_auth_token(**{**arguments, **changes})


def verifier(clock: Callable[[], float] = lambda: NOW, **changes: Any) -> DbAuthTokenVerifier:
    arguments: dict[str, Any] = {
        "sealing_key": KEY,
        "region": REGION,
        "account_id": ACCOUNT,
        "proxy_resource_id": PROXY_ID,
        "allowed_hosts": [f"{HOST}:{PORT}", "other:3307"],
        "clock": clock,
    }
    return DbAuthTokenVerifier(**{**arguments, **changes})


@pytest.fixture
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNED_AT)
    yield


def boto3_token(host: str = HOST, user: str = USER) -> str:
    client = boto3.client(
        "rds",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
    )
    return str(client.generate_db_auth_token(host, PORT, user))


def test_a_token_made_by_boto3_verifies(frozen_botocore: None) -> None:
    login = verifier().verify(boto3_token(), USER)
    assert login == VerifiedLogin(USER, ROLE_ARN, "tenant7", NOW + 900)


def test_our_token_equals_boto3s_for_the_same_inputs_and_time(frozen_botocore: None) -> None:
    assert make_token() == boto3_token()
    assert make_token(host="Proxy.Example.COM") == boto3_token(host="Proxy.Example.COM")


def test_host_names_compare_case_insensitively() -> None:
    verifier().verify(make_token(host="PROXY.example.com"), USER)


def test_the_login_expires_with_the_session_when_that_comes_first() -> None:
    token = make_token(session_token=session_token(expires_at=int(NOW) + 60))
    assert verifier().verify(token, USER).expires_at == NOW + 60


def test_tokens_are_valid_within_the_clock_skew() -> None:
    verifier(clock=lambda: NOW - 59).verify(make_token(), USER)
    verifier(clock=lambda: NOW + 900 + 59).verify(make_token(), USER)


def tamper_signature(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("0" if last != "0" else "1")


def tamper_session(token: str) -> str:
    marker = "X-Amz-Security-Token=v1."
    start = token.index(marker) + len(marker) + 20
    return token[:start] + ("A" if token[start] != "A" else "B") + token[start + 1 :]


def without_security_token(token: str) -> str:
    parts = [p for p in token.split("&") if not p.startswith("X-Amz-Security-Token=")]
    return "&".join(parts)


# (name, token, login user, verifier changes, reason)
REJECTIONS: list[tuple[str, Callable[[], str], str, dict[str, Any], str]] = [
    ("expired", make_token, USER, {"clock": lambda: NOW + 900 + 61}, "token expired"),
    ("future", make_token, USER, {"clock": lambda: NOW - 61}, "token is dated in the future"),
    (
        "expires 901",
        lambda: make_token(expires_s=901),
        USER,
        {},
        "token's X-Amz-Expires is not within 1..900",
    ),
    ("expires 0", lambda: make_token(expires_s=0), USER, {}, "X-Amz-Expires is not within"),
    ("wrong host", lambda: make_token(host="evil.example.com"), USER, {}, "another host"),
    ("wrong port", lambda: make_token(port=3307), USER, {}, "another host"),
    ("wrong user", make_token, "user8", {}, "token's DBUser is not the login user"),
    ("wrong region", lambda: make_token(region="us-east-1"), USER, {}, "another region"),
    ("tampered signature", lambda: tamper_signature(make_token()), USER, {}, "bad signature"),
    (
        "tampered session",
        lambda: tamper_session(make_token()),
        USER,
        {},
        "session token not sealed by this identity service",
    ),
    (
        "other sealing key",
        make_token,
        USER,
        {"sealing_key": new_key()},
        "session token not sealed by this identity service",
    ),
    (
        "no security token",
        lambda: make_token(session_token=None),
        USER,
        {},
        "token has no X-Amz-Security-Token",
    ),
    (
        "security token removed",
        lambda: without_security_token(make_token()),
        USER,
        {},
        "token has no X-Amz-Security-Token",
    ),
    (
        "session expired",
        lambda: make_token(session_token=session_token(expires_at=int(NOW) - 1)),
        USER,
        {},
        "session expired",
    ),
    (
        "another access key",
        lambda: make_token(access_key_id="ASIAOTHER00000000000"),
        USER,
        {},
        "token's access key is not the session's",
    ),
    (
        "another secret key",
        lambda: make_token(secret_access_key="x" * 40),
        USER,
        {},
        "bad signature: signature does not match",
    ),
    (
        "session policy for another user",
        make_token,
        USER,
        {"proxy_resource_id": "prx-other"},
        "no allow in identity policy",
    ),
    (
        "session policy denies",
        lambda: make_token(session_token=session_token(session_policy=policy("*", "Deny"))),
        USER,
        {},
        "explicit deny in session policy",
    ),
    (
        "user outside the session policy",
        lambda: make_token(db_user="user8"),
        "user8",
        {},
        "rds-db:connect on arn:aws:rds-db:eu-west-1:123456789012:dbuser:prx-test/user8 denied: "
        "no allow in session policy",
    ),
    (
        "sealed but not a session",
        lambda: make_token(session_token=seal(KEY, {"access_key_id": ACCESS_KEY_ID})),
        USER,
        {},
        "session token lacks the fields of an AssumeRole session",
    ),
    ("not a token", lambda: "hello", USER, {}, "token is not host:port/?query"),
    ("no port", lambda: "host/?Action=connect", USER, {}, "token has no host:port"),
    (
        "not presigned",
        lambda: f"{HOST}:{PORT}/?Action=connect&DBUser={USER}",
        USER,
        {},
        "malformed token: query has no X-Amz-Algorithm",
    ),
    (
        "another action",
        lambda: make_token().replace("Action=connect", "Action=Connect"),
        USER,
        {},
        "token's Action is not connect",
    ),
]


@pytest.mark.parametrize(
    ("token", "user", "changes", "reason"),
    [r[1:] for r in REJECTIONS],
    ids=[r[0] for r in REJECTIONS],
)
def test_bad_tokens_are_rejected_with_their_reason(
    token: Callable[[], str], user: str, changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(TokenRejected) as caught:
        verifier(**changes).verify(token(), user)
    assert reason in str(caught.value)


def test_each_kind_of_failure_has_a_distinct_reason() -> None:
    kinds = {
        "expired", "future", "expires 901", "wrong host", "wrong user", "wrong region",
        "tampered signature", "tampered session", "no security token", "session expired",
        "another access key", "session policy denies", "user outside the session policy",
    }  # fmt: skip
    reasons = set()
    for name, token, user, changes, _reason in REJECTIONS:
        if name in kinds:
            with pytest.raises(TokenRejected) as caught:
                verifier(**changes).verify(token(), user)
            reasons.add(str(caught.value))
    assert len(reasons) == len(kinds)


def test_rejections_never_contain_the_token_or_the_keys() -> None:
    for _name, token_of, user, changes, _reason in REJECTIONS:
        token = token_of()
        with pytest.raises(TokenRejected) as caught:
            verifier(**changes).verify(token, user)
        message = str(caught.value)
        signature = token.rpartition("X-Amz-Signature=")[2]
        for secret in (SECRET_KEY, SESSION_TOKEN, token, signature):
            assert secret not in message
        assert "v1." not in message and "X-Amz-Signature" not in message
