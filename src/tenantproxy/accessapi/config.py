"""The access API's configuration: one TOML file, written by ``stack up`` as ``accessapi.toml``.

::

    host = "127.0.0.1"
    port = 0                          # 0: a free port, announced on stdout
    outputs_file = "outputs.json"     # the stack's outputs; or give the values below one by one
    tenants = 200                     # valid tenants are 0 .. tenants-1 (user0 .. user199)
    rows = 1000                       # IDs 1 .. rows exist in every tenant's mytable
    concurrency_limit = 100           # per stage; past it: 429, as Lambda throttles

Values given in the file win over those read from ``outputs_file``. Errors name the key and file.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tenantproxy.config import TracingConfig, describe_validation_error
from tenantproxy.errors import ConfigError

# outputs.json key -> AccessApiConfig field
_FROM_OUTPUTS = {
    "ProxyReaderEndpoint": "proxy_reader_endpoint",
    "NoProxyReplicaEndpoints": "noproxy_replica_endpoints",
    "CACertificate": "ca_file",
    "SecretStore": "secret_store",
    "SecretsKeyFile": "secrets_key_file",
    "IdentityEndpoint": "identity_endpoint",
    "Region": "region",
    "AccountId": "account_id",
    "ProxyResourceId": "proxy_resource_id",
    "TenantAccessRoleArn": "role_arn",
    "AccessPrincipalCredentials": "access_principal_credentials",
    "NoProxyAuth": "noproxy_auth",
    "NoProxyResourceId": "noproxy_resource_id",
}


class AccessApiConfig(BaseModel):
    """Everything the access API needs: where it listens, what it reaches, its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="listen address (keep it local)")
    port: int = Field(default=0, ge=0, le=65535, description="0: a free port")
    tenants: int = Field(ge=1, description="valid ?tenant= values are 0 .. tenants-1")
    rows: int = Field(ge=5, description="IDs 1..rows exist in mytable; 5 are drawn per request")
    # Lambda's default account concurrency is 1,000, shared by every function; the write-up's two
    # stages at ~120 req/s and tens of ms each need a few dozen at once. 100 per stage leaves
    # room for a slow database to show up as high concurrency before it shows up as throttles.
    concurrency_limit: int = Field(default=100, ge=1, description="per stage; past it: 429")
    connect_timeout_s: float = Field(default=10.0, gt=0, description="per database connection")
    sts_threads: int = Field(
        default=16, ge=1, le=256, description="threads for the blocking boto3 STS calls"
    )
    secret_name_prefix: str = Field(default="tenants/", description="secret of user{N}")
    # Test-only: scope every proxy-stage session policy to this DB user instead of user{N}
    # (the write-up's isolation demonstration: the proxy must then refuse the login, 500).
    scope_override: str | None = None
    # Test-only: hold each admitted request this long before answering (deterministic 429s).
    hold_ms: int = Field(default=0, ge=0)
    # Spans per invocation (invoke, AssumeRole, token, connect, TLS, login, query, close).
    tracing: TracingConfig = Field(default_factory=TracingConfig)

    outputs_file: Path | None = Field(default=None, description="the stack's outputs.json")
    proxy_reader_endpoint: str = Field(pattern=r"^[^:]+:\d+$")
    noproxy_replica_endpoints: list[str] = Field(min_length=1)
    ca_file: Path
    secret_store: Path
    secrets_key_file: Path
    identity_endpoint: str
    region: str
    account_id: str = Field(pattern=r"^\d{12}$")
    proxy_resource_id: str
    role_arn: str
    access_principal_credentials: Path = Field(description="JSON with the principal's keys")
    # The write-up's no-proxy Lambda: AssumeRole, a token for the replica, clear-text login over
    # TLS, checked by MariaDB. "password": the tenant's native password from the secret store.
    noproxy_auth: Literal["token", "password"] = Field(
        default="token", description="how the no-proxy stage logs in"
    )
    noproxy_resource_id: str = Field(
        default="cluster-noproxy", description="the no-proxy cluster's id in rds-db ARNs"
    )


def load_access_api_config(path: Path) -> AccessApiConfig:
    try:
        raw: dict[str, Any] = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_mapping(raw, source=str(path))


def config_from_mapping(raw: dict[str, Any], source: str = "access API config") -> AccessApiConfig:
    """Validates ``raw``, filling values it lacks from ``outputs_file`` when it names one."""
    merged = dict(raw)
    outputs_file = raw.get("outputs_file")
    if outputs_file is not None:
        for key, value in _read_outputs(Path(outputs_file), source).items():
            field = _FROM_OUTPUTS.get(key)
            if field is not None and value is not None:
                merged.setdefault(field, value)
    try:
        return AccessApiConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(source, exc)) from None


def _read_outputs(path: Path, source: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{source}: outputs_file {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: outputs_file {path}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: outputs_file {path}: not a JSON object")
    return document
