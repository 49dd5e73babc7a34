"""AWS Secrets Manager as a secret store, through boto3 (``endpoint_url`` reaches moto, or any
service that speaks the Secrets Manager API).

Which secrets are tenants: those whose names start with the store's ``name_prefix`` (the proxy's
``secret_name_prefix``) and, when ``tag_key`` is set, that carry the tag ``tag_key`` (with the value
``tag_value``, when set). Any other secret is ``SecretNotFound``, exactly as if it did not exist.
So one proxy serves every tenant under a prefix, without a list of secrets in its config.

Reads are cached per name: a secret for ``cache_ttl_s``, a "not found" for at most
``_NOT_FOUND_TTL_S`` (so that unknown user names cannot make each login a call to AWS, and a new
tenant is served soon). A cache hit does no I/O. ``invalidate(name)`` forgets one name: the proxy
calls it when a database rejects a secret's password, then reads the secret once more (rotation).

A miss is blocking HTTP: one GetSecretValue, plus one DescribeSecret when a tag is required (its
tags decide; they are cached with the secret, so it is one check per name per cache period, never
one per login). Each call is bounded: connect 2 s, read 5 s, 2 attempts. Code on an event loop
should run a miss in a thread (``is_fresh(name)`` says whether ``get`` would do I/O).

Error messages name the store, the operation, the secret's name and AWS's error code, never a
secret's value; boto3's exceptions are not chained (``from None``), since some of them quote the
request's parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from tenantproxy.config import AwsSecretStoreConfig
from tenantproxy.errors import ConfigError, SecretNotFound, SecretStoreError
from tenantproxy.secretstore.caching import TtlCache
from tenantproxy.secretstore.store import Secret

_NOT_FOUND_TTL_S = 30.0
_LIST_PAGE_SIZE = 100  # ListSecrets' maximum
_PUT_THREADS = 8


def default_client_config() -> Config:
    """Bounded calls: the proxy must not hang on an unreachable or slow store."""
    return Config(
        connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
    )


@dataclass(frozen=True)
class TagFilter:
    """The tag a secret must carry to serve as a tenant; ``value`` None: any value."""

    key: str
    value: str | None = None

    def matches(self, tags: Iterable[Mapping[str, Any]]) -> bool:
        # Compared here exactly: ListSecrets' tag filters match prefixes.
        return any(
            tag.get("Key") == self.key and (self.value is None or tag.get("Value") == self.value)
            for tag in tags
        )

    def list_filters(self) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = [{"Key": "tag-key", "Values": [self.key]}]
        if self.value is not None:
            filters.append({"Key": "tag-value", "Values": [self.value]})
        return filters

    def as_tags(self) -> list[dict[str, str]]:
        return [{"Key": self.key, "Value": self.value or ""}]


def scoped_prefix(store_prefix: str, prefix: str) -> str | None:
    """The longer of two name prefixes when one extends the other; None: no name has both."""
    if prefix.startswith(store_prefix):
        return prefix
    if store_prefix.startswith(prefix):
        return store_prefix
    return None


class _SecretExists(SecretStoreError):
    """CreateSecret found the name taken."""


class AwsSecretStore:
    """Tenants' secrets in AWS Secrets Manager; see the module docstring."""

    def __init__(
        self,
        config: AwsSecretStoreConfig,
        name_prefix: str = "",
        *,
        session: boto3.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        client_config: Config | None = None,
    ) -> None:
        if config.tag_value is not None and config.tag_key is None:
            raise ConfigError("secret_store.tag_value is set without secret_store.tag_key")
        self.region = config.region
        self.endpoint_url = config.endpoint_url
        self.name_prefix = name_prefix
        self.tag = None if config.tag_key is None else TagFilter(config.tag_key, config.tag_value)
        self.cache_ttl_s = config.cache_ttl_s
        self.not_found_ttl_s = min(config.cache_ttl_s, _NOT_FOUND_TTL_S)
        # A fresh session, not boto3's module-level default one; clients are thread-safe.
        session = boto3.Session() if session is None else session
        self.client: Any = session.client(
            "secretsmanager",
            region_name=config.region,
            endpoint_url=config.endpoint_url,
            config=client_config or default_client_config(),
        )
        self._cache: TtlCache[Secret | None] = TtlCache(clock)

    @classmethod
    def from_config(
        cls,
        config: AwsSecretStoreConfig,
        name_prefix: str,
        *,
        session: boto3.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> AwsSecretStore:
        """Credentials come from ``session``, else from boto3's usual chain."""
        return cls(config, name_prefix, session=session, clock=clock)

    def __repr__(self) -> str:
        tag = ""
        if self.tag is not None:
            tag = f", tag_key={self.tag.key!r}, tag_value={self.tag.value!r}"
        return (
            f"AwsSecretStore(region={self.region!r}, endpoint_url={self.endpoint_url!r}, "
            f"name_prefix={self.name_prefix!r}{tag})"
        )

    def get(self, name: str) -> Secret:
        if not name.startswith(self.name_prefix):
            raise SecretNotFound(name)
        secret = self._cache.get_or_load(name, lambda: self._load(name))
        if secret is None:
            raise SecretNotFound(name)
        return secret

    def is_fresh(self, name: str) -> bool:
        """Whether ``get(name)`` answers from the cache, without I/O."""
        return not name.startswith(self.name_prefix) or self._cache.fresh(name) is not None

    def invalidate(self, name: str) -> None:
        self._cache.forget(name)

    def list_names(self, prefix: str = "") -> list[str]:
        name_prefix = scoped_prefix(self.name_prefix, prefix)
        if name_prefix is None:
            return []
        filters = [] if not name_prefix else [{"Key": "name", "Values": [name_prefix]}]
        if self.tag is not None:
            filters += self.tag.list_filters()
        names = []
        pages = self.client.get_paginator("list_secrets").paginate(
            Filters=filters, PaginationConfig={"PageSize": _LIST_PAGE_SIZE}
        )
        with self._errors_mapped("ListSecrets", prefix):
            for page in pages:
                names += [
                    entry["Name"]
                    for entry in page.get("SecretList", [])
                    if self._is_listed_tenant(entry, name_prefix)
                ]
        return sorted(names)

    def put(self, name: str, secret: Secret) -> None:
        """Creates the secret (with the store's tag), or puts a new value into it and tags it."""
        if not name.startswith(self.name_prefix):
            raise SecretStoreError(
                f"{name!r} is not under this store's name prefix {self.name_prefix!r}"
            )
        text = secret.to_json()
        tags = [] if self.tag is None else self.tag.as_tags()
        try:
            with self._errors_mapped("CreateSecret", name, secret.password):
                self.client.create_secret(Name=name, SecretString=text, Tags=tags)
        except _SecretExists:
            with self._errors_mapped("PutSecretValue", name, secret.password):
                self.client.put_secret_value(SecretId=name, SecretString=text)
            if tags:
                with self._errors_mapped("TagResource", name):
                    self.client.tag_resource(SecretId=name, Tags=tags)
        finally:
            self._cache.forget(name)

    def put_many(self, items: Mapping[str, Secret]) -> None:
        """One call (or three) per secret: Secrets Manager has no batch write. Calls overlap."""
        if not items:
            return
        with ThreadPoolExecutor(min(_PUT_THREADS, len(items))) as pool:
            for _ in pool.map(lambda item: self.put(*item), items.items()):
                pass  # re-raises the first failure

    def _load(self, name: str) -> tuple[Secret | None, float]:
        if self.tag is not None:
            try:
                with self._errors_mapped("DescribeSecret", name):
                    description = self.client.describe_secret(SecretId=name)
            except SecretNotFound:
                return None, self.not_found_ttl_s
            if "DeletedDate" in description or not self.tag.matches(description.get("Tags", [])):
                return None, self.not_found_ttl_s
        try:
            with self._errors_mapped("GetSecretValue", name):
                response = self.client.get_secret_value(SecretId=name)
        except SecretNotFound:
            return None, self.not_found_ttl_s
        text = response.get("SecretString")
        if text is None:
            raise SecretStoreError(f"secret {name!r} has no SecretString (binary is not supported)")
        try:
            return Secret.from_json(text), self.cache_ttl_s
        except SecretStoreError as exc:
            raise SecretStoreError(f"secret {name!r} in {self._where}: {exc}") from None

    def _is_listed_tenant(self, entry: Mapping[str, Any], name_prefix: str) -> bool:
        # ListSecrets' name filter ignores case, and its tag filters match prefixes.
        return (
            str(entry.get("Name", "")).startswith(name_prefix)
            and "DeletedDate" not in entry
            and (self.tag is None or self.tag.matches(entry.get("Tags", [])))
        )

    @property
    def _where(self) -> str:
        return f"Secrets Manager at {self.endpoint_url or self.region}"

    @contextmanager
    def _errors_mapped(self, operation: str, name: str, password: str = "") -> Iterator[None]:
        """Turns boto3's exceptions into ours; ResourceNotFoundException is SecretNotFound(name)."""
        context = f"{self._where}: {operation} {name!r}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "unknown error"))
            if code == "ResourceNotFoundException":
                raise SecretNotFound(name) from None
            if code == "ResourceExistsException":
                raise _SecretExists(context) from None
            message = str(error.get("Message", ""))
            if password:
                message = message.replace(password, "***")
            raise SecretStoreError(f"{context} refused: {code}: {message}") from None
        except BotoCoreError as exc:
            raise SecretStoreError(f"{context} failed: {_describe(exc)}") from None


def _describe(exc: BotoCoreError) -> str:
    # Connection and credential errors say which endpoint or what is missing; others (e.g.
    # ParamValidationError) may quote parameter values, so only their kind is told.
    if isinstance(exc, BotoConnectionError | HTTPClientError | NoCredentialsError | NoRegionError):
        return str(exc)
    return type(exc).__name__
