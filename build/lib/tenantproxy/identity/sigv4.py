"""AWS Signature Version 4, pure: canonical request, string to sign, signing key, signature.

Two carriers, as in AWS's "Signature Version 4 signing process":

- header-signed requests (``Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
  Signature=…`` plus ``X-Amz-Date``): boto3's STS calls, a form-encoded POST body;
- presigned query strings (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``): db-auth tokens.

Verification here checks the signature only; freshness and who the key belongs to are the
caller's policy (``sts.py``, ``tokens.py``).
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from tenantproxy.identity.errors import SignatureError

ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SIGNATURE_PARAM = "X-Amz-Signature"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")


def uri_encode(value: str) -> str:
    """SigV4's UriEncode: every byte but the unreserved characters percent-encoded."""
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="-_.~")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The canonical query string of decoded ``(name, value)`` pairs."""
    return "&".join(f"{k}={v}" for k, v in sorted((uri_encode(k), uri_encode(v)) for k, v in pairs))


def split_query(query: str) -> list[tuple[str, str]]:
    """Decoded ``(name, value)`` pairs of a raw query string (``+`` is not a space here)."""
    if not query:
        return []
    return [(unquote(k), unquote(v)) for k, _, v in (p.partition("=") for p in query.split("&"))]


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    payload_sha256: str,
) -> str:
    """``headers``: the signed headers only, lower-case name -> value (repeats joined by ``,``)."""
    names = sorted(headers)
    lines = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names)
    return "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/~"),
            query,
            lines,
            ";".join(names),
            payload_sha256,
        ]
    )


@dataclass(frozen=True)
class Credential:
    """``<access key id>/<yyyymmdd>/<region>/<service>/aws4_request``."""

    access_key_id: str
    date: str
    region: str
    service: str

    @classmethod
    def parse(cls, value: str) -> Credential:
        parts = value.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts[:4]):
            raise SignatureError("credential is not <key>/<date>/<region>/<service>/aws4_request")
        return cls(*parts[:4])

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    def __str__(self) -> str:
        return f"{self.access_key_id}/{self.scope}"


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret_key: str, credential: Credential, amz_date: str, canonical: str) -> str:
    key = signing_key(secret_key, credential.date, credential.region, credential.service)
    message = string_to_sign(amz_date, credential.scope, canonical).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def parse_amz_date(value: str) -> float:
    """Epoch seconds of an ``X-Amz-Date`` (``20150830T123600Z``); raises SignatureError."""
    match = _AMZ_DATE.fullmatch(value)
    if match:
        fields = tuple(int(part) for part in match.groups())
        # timegm accepts some out-of-range fields (Feb 30): valid dates are those that round-trip.
        with contextlib.suppress(ValueError):
            epoch = calendar.timegm(fields)
            if time.gmtime(epoch)[:6] == fields:
                return float(epoch)
    raise SignatureError("X-Amz-Date is not yyyymmddThhmmssZ")


def format_amz_date(epoch_s: float) -> str:
    return time.strftime(AMZ_DATE_FORMAT, time.gmtime(epoch_s))


def _check(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError("signature does not match")


def _signed_headers(names: str, headers: Mapping[str, str]) -> dict[str, str]:
    wanted = names.split(";")
    if "host" not in wanted:
        raise SignatureError("SignedHeaders must include host")
    missing = [name for name in wanted if name not in headers]
    if missing:
        raise SignatureError(f"signed header {missing[0]} is not in the request")
    return {name: headers[name] for name in wanted}


def header_map(raw_headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case name -> value, repeated headers joined with ``,`` (SigV4's rule)."""
    found: dict[str, list[str]] = {}
    for name, value in raw_headers:
        found.setdefault(name.lower(), []).append(" ".join(value.split()))
    return {name: ",".join(values) for name, values in found.items()}


# -- header-signed requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderSignature:
    credential: Credential
    amz_date: str
    signed_headers: str
    signature: str


