"""Checking a client's login against its tenant's secret: its password, or a db-auth token.

The proxy knows each tenant's password (from the secret store), so it verifies the scramble the
client computed, the way the server would: mysql_native_password, caching_sha2_password's fast
path. A client that offers another plugin, mysql_clear_password included, is switched to
mysql_native_password, as MariaDB switches a client to a password account's own plugin (clear text
is for token logins). Unknown users take the same steps as known ones and are refused, so the
answer does not tell whether a tenant exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tenantproxy.secretstore import Secret
from tenantproxy.wire.mysql import auth_plugins
from tenantproxy.wire.mysql.auth_plugins import (
    CACHING_SHA2_PASSWORD,
    MYSQL_CLEAR_PASSWORD,
    MYSQL_NATIVE_PASSWORD,
)

# Asks the client to answer again with the named plugin; returns (answer, scramble used).
SwitchPlugin = Callable[[str], Awaitable[tuple[bytes, bytes]]]


@dataclass(frozen=True)
class LoginVerdict:
    is_accepted: bool
    is_password_used: bool
    reason: str  # for the log; never holds a secret


async def verify_login(
    plugin_name: str,
    auth_response: bytes,
    secret: Secret | None,
    *,
    scramble: bytes,
    switch_plugin: SwitchPlugin,
    confirm_fast_auth: Callable[[], None] | None = None,
) -> LoginVerdict:
    """Decides whether the client knows the secret's password."""
    password = secret.password.encode() if secret is not None else None
    plugin = plugin_name or MYSQL_NATIVE_PASSWORD
    if plugin == MYSQL_NATIVE_PASSWORD and auth_response:
        is_match = password is not None and auth_plugins.native_password_matches(
            password, scramble, auth_response
        )
    elif plugin == CACHING_SHA2_PASSWORD and auth_response and confirm_fast_auth is not None:
        is_match = password is not None and auth_plugins.caching_sha2_matches(
            password, scramble, auth_response
        )
        if is_match:
            confirm_fast_auth()
    elif not auth_response and plugin in (MYSQL_NATIVE_PASSWORD, CACHING_SHA2_PASSWORD):
        return _verdict(secret, password == b"", is_password_used=False)
    else:
        answer, new_scramble = await switch_plugin(MYSQL_NATIVE_PASSWORD)
        is_match = (
            bool(answer)
            and password is not None
            and auth_plugins.native_password_matches(password, new_scramble, answer)
        )
        return _verdict(secret, is_match, is_password_used=bool(answer))
    return _verdict(secret, is_match, is_password_used=True)


def _verdict(secret: Secret | None, is_match: bool, *, is_password_used: bool) -> LoginVerdict:
    if secret is None:
        return LoginVerdict(False, is_password_used, "no secret for this user")
    if not is_match:
        return LoginVerdict(False, is_password_used, "wrong password")
    return LoginVerdict(True, is_password_used, "password matches the secret")


def requires_token(secret: Secret | None) -> bool:
    """A secret with iam_auth = "required" logs in with tokens only (RDS Proxy's IAMAuth)."""
    return secret is not None and secret.extra.get("iam_auth", "").lower() == "required"


class TokenChecker(Protocol):
    def check(self, token: str, db_user: str) -> LoginVerdict: ...


async def verify_token_login(
    db_user: str,
    plugin_name: str,
    auth_response: bytes,
    *,
    is_tls: bool,
    switch_plugin: SwitchPlugin,
    tokens: TokenChecker | None,
) -> LoginVerdict:
    """Token login: the token comes as a clear-text password, over TLS only (as with RDS)."""
    if tokens is None:
        return LoginVerdict(False, bool(auth_response), "token login is not configured")
    if not is_tls:
        return LoginVerdict(False, bool(auth_response), "token login without TLS")
    if plugin_name != MYSQL_CLEAR_PASSWORD or not auth_response:
        auth_response, _ = await switch_plugin(MYSQL_CLEAR_PASSWORD)
    token = auth_plugins.clear_password_from_response(auth_response)
    if not token:
        return LoginVerdict(False, False, "empty token")
    try:
        text = token.decode("ascii")
    except UnicodeDecodeError:
        return LoginVerdict(False, True, "token is not ASCII")
    return tokens.check(text, db_user)


async def check_credentials(
    db_user: str,
    secret: Secret | None,
    plugin_name: str,
    auth_response: bytes,
    *,
    scramble: bytes,
    is_tls: bool,
    tokens: TokenChecker | None,
    switch_plugin: SwitchPlugin,
    confirm_fast_auth: Callable[[], None] | None = None,
) -> LoginVerdict:
    """The tenant's password, or a db-auth token when its secret requires one."""
    if requires_token(secret):
        return await verify_token_login(
            db_user,
            plugin_name,
            auth_response,
            is_tls=is_tls,
            switch_plugin=switch_plugin,
            tokens=tokens,
        )
    return await verify_login(
        plugin_name,
        auth_response,
        secret,
        scramble=scramble,
        switch_plugin=switch_plugin,
        confirm_fast_auth=confirm_fast_auth,
    )
