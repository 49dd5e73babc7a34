"""Token login (RDS Proxy's IAMAuth = REQUIRED): db-auth tokens instead of passwords.

The client sends the token as a clear-text password (mysql_clear_password, over TLS only). The
proxy verifies it with the identity service's key, without calling the service, and remembers a
verified token until it expires, so a reconnect storm costs a dictionary lookup per login.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from tenantproxy.identity import DbAuthTokenVerifier, TokenRejected
from tenantproxy.proxy.authentication import LoginVerdict


class TokenLogins:
    """Verifies db-auth tokens; a bounded cache of the verified ones."""

    def __init__(
        self,
        verifier: DbAuthTokenVerifier,
        cache_size: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._cache_size = cache_size
        self._clock = clock
        # sha256(token) -> (db user, expiry); the token itself is never kept.
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    def check(self, token: str, db_user: str) -> LoginVerdict:
        key = hashlib.sha256(token.encode()).digest()
        cached = self._verified.get(key)
        if cached is not None and cached[0] == db_user and self._clock() < cached[1]:
            self.cache_hits += 1
            self._verified.move_to_end(key)
            return LoginVerdict(True, True, "token verified before")
        self.cache_misses += 1
        try:
            login = self._verifier.verify(token, db_user)
        except TokenRejected as exc:
            return LoginVerdict(False, True, f"token rejected: {exc}")
        self._remember(key, db_user, login.expires_at)
        return LoginVerdict(True, True, f"token of role session {login.session_name!r}")

    def _remember(self, key: bytes, db_user: str, expires_at: float) -> None:
        if self._cache_size == 0:
            return
        self._verified[key] = (db_user, expires_at)
        self._verified.move_to_end(key)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
