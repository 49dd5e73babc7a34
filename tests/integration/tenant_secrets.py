"""Switching tenants to token login for a test, through the stack's secret store.

The test stack's tenants log in with passwords (iam_auth = "disabled"); a test that needs the
write-up's token login sets iam_auth = "required" on its own tenants, and restores them after.
The running proxy and access API read the store again when its file changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from tenantproxy.config import FileSecretStoreConfig
from tenantproxy.secretstore import FileSecretStore


def secret_store(outputs: Mapping[str, Any]) -> FileSecretStore:
    return FileSecretStore.from_config(
        FileSecretStoreConfig(
            path=Path(outputs["SecretStore"]), key_file=Path(outputs["SecretsKeyFile"])
        )
    )


@contextmanager
def tokens_required_for(outputs: Mapping[str, Any], users: Iterable[str]) -> Iterator[None]:
    store = secret_store(outputs)
    originals = {f"tenants/{user}": store.get(f"tenants/{user}") for user in users}
    store.put_many(
        {
            name: replace(secret, extra={**secret.extra, "iam_auth": "required"})
            for name, secret in originals.items()
        }
    )
    try:
        yield
    finally:
        store.put_many(originals)
