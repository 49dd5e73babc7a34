"""A tenant's database secret, in the AWS Secrets Manager shape, and the store protocol.

The password never appears in ``repr``/``str`` of a :class:`Secret`, nor in any error message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenantproxy.errors import SecretStoreError

_KNOWN_KEYS = ("username", "password", "engine", "host", "port", "dbname")


@dataclass(frozen=True)
class Secret:
    """One database user's credentials, as Secrets Manager stores them for RDS."""

    username: str
    password: str = field(repr=False)
    engine: str = "mysql"
    host: str = "127.0.0.1"
    port: int = 3306
    dbname: str | None = None
    # Other keys (e.g. ``dbClusterIdentifier``, ``iam_auth``) are kept as they are.
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = dict(self.extra)
        document.update(
            username=self.username,
            password=self.password,
            engine=self.engine,
            host=self.host,
            port=self.port,
        )
        if self.dbname is not None:
            document["dbname"] = self.dbname
        return document

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Secret:
        for key in ("username", "password"):
            if key not in document:
                raise SecretStoreError(f"secret has no {key!r} key")
        try:
            port = int(document.get("port", 3306))
        except (TypeError, ValueError):
            raise SecretStoreError("secret's 'port' is not an integer") from None
        dbname = document.get("dbname")
        return cls(
            username=str(document["username"]),
            password=str(document["password"]),
            engine=str(document.get("engine", "mysql")),
            host=str(document.get("host", "127.0.0.1")),
            port=port,
            dbname=None if dbname is None else str(dbname),
            extra={k: str(v) for k, v in document.items() if k not in _KNOWN_KEYS},
        )

    @classmethod
    def from_json(cls, text: str) -> Secret:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            # The message of a JSONDecodeError quotes no input, only a position.
            raise SecretStoreError(f"secret is not valid JSON: {exc.msg} at {exc.pos}") from None
        if not isinstance(document, dict):
            raise SecretStoreError("secret is not a JSON object")
        return cls.from_dict(document)


class SecretStore(Protocol):
    """Where the proxy and the stack find tenants' secrets, by name (e.g. ``tenants/user7``)."""

    def get(self, name: str) -> Secret:
        """The secret of that name; raises ``SecretNotFound(name)`` when there is none."""
        ...

    def list_names(self, prefix: str = "") -> list[str]:
        """Names starting with ``prefix``, sorted."""
        ...

    def put(self, name: str, secret: Secret) -> None:
        """Creates or replaces one secret."""
        ...

    def put_many(self, items: Mapping[str, Secret]) -> None:
        """Creates or replaces many secrets in one write."""
        ...

    def is_fresh(self, name: str) -> bool:
        """True when ``get(name)`` would answer without waiting on the network."""
        ...

    def invalidate(self, name: str) -> None:
        """Forgets any cached copy of that secret: the next ``get`` reads the store.

        The proxy calls it when a database rejects a secret's password (the secret may have been
        rotated), then reads the secret once more before failing the client."""
        ...