def parse_authorization(headers: Mapping[str, str]) -> HeaderSignature:
    """The Authorization and X-Amz-Date headers of a signed request (lower-case names)."""
    authorization = headers.get("authorization")
    if not authorization:
        raise SignatureError("request is not signed (no Authorization header)")
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(f"Authorization must use {ALGORITHM}")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise SignatureError("Authorization needs Credential, SignedHeaders and Signature")
    amz_date = headers.get("x-amz-date")
    if not amz_date:
        raise SignatureError("request has no X-Amz-Date header")
    parse_amz_date(amz_date)
    return HeaderSignature(
        Credential.parse(fields["Credential"]),
        amz_date,
        fields["SignedHeaders"],
        fields["Signature"],
    )


def verify_header_signature(
    signed: HeaderSignature,
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_key: str,
) -> None:
    """Raises SignatureError unless ``signed.signature`` signs this request with ``secret_key``."""
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = canonical_request(
        method,
        path,
        canonical_query(split_query(query)),
        _signed_headers(signed.signed_headers, headers),
        payload,
    )
    _check(signature(secret_key, signed.credential, signed.amz_date, canonical), signed.signature)


# -- presigned query strings ---------------------------------------------------------------------

_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    SIGNATURE_PARAM,
)


@dataclass(frozen=True)
class PresignedQuery:
    params: dict[str, str]  # every decoded parameter, X-Amz-* included
    credential: Credential
    amz_date: str
    expires_s: int
    signed_headers: str
    signature: str

    @property
    def security_token(self) -> str | None:
        return self.params.get("X-Amz-Security-Token")


def parse_presigned_query(query: str) -> PresignedQuery:
    """The parameters of a presigned query string; raises SignatureError if malformed."""
    pairs = split_query(query)
    params = dict(pairs)
    if len(params) != len(pairs):
        raise SignatureError("a query parameter is repeated")
    missing = [name for name in _PRESIGN_PARAMS if not params.get(name)]
    if missing:
        raise SignatureError(f"query has no {missing[0]}")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise SignatureError(f"X-Amz-Algorithm must be {ALGORITHM}")
    expires = params["X-Amz-Expires"]
    if not expires.isdigit() or len(expires) > 9:
        raise SignatureError("X-Amz-Expires is not a whole number of seconds")
    parse_amz_date(params["X-Amz-Date"])
    return PresignedQuery(
        params,
        Credential.parse(params["X-Amz-Credential"]),
        params["X-Amz-Date"],
        int(expires),
        params["X-Amz-SignedHeaders"],
        params[SIGNATURE_PARAM],
    )


def verify_presigned(
    presigned: PresignedQuery,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    secret_key: str,
    payload_sha256: str = EMPTY_SHA256,
) -> None:
    """Raises SignatureError unless the presigned query signs this request with ``secret_key``."""
    query = canonical_query((k, v) for k, v in presigned.params.items() if k != SIGNATURE_PARAM)
    headers_signed = _signed_headers(presigned.signed_headers, headers)
    canonical = canonical_request(method, path, query, headers_signed, payload_sha256)
    expected = signature(secret_key, presigned.credential, presigned.amz_date, canonical)
    _check(expected, presigned.signature)


def presign(
    *,
    method: str,
    path: str,
    host: str,
    params: Sequence[tuple[str, str]],
    credential: Credential,
    secret_key: str,
    amz_date: str,
    expires_s: int,
    session_token: str | None = None,
    payload_sha256: str = EMPTY_SHA256,
) -> str:
    """The presigned query string, in botocore's order: operation params, auth params, signature."""
    auth = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", str(credential)),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if session_token is not None:
        auth.append(("X-Amz-Security-Token", session_token))
    all_params = [*params, *auth]
    canonical = canonical_request(
        method, path, canonical_query(all_params), {"host": host}, payload_sha256
    )
    query = "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in all_params)
    return f"{query}&{SIGNATURE_PARAM}={signature(secret_key, credential, amz_date, canonical)}"
