"""An encrypted local secret store: one Fernet token over one JSON document ``{name: secret}``.

Reads are cheap: the document is decrypted once and kept in memory, and read again only when the
file's inode, mtime or size changes (another process wrote it). Writes replace the file atomically
(write a temporary file in the same folder, then ``os.replace``), with mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from tenantproxy.config import FileSecretStoreConfig
from tenantproxy.errors import SecretNotFound, SecretStoreError
from tenantproxy.secretstore.store import Secret

_FILE_MODE = 0o600


class FileSecretStore:
    """Secrets in one Fernet-encrypted file."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = Path(path)
        try:
            self._fernet = Fernet(key.strip())
        except (ValueError, TypeError):
            raise SecretStoreError(
                "secret store key is not a valid Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._secrets: dict[str, Secret] = {}

    def __repr__(self) -> str:
        return f"FileSecretStore(path={str(self.path)!r})"

    @classmethod
    def from_config(cls, config: FileSecretStoreConfig) -> FileSecretStore:
        """Key from ``key_file``, else from the environment variable ``key_env``."""
        if config.key_file is not None:
            try:
                key = Path(config.key_file).read_bytes()
            except OSError as exc:
                raise SecretStoreError(
                    f"cannot read secret store key file {config.key_file}: {exc.strerror}"
                ) from None
        else:
            value = os.environ.get(config.key_env)
            if not value:
                raise SecretStoreError(
                    f"no key for secret store {config.path}: set key_file, "
                    f"or the environment variable {config.key_env}"
                )
            key = value.encode()
        return cls(Path(config.path), key)

    @staticmethod
    def generate_key() -> bytes:
        return Fernet.generate_key()

    @staticmethod
    def write_key_file(path: Path, key: bytes) -> None:
        """Writes a key file readable by its owner only."""
        _write_private(Path(path), key)

    def get(self, name: str) -> Secret:
        secrets = self._current()
        try:
            return secrets[name]
        except KeyError:
            raise SecretNotFound(name) from None

    def list_names(self, prefix: str = "") -> list[str]:
        return sorted(name for name in self._current() if name.startswith(prefix))

    def is_fresh(self, name: str) -> bool:
        # A local file: reading it (a stat, and a decrypt when it changed) never waits long.
        return True

    def invalidate(self, name: str) -> None:
        """The next read decrypts the file again (one document: every name is read anew)."""
        with self._lock:
            self._stamp, self._secrets = None, {}

    def put(self, name: str, secret: Secret) -> None:
        self.put_many({name: secret})

    def put_many(self, items: Mapping[str, Secret]) -> None:
        with self._lock:
            secrets = dict(self._load_if_changed())
            secrets.update(items)
            document = {name: secret.to_dict() for name, secret in secrets.items()}
            token = self._fernet.encrypt(json.dumps(document, sort_keys=True).encode())
            _write_private(self.path, token)
            self._secrets = secrets
            self._stamp = self._file_stamp()

    def _current(self) -> dict[str, Secret]:
        with self._lock:
            return self._load_if_changed()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        # The inode too: every write is a new file (atomic replace), even within one mtime tick.
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _load_if_changed(self) -> dict[str, Secret]:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return self._secrets
        if stamp is None:
            self._secrets, self._stamp = {}, None
            return self._secrets
        self._secrets = self._decrypt(self.path.read_bytes())
        self._stamp = stamp
        return self._secrets

    def _decrypt(self, token: bytes) -> dict[str, Secret]:
        try:
            plain = self._fernet.decrypt(token)
        except InvalidToken:
            raise SecretStoreError(
                f"cannot decrypt secret store {self.path}: wrong key, or the file is damaged"
            ) from None
        document: Any = json.loads(plain)
        if not isinstance(document, dict):
            raise SecretStoreError(f"secret store {self.path} does not hold a JSON object")
        secrets: dict[str, Secret] = {}
        for name, value in document.items():
            try:
                secrets[name] = Secret.from_dict(value)
            except SecretStoreError as exc:
                raise SecretStoreError(f"secret {name!r} in {self.path}: {exc}") from None
        return secrets


def _write_private(path: Path, data: bytes) -> None:
    """Atomically replaces ``path`` with ``data``, mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
