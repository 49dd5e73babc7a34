"""db-auth tokens: made like ``aws rds generate-db-auth-token``, verified by the proxy.

A token is a SigV4-presigned URL without its scheme::

    <host>:<port>/?Action=connect&DBUser=<user>&X-Amz-Algorithm=AWS4-HMAC-SHA256
        &X-Amz-Credential=<key>/<date>/<region>/rds-db/aws4_request&X-Amz-Date=<date>
        &X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=<sealed session>
        &X-Amz-Signature=<hex>

signed as ``GET /`` with the ``host`` header only and the empty payload's hash (botocore's
``generate_db_auth_token``). The verifier never calls home: the security token is a session sealed
by the identity service, holding the temporary secret key and the policies to evaluate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tenantproxy.identity import sigv4
from tenantproxy.identity.errors import PolicyError, SealError, SignatureError, TokenRejected
from tenantproxy.identity.policy import PolicyDocument, is_allowed
from tenantproxy.identity.sealing import unseal

SERVICE = "rds-db"
ACTION = "rds-db:connect"
MAX_EXPIRES_S = 900
_POLICY_CACHE_SIZE = 1024
# What sts.py seals (plus session_policy, maybe None); other sealed payloads are refused.
_SESSION_FIELDS: dict[str, type | tuple[type, ...]] = {
    "access_key_id": str,
    "secret_access_key": str,
    "role_arn": str,
    "role_policy": str,
    "session_name": str,
    "expires_at": (int, float),
}


def _host_header(host: str, port: int) -> str:
    # botocore derives the signed host from https://host:port: lower case, 443 left out.
    return host.lower() if port == 443 else f"{host.lower()}:{port}"


def generate_db_auth_token(
    *,
    host: str,
    port: int,
    db_user: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    session_token: str | None = None,
    now: datetime | None = None,
    expires_s: int = MAX_EXPIRES_S,
) -> str:
    """The token boto3's ``generate_db_auth_token(host, port, db_user)`` makes, at ``now``."""
    now = now or datetime.now(UTC)
    amz_date = sigv4.format_amz_date(now.timestamp())
    query = sigv4.presign(
        method="GET",
        path="/",
        host=_host_header(host, port),
        params=[("Action", "connect"), ("DBUser", db_user)],
        credential=sigv4.Credential(access_key_id, amz_date[:8], region, SERVICE),
        secret_key=secret_access_key,
        amz_date=amz_date,
        expires_s=expires_s,
        session_token=session_token,
    )
    return f"{host}:{port}/?{query}"


@dataclass(frozen=True)
class VerifiedLogin:
    db_user: str
    role_arn: str
    session_name: str
    expires_at: float  # epoch seconds: min(token expiry, session expiry)


class DbAuthTokenVerifier:
    """Checks db-auth tokens offline. ``verify`` raises TokenRejected with a loggable reason."""

    def __init__(
        self,
        *,
        sealing_key: bytes,
        region: str,
        account_id: str,
        proxy_resource_id: str,
        allowed_hosts: Collection[str],
        clock_skew_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = sealing_key
        self._region = region
        self._resource_prefix = f"arn:aws:rds-db:{region}:{account_id}:dbuser:{proxy_resource_id}/"
        # Kept by reference, not copied: the proxy adds its endpoints once they are bound.
        # Names in it are lower case.
        self._allowed_hosts = allowed_hosts
        self._skew_s = clock_skew_s
        self._clock = clock
        # The same few policies come back in every session: parse each once.
        self._policies: dict[str, PolicyDocument] = {}

    def verify(self, token: str, db_user: str) -> VerifiedLogin:
        netloc, slash, query = token.partition("/")
        if not slash or not query.startswith("?"):
            raise TokenRejected("token is not host:port/?query")
        host_header = self._checked_host(netloc)
        try:
            presigned = sigv4.parse_presigned_query(query[1:])
        except SignatureError as exc:
            raise TokenRejected(f"malformed token: {exc}") from None
        token_expires_at = self._check_request(presigned, db_user)
        session = self._session(presigned)
        try:
            sigv4.verify_presigned(
                presigned,
                method="GET",
                path="/",
                headers={"host": host_header},
                secret_key=session["secret_access_key"],
            )
        except SignatureError as exc:
            raise TokenRejected(f"bad signature: {exc}") from None
        resource = self._resource_prefix + db_user
        decision = is_allowed(
            ACTION,
            resource,
            [self._policy(session["role_policy"])],
            None
            if session.get("session_policy") is None
            else self._policy(session["session_policy"]),
        )
        if not decision.is_allowed:
            raise TokenRejected(f"{ACTION} on {resource} denied: {decision.reason}")
        return VerifiedLogin(
            db_user=db_user,
            role_arn=session["role_arn"],
            session_name=session["session_name"],
            expires_at=min(token_expires_at, float(session["expires_at"])),
        )

    def _checked_host(self, netloc: str) -> str:
        host, colon, port = netloc.rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise TokenRejected("token has no host:port")
        if netloc.lower() not in self._allowed_hosts:
            raise TokenRejected("token was signed for another host")
        return _host_header(host, int(port))

    def _check_request(self, presigned: sigv4.PresignedQuery, db_user: str) -> float:
        """Checks what the token asks for and when; returns when it expires."""
        params, credential = presigned.params, presigned.credential
        if params.get("Action") != "connect":
            raise TokenRejected("token's Action is not connect")
        if params.get("DBUser") != db_user:
            raise TokenRejected("token's DBUser is not the login user")
        if credential.service != SERVICE:
            raise TokenRejected(f"token is not scoped to service {SERVICE}")
        if credential.region != self._region:
            raise TokenRejected("token is scoped to another region")
        if credential.date != presigned.amz_date[:8]:
            raise TokenRejected("token's credential date is not its X-Amz-Date")
        if not 0 < presigned.expires_s <= MAX_EXPIRES_S:
            raise TokenRejected(f"token's X-Amz-Expires is not within 1..{MAX_EXPIRES_S}")
        signed_at = sigv4.parse_amz_date(presigned.amz_date)
        now = self._clock()
        if now < signed_at - self._skew_s:
            raise TokenRejected("token is dated in the future")
        expires_at = signed_at + presigned.expires_s
        if now > expires_at + self._skew_s:
            raise TokenRejected("token expired")
        return expires_at

    def _session(self, presigned: sigv4.PresignedQuery) -> dict[str, Any]:
        token = presigned.security_token
        if token is None:
            raise TokenRejected("token has no X-Amz-Security-Token (use AssumeRole credentials)")
        try:
            session = unseal(self._key, token)
        except SealError:
            raise TokenRejected("session token not sealed by this identity service") from None
        if not all(isinstance(session.get(k), kind) for k, kind in _SESSION_FIELDS.items()):
            raise TokenRejected("session token lacks the fields of an AssumeRole session")
        if session["expires_at"] <= self._clock():
            raise TokenRejected("session expired")
        if session.get("access_key_id") != presigned.credential.access_key_id:
            raise TokenRejected("token's access key is not the session's")
        return session

    def _policy(self, text: str) -> PolicyDocument:
        document = self._policies.get(text)
        if document is None:
            try:
                document = PolicyDocument.parse(text)
            except PolicyError as exc:
                raise TokenRejected(f"session holds an invalid policy: {exc}") from None
            if len(self._policies) >= _POLICY_CACHE_SIZE:
                self._policies.clear()
            self._policies[text] = document
        return document
