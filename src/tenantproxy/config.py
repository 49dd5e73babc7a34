"""The proxy's configuration: one TOML file, every setting with a documented default.

Setting names follow RDS Proxy's (see docs/configuration.md). Environment variables
``TENANTPROXY_<SETTING>`` override top-level scalar settings. Errors name the key and the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tenantproxy.errors import ConfigError

ENV_PREFIX = "TENANTPROXY_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointConfig(_Strict):
    """A proxy listener. ``read_write`` goes to the writer, ``read_only`` to the replicas."""

    name: str
    role: Literal["read_write", "read_only"]
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class TargetConfig(_Strict):
    """One database server behind the proxy."""

    name: str
    role: Literal["writer", "replica"]
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class FileSecretStoreConfig(_Strict):
    """The encrypted local file store (the default)."""

    kind: Literal["file"] = "file"
    path: Path
    # Where the Fernet key comes from: a file, or else the named environment variable.
    key_file: Path | None = None
    key_env: str = "TENANTPROXY_SECRETS_KEY"


class ProxyConfig(_Strict):
    """Everything one proxy process needs."""

    endpoints: list[EndpointConfig]
    targets: list[TargetConfig]
    secret_store: FileSecretStoreConfig
    # Secret names are ``secret_name_prefix + db user``, e.g. ``tenants/user7``.
    secret_name_prefix: str = "tenants/"

    # TLS towards clients: offered when a certificate is set; required when require_tls.
    require_tls: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # TLS towards the databases (off by default: the targets sit on loopback).
    backend_tls: bool = False
    backend_ca_file: Path | None = None
    # Credentials the proxy uses for health checks and to read max_connections.
    monitor_user: str | None = None
    monitor_password: str | None = Field(default=None, repr=False)

    # RDS Proxy's limits, with its names and defaults.
    max_connections_percent: int = Field(default=100, ge=1, le=100)
    max_idle_connections_percent: int = Field(default=50, ge=0, le=100)
    connection_borrow_timeout_s: float = Field(default=120.0, gt=0, le=300)
    idle_client_timeout_s: float = Field(default=1800.0, gt=0)
    init_query: str | None = None

    # Pools: one per (target, db user).
    target_max_connections: int = Field(default=151, ge=1)  # used until the target is asked
    pool_min_idle: int = Field(default=0, ge=0)
    backend_idle_timeout_s: float = Field(default=300.0, gt=0)
    # A backend idle this long is pinged before a client gets it (PgBouncer's server_check_delay).
    backend_check_after_idle_s: float = Field(default=30.0, ge=0)
    max_clients: int = Field(default=10000, ge=1)

    health_check_interval_s: float = Field(default=5.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    # The version the proxy announces; by default the targets' own (drivers pick collations and
    # features from it: a MariaDB behind a "MySQL 8" banner gets utf8mb4_0900_ai_ci and fails).
    server_version: str | None = None
    max_packet_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _tls_files_come_in_pairs(self) -> ProxyConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.require_tls and self.tls_cert_file is None:
            raise ValueError("require_tls = true needs tls_cert_file and tls_key_file")
        return self

    @property
    def is_tls_offered(self) -> bool:
        return self.tls_cert_file is not None


def load_proxy_config(path: Path, environ: dict[str, str] | None = None) -> ProxyConfig:
    """Reads and validates a proxy config file; environment variables override scalars."""
    environ = dict(os.environ) if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for key in ProxyConfig.model_fields:
        env_value = environ.get(ENV_PREFIX + key.upper())
        if env_value is not None:
            raw[key] = env_value
    try:
        return ProxyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc)) from None


def describe_validation_error(path: Path, exc: ValidationError) -> str:
    """One line per problem, naming the key: ``file: key.sub: message``."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{path}: {key}: {error['msg']}")
    return "\n".join(lines)
