"""SigV4: AWS's published examples, and requests signed by botocore itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.identity import SignatureError, sigv4

AWS_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def test_signing_key_matches_the_aws_documentation_example() -> None:
    key = sigv4.signing_key(AWS_EXAMPLE_SECRET, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_get_vanilla_from_the_aws_sigv4_test_suite() -> None:
    canonical = sigv4.canonical_request(
        "GET",
        "/",
        "",
        {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"},
        sigv4.EMPTY_SHA256,
    )
    credential = sigv4.Credential("AKIDEXAMPLE", "20150830", "us-east-1", "service")
    assert sigv4.signature(AWS_EXAMPLE_SECRET, credential, "20150830T123600Z", canonical) == (
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


SECRET = "botocore-secret-key-0123456789"
BODY = b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr"


@pytest.fixture(scope="module")
def signed() -> tuple[dict[str, str], bytes]:
    """An STS-style POST as botocore signs it: lower-case headers and the body."""
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8080/",
        data=BODY,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials("AKIAEXAMPLE0000000", SECRET), "sts", "us-east-1").add_auth(request)
    headers = sigv4.header_map([*request.headers.items(), ("Host", "127.0.0.1:8080")])
    return headers, BODY


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> None:
    parsed = sigv4.parse_authorization(headers)
    sigv4.verify_header_signature(
        parsed, method="POST", path="/", query="", headers=headers, body=body, secret_key=secret
    )


def test_a_request_signed_by_botocore_verifies(signed: tuple[dict[str, str], bytes]) -> None:
    headers, body = signed
    verify(headers, body)
    parsed = sigv4.parse_authorization(headers)
    assert parsed.credential.access_key_id == "AKIAEXAMPLE0000000"
    assert (parsed.credential.region, parsed.credential.service) == ("us-east-1", "sts")


def test_another_secret_key_does_not_verify(signed: tuple[dict[str, str], bytes]) -> None:
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(*signed, secret=SECRET + "x")


def _flip(data: bytes, index: int, delta: int) -> bytes:
    flipped = bytearray(data)
    flipped[index] = (flipped[index] + delta) % 256 or 1
    return bytes(flipped)


@given(st.data())
def test_any_single_byte_change_in_the_body_is_rejected(
    signed: tuple[dict[str, str], bytes], data: st.DataObject
) -> None:
    headers, body = signed
    index = data.draw(st.integers(0, len(body) - 1))
    changed = _flip(body, index, data.draw(st.integers(1, 255)))
    with pytest.raises(SignatureError):
        verify(headers, changed)


def _signed_header_values(headers: dict[str, str]) -> Iterator[str]:
    yield from sigv4.parse_authorization(headers).signed_headers.split(";")


@given(st.data())
def test_any_single_character_change_in_a_signed_header_is_rejected(
    signed: tuple[dict[str, str], bytes], data: st.DataObject
) -> None:
    headers, body = signed
    name = data.draw(st.sampled_from([*_signed_header_values(headers), "authorization"]))
    value = headers[name]
    index = data.draw(st.integers(0, len(value) - 1))
    replacement = data.draw(st.characters(min_codepoint=33, max_codepoint=126))
    if replacement == value[index] or value[index] in " ,":
        return  # not a change, or a separator botocore's canonical form tolerates
    key_id = "AKIAEXAMPLE0000000"
    if name == "authorization" and value.index(key_id) <= index < value.index(key_id) + 18:
        return  # the key id picks the secret key; it is not itself signed
    changed = {**headers, name: value[:index] + replacement + value[index + 1 :]}
    with pytest.raises(SignatureError):
        verify(changed, body)


def test_a_request_without_authorization_is_refused() -> None:
    with pytest.raises(SignatureError, match="not signed"):
        sigv4.parse_authorization({"host": "x"})


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("AWS4-HMAC-SHA1 Credential=a/b/c/d/aws4_request", "must use AWS4-HMAC-SHA256"),
        ("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request", "needs Credential, SignedHeaders"),
        (
            "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00",
            "credential is not",
        ),
    ],
)
def test_malformed_authorization_headers_are_refused(authorization: str, message: str) -> None:
    headers = {"authorization": authorization, "x-amz-date": "20150830T123600Z", "host": "h"}
    with pytest.raises(SignatureError, match=message):
        sigv4.parse_authorization(headers)


def test_signed_headers_must_include_host(signed: tuple[dict[str, str], bytes]) -> None:
    headers, body = signed
    authorization = headers["authorization"].replace("SignedHeaders=", "SignedHeaders=x;")
    with pytest.raises(SignatureError, match="signed header x is not in the request"):
        verify({**headers, "authorization": authorization}, body)


def test_presign_then_verify_round_trips() -> None:
    credential = sigv4.Credential("ASIAEXAMPLE", "20240102", "eu-west-1", "rds-db")
    query = sigv4.presign(
        method="GET",
        path="/",
        host="db:3306",
        params=[("Action", "connect"), ("DBUser", "user 1+/")],
        credential=credential,
        secret_key=SECRET,
        amz_date="20240102T030405Z",
        expires_s=900,
        session_token="a=b/c+d",
    )
    presigned = sigv4.parse_presigned_query(query)
    assert presigned.params["DBUser"] == "user 1+/"
    assert presigned.security_token == "a=b/c+d"
    assert presigned.credential == credential
    sigv4.verify_presigned(
        presigned, method="GET", path="/", headers={"host": "db:3306"}, secret_key=SECRET
    )
    with pytest.raises(SignatureError):
        sigv4.verify_presigned(
            presigned, method="GET", path="/", headers={"host": "db:3307"}, secret_key=SECRET
        )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("Action=connect", "query has no X-Amz-Algorithm"),
        ("a=1&a=2", "repeated"),
    ],
)
def test_malformed_presigned_queries_are_refused(query: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        sigv4.parse_presigned_query(query)


def test_amz_dates_round_trip() -> None:
    epoch = dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.UTC).timestamp()
    assert sigv4.format_amz_date(epoch) == "20150830T123600Z"
    assert sigv4.parse_amz_date("20150830T123600Z") == epoch
    for bad in ("2015-08-30", "20150830T123600", "20151330T123600Z", "20150230T000000Z"):
        with pytest.raises(SignatureError, match="X-Amz-Date is not yyyymmddThhmmssZ"):
            sigv4.parse_amz_date(bad)
