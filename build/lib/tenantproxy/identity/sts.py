"""The STS-compatible HTTP adapter: ``AssumeRole`` and ``GetCallerIdentity`` over the Query API.

``boto3.client("sts", endpoint_url=URL).assume_role(...)`` works unchanged: requests are
form-encoded POSTs to ``/`` signed with SigV4 (service ``sts``), answers are STS's XML, errors are
STS's ``ErrorResponse`` with its codes (InvalidClientTokenId, SignatureDoesNotMatch, AccessDenied,
MalformedPolicyDocument, PackedPolicyTooLarge, ValidationError, …).

The session token is sealed (``sealing.py``): it carries the temporary secret key, the role, its
policy at assume time, the session policy and the expiry, so the proxy needs no call back here.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tenantproxy.identity import sigv4
from tenantproxy.identity.config import IdentityConfig
from tenantproxy.identity.errors import PolicyError, SealError, SignatureError
from tenantproxy.identity.policy import PolicyDocument
from tenantproxy.identity.sealing import seal, unseal

log = logging.getLogger(__name__)

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
API_VERSION = "2011-06-15"
MAX_REQUEST_AGE_S = 15 * 60  # STS refuses requests signed more than 15 minutes away
MAX_PACKED_POLICY_CHARS = 2048
MIN_SESSION_DURATION_S = 900
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_ASSUME_ROLE_PARAMETERS = frozenset({"RoleArn", "RoleSessionName", "DurationSeconds", "Policy"})
_UPPER_ALNUM = string.ascii_uppercase + string.digits
_SECRET_CHARS = string.ascii_letters + string.digits + "+/"


class StsError(Exception):
    """An STS error answer: HTTP status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Caller:
    """Who signed the request: a principal from the config, or an assumed-role session."""

    arn: str
    user_id: str
    principal_may_assume: tuple[str, ...] | None  # None: a temporary session (no chaining)


