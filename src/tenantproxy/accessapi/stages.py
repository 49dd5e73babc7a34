"""The two stages' Lambda function, as one invocation per request, each with a new connection.

Proxy stage: AssumeRole with a session policy scoped to ``user{N}`` (boto3 STS at the identity
service), a db-auth token signed with those credentials, a TLS login to the proxy's read-only
endpoint with the token as a clear-text password. No-proxy stage, as the write-up's no-proxy
Lambda (``noproxy_auth = "token"``): the same AssumeRole, scoped to ``user{N}`` on the no-proxy
cluster, a token signed for the replica it connects to, a TLS clear-text login that MariaDB checks
itself (PAM, stack/pam_login.py); or (``"password"``) the tenant's native password from the secret
store, read per invocation. Both then run the write-up's SELECT and close.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import ssl
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from tenantproxy.accessapi.database import Login, query_once, random_ids
from tenantproxy.accessapi.invocation_trace import NOT_TRACED, Steps
from tenantproxy.errors import TenantProxyError
from tenantproxy.identity.access import TenantAccess
from tenantproxy.secretstore import SecretStore

Rows = list[dict[str, Any]]
IDENTITY_PEER = {"peer.service": "identity"}


class InvocationFailed(TenantProxyError):
    """One invocation failed; the message names the step and the cause, never a secret."""


class Stage(Protocol):
    async def invoke(self, tenant: int, trace: Steps = NOT_TRACED) -> Rows: ...


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def _failure(step: str, exc: BaseException, *secrets_in_use: str) -> InvocationFailed:
    text = f"{type(exc).__name__}: {exc}"
    for secret in secrets_in_use:
        if secret:
            text = text.replace(secret, "***")
    return InvocationFailed(f"{step}: {text}")


class ProxyStage:
    """``/proxy_stage``: token login through the proxy's reader endpoint."""

    def __init__(
        self,
        access: TenantAccess,
        reader_endpoint: str,
        tls: ssl.SSLContext,
        executor: Executor,
        *,
        rows: int,
        connect_timeout_s: float,
        scope_override: str | None = None,
    ) -> None:
        self._access = access
        self._host, self._port = split_endpoint(reader_endpoint)
        self._tls = tls
        self._executor = executor
        self._rows = rows
        self._connect_timeout_s = connect_timeout_s
        self._scope_override = scope_override
        self._random = random.Random()

    async def invoke(self, tenant: int, trace: Steps = NOT_TRACED) -> Rows:
        user = f"user{tenant}"
        loop = asyncio.get_running_loop()
        # boto3 blocks: the STS call and the signing run in the bounded thread pool.
        try:
            token = await loop.run_in_executor(self._executor, self._token, user, trace)
        except Exception as exc:
            raise _failure("assume role / db-auth token", exc) from None
        login = Login(self._host, self._port, user, token, f"user_database{tenant}")
        try:
            return await query_once(
                login,
                random_ids(self._rows, self._random),
                self._tls,
                self._connect_timeout_s,
                trace,
                peer="proxy",
            )
        except Exception as exc:
            raise _failure(f"query through the proxy as {user}", exc, token) from None

    def _token(self, user: str, trace: Steps) -> str:
        with trace.step("AssumeRole", kind=SpanKind.CLIENT, attributes=IDENTITY_PEER):
            credentials = self._access.assume(self._scope_override or user)
        with trace.step("db-auth token"):
            return self._access.token(credentials, self._host, self._port, user)


class StoredPassword:
    """The no-proxy login's password: the tenant's native one, from the secret store."""

    def __init__(self, store: SecretStore, secret_name_prefix: str = "tenants/") -> None:
        self._store = store
        self._prefix = secret_name_prefix

    async def password(self, user: str, host: str, port: int, trace: Steps = NOT_TRACED) -> str:
        try:
            # The file store keeps the decrypted document and only stat()s the file here.
            with trace.step("read secret"):
                return self._store.get(f"{self._prefix}{user}").password
        except Exception as exc:
            raise _failure(f"read the secret of {user}", exc) from None


class TokenForReplica:
    """The no-proxy login's password: a db-auth token for the replica, as the write-up's Lambda
    makes it (AssumeRole scoped to the tenant on the no-proxy cluster, then the signature)."""

    def __init__(self, access: TenantAccess, resource_id: str, executor: Executor) -> None:
        self._access = access
        self._resource_id = resource_id
        self._executor = executor

    async def password(self, user: str, host: str, port: int, trace: Steps = NOT_TRACED) -> str:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._token, user, host, port, trace)
        except Exception as exc:
            raise _failure("assume role / db-auth token", exc) from None

    def _token(self, user: str, host: str, port: int, trace: Steps) -> str:
        with trace.step("AssumeRole", kind=SpanKind.CLIENT, attributes=IDENTITY_PEER):
            credentials = self._access.assume(user, resource_id=self._resource_id)
        with trace.step("db-auth token"):
            return self._access.token(credentials, host, port, user)


class LoginSecret(Protocol):
    async def password(self, user: str, host: str, port: int, trace: Steps = NOT_TRACED) -> str: ...


class NoProxyStage:
    """``/no_proxy_stage``: a login straight to a no-proxy replica, with a token or a password."""

    def __init__(
        self,
        secret: LoginSecret,
        replica_endpoints: Sequence[str],
        tls: ssl.SSLContext,
        *,
        rows: int,
        connect_timeout_s: float,
    ) -> None:
        self._secret = secret
        # An Aurora reader endpoint spreads new connections over the replicas; round-robin is
        # the same on average, without a DNS layer.
        self._replicas = itertools.cycle([split_endpoint(e) for e in replica_endpoints])
        self._tls = tls
        self._rows = rows
        self._connect_timeout_s = connect_timeout_s
        self._random = random.Random()

    async def invoke(self, tenant: int, trace: Steps = NOT_TRACED) -> Rows:
        user = f"user{tenant}"
        host, port = next(self._replicas)
        password = await self._secret.password(user, host, port, trace)
        login = Login(host, port, user, password, f"user_database{tenant}")
        try:
            return await query_once(
                login,
                random_ids(self._rows, self._random),
                self._tls,
                self._connect_timeout_s,
                trace,
            )
        except Exception as exc:
            raise _failure(f"query {host}:{port} as {user}", exc, password) from None
