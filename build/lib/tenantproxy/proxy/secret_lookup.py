"""Tenants' secrets as the proxy reads them: by DB user, without blocking the event loop.

A store answers from its cache in about a microsecond; a miss may be an HTTP call (AWS Secrets
Manager), which runs in a worker thread so that other clients go on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

from tenantproxy.errors import SecretNotFound, SecretStoreError
from tenantproxy.secretstore import Secret, SecretStore


class SecretLookup:
    def __init__(self, store: SecretStore, name_prefix: str, log: logging.Logger) -> None:
        self._store = store
        self._prefix = name_prefix
        self._log = log

    def name_of(self, db_user: str) -> str:
        return self._prefix + db_user

    async def find(self, db_user: str) -> Secret | None:
        """The secret of a DB user; None when there is none or the store cannot say."""
        name = self.name_of(db_user)
        try:
            if self._store.is_fresh(name):
                return self._store.get(name)
            return await asyncio.to_thread(self._store.get, name)
        except SecretNotFound:
            return None
        except SecretStoreError as exc:
            self._log.error("secret store: %s", exc)
            return None

    def invalidate(self, db_user: str) -> None:
        self._store.invalidate(self.name_of(db_user))