def _xml(action: str, result: str) -> Response:
    body = (
        f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return Response(body, media_type="text/xml")


def _error(exc: StsError) -> Response:
    kind = "Sender" if exc.status < 500 else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(exc.code)}</Code><Message>{escape(exc.message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return Response(body, status_code=exc.status, media_type="text/xml")


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


class StsService:
    """The request handling, separate from Starlette so that it reads top to bottom."""

    def __init__(self, config: IdentityConfig, key: bytes, clock: Callable[[], float]) -> None:
        self._config, self._key, self._clock = config, key, clock

    async def handle(self, request: Request) -> Response:
        try:
            body = await request.body()
            headers = sigv4.header_map(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
            )
            params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            caller = self._authenticate(request, headers, body)
            action = params.get("Action")
            if params.get("Version") != API_VERSION:
                raise StsError(400, "InvalidParameterValue", f"Version must be {API_VERSION}")
            if action == "AssumeRole":
                return self._assume_role(caller, params)
            if action == "GetCallerIdentity":
                return _xml("GetCallerIdentity", self._caller_identity(caller))
            raise StsError(400, "InvalidAction", f"Could not find operation {action}")
        except StsError as exc:
            log.info("sts request refused: %s %s", exc.code, exc.message)
            return _error(exc)

    def _authenticate(self, request: Request, headers: dict[str, str], body: bytes) -> Caller:
        try:
            signed = sigv4.parse_authorization(headers)
        except SignatureError as exc:
            raise StsError(403, "IncompleteSignature", str(exc)) from None
        credential = signed.credential
        if credential.service != "sts" or credential.region != self._config.region:
            raise StsError(
                403,
                "SignatureDoesNotMatch",
                f"Credential should be scoped to region {self._config.region} and service sts",
            )
        signed_at = sigv4.parse_amz_date(signed.amz_date)
        if abs(self._clock() - signed_at) > MAX_REQUEST_AGE_S:
            raise StsError(403, "SignatureDoesNotMatch", "Signature expired or not yet current")
        secret_key, caller = self._credentials(credential.access_key_id, headers)
        try:
            sigv4.verify_header_signature(
                signed,
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                headers=headers,
                body=body,
                secret_key=secret_key,
            )
        except SignatureError:
            raise StsError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
            ) from None
        return caller

    def _credentials(self, access_key_id: str, headers: dict[str, str]) -> tuple[str, Caller]:
        """The secret key that should have signed, and who the caller is."""
        invalid = StsError(
            403, "InvalidClientTokenId", "The security token included in the request is invalid."
        )
        token = headers.get("x-amz-security-token")
        if token is None:
            principal = self._config.find_principal(access_key_id)
            if principal is None:
                raise invalid
            arn = f"arn:aws:iam::{self._config.account_id}:user/{principal.name}"
            caller = Caller(arn, principal.access_key_id, tuple(principal.may_assume))
            return principal.secret_access_key, caller
        try:
            session = unseal(self._key, token)
        except SealError:
            raise invalid from None
        if session.get("access_key_id") != access_key_id:
            raise invalid
        if session["expires_at"] <= self._clock():
            raise StsError(
                403, "ExpiredToken", "The security token included in the request is expired"
            )
        role_name = str(session["role_arn"]).rpartition("/")[2]
        arn = (
            f"arn:aws:sts::{self._config.account_id}:assumed-role/{role_name}/"
            f"{session['session_name']}"
        )
        caller = Caller(arn, f"{access_key_id}:{session['session_name']}", None)
        return str(session["secret_access_key"]), caller

    def _caller_identity(self, caller: Caller) -> str:
        return (
            f"<Arn>{escape(caller.arn)}</Arn><UserId>{escape(caller.user_id)}</UserId>"
            f"<Account>{self._config.account_id}</Account>"
        )

    def _assume_role(self, caller: Caller, params: dict[str, str]) -> Response:
        _refuse_unsupported(params, _ASSUME_ROLE_PARAMETERS)
        role_arn = _required(params, "RoleArn")
        session_name = _required(params, "RoleSessionName")
        if not _SESSION_NAME.fullmatch(session_name):
            raise StsError(
                400, "ValidationError", "RoleSessionName must be 2-64 characters of [\\w+=,.@-]"
            )
        duration_s = self._duration(params.get("DurationSeconds"))
        role = self._config.find_role(role_arn)
        if (
            role is None
            or caller.principal_may_assume is None
            or (role_arn not in caller.principal_may_assume)
        ):
            raise StsError(
                403,
                "AccessDenied",
                f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: "
                f"{role_arn}",
            )
        session_policy = self._session_policy(params.get("Policy"))
        access_key_id = "ASIA" + "".join(secrets.choice(_UPPER_ALNUM) for _ in range(16))
        secret_access_key = "".join(secrets.choice(_SECRET_CHARS) for _ in range(40))
        expires_at = int(self._clock()) + duration_s
        session_token = seal(
            self._key,
            {
                "access_key_id": access_key_id,
                "secret_access_key": secret_access_key,
                "role_arn": role_arn,
                "role_policy": role.policy,
                "session_policy": session_policy,
                "session_name": session_name,
                "expires_at": expires_at,
            },
        )
        log.info("%s assumed %s as session %s", caller.arn, role_arn, session_name)
        packed_percent = len(session_policy or "") * 100 // MAX_PACKED_POLICY_CHARS
        result = (
            f"<Credentials><AccessKeyId>{access_key_id}</AccessKeyId>"
            f"<SecretAccessKey>{escape(secret_access_key)}</SecretAccessKey>"
            f"<SessionToken>{session_token}</SessionToken>"
            f"<Expiration>{_iso(expires_at)}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROA{role.name.upper()}:{escape(session_name)}"
            f"</AssumedRoleId><Arn>arn:aws:sts::{self._config.account_id}:assumed-role/"
            f"{role.name}/{escape(session_name)}</Arn></AssumedRoleUser>"
            f"<PackedPolicySize>{packed_percent}</PackedPolicySize>"
        )
        return _xml("AssumeRole", result)

    def _duration(self, raw: str | None) -> int:
        if raw is None:
            return min(3600, self._config.max_session_duration_s)
        maximum = self._config.max_session_duration_s
        if not raw.isdigit() or not MIN_SESSION_DURATION_S <= int(raw) <= maximum:
            raise StsError(
                400,
                "ValidationError",
                f"The requested DurationSeconds exceeds the limits: it must be between "
                f"{MIN_SESSION_DURATION_S} and {maximum}",
            )
        return int(raw)

    def _session_policy(self, policy: str | None) -> str | None:
        if policy is None:
            return None
        if len(policy) > MAX_PACKED_POLICY_CHARS:
            percent = len(policy) * 100 // MAX_PACKED_POLICY_CHARS
            raise StsError(
                400,
                "PackedPolicyTooLarge",
                f"Packed policy consumes {percent}% of allotted space, please use smaller policy "
                "for request.",
            )
        try:
            PolicyDocument.parse(policy)
        except PolicyError as exc:
            raise StsError(400, "MalformedPolicyDocument", str(exc)) from None
        return policy


def _refuse_unsupported(params: dict[str, str], supported: frozenset[str]) -> None:
    """A parameter we do not implement (PolicyArns, Tags, ExternalId, ...) is refused, never
    ignored: ignoring PolicyArns, say, would grant a session more than its caller asked for."""
    unsupported = sorted(
        {name.split(".")[0] for name in params} - supported - {"Action", "Version"}
    )
    if unsupported:
        raise StsError(
            400, "InvalidParameterValue", f"parameter not supported here: {unsupported[0]}"
        )


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise StsError(400, "MissingParameter", f"The request must contain the parameter {name}")
    return value


def build_sts_app(
    config: IdentityConfig, key: bytes, clock: Callable[[], float] = time.time
) -> Starlette:
    """The ASGI app: POST / with the STS Query API."""
    service = StsService(config, key, clock)
    return Starlette(routes=[Route("/", service.handle, methods=["POST"])])
