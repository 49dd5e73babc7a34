"""The stack file: every parameter of ``tenantproxy stack up``, with its documented default.

Precedence: defaults < the stack file (TOML) < ``--set key=value`` < ``--state-dir``. Values given
with ``--set`` are strings; pydantic coerces them to the field's type (``tenants=2000`` → int,
``load_test=false`` → bool). Errors name the key, and for TOML the line.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tenantproxy.config import describe_validation_error
from tenantproxy.errors import ConfigError


class StackSettings(BaseModel):
    """Parameters of the local stack; names follow the write-up's CloudFormation template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: int = Field(default=200, ge=1, description="tenants (UsersToCreate): user{i}")
    rows: int = Field(default=1000, ge=0, description="rows per tenant (NUMBER_OF_ROWS)")
    replicas: int = Field(default=2, ge=0, le=15, description="replicas per cluster")
    load_test: bool = Field(
        default=True, description="also build the no-proxy cluster (CreateLoadTest)"
    )
    state_dir: Path = Field(default=Path("./.tenantproxy"), description="where the stack lives")
    require_tls: bool = Field(default=True, description="the proxy's RequireTLS")
    max_allowed_packet_mb: int = Field(default=64, ge=1, le=1024)
    mariadb_max_connections: int = Field(default=200, ge=10, description="each MariaDB's")
    # Passed through to the proxy, with the write-up's values.
    max_connections_percent: int = Field(default=90, ge=1, le=100)
    max_idle_connections_percent: int = Field(default=50, ge=0, le=100)
    connection_borrow_timeout_s: float = Field(default=120.0, gt=0, le=300)
    start_proxy: bool = Field(default=True, description="start `tenantproxy proxy run`")
    proxy_workers: int | None = Field(
        default=None, ge=1, description="the proxy's `workers`; none: one per CPU it may use"
    )
    iam_auth: Literal["required", "disabled"] = Field(
        default="required", description="every tenant secret's IAMAuth: token login or password"
    )
    noproxy_auth: Literal["token", "password"] = Field(
        default="token",
        description="no-proxy cluster's tenant login: db-auth tokens checked by MariaDB (PAM), "
        "or native passwords",
    )
    region: str = Field(default="us-east-1", description="the identity service's AWS region")
    account_id: str = Field(
        default="123456789012", pattern=r"^\d{12}$", description="the identity service's account"
    )
    api_concurrency_limit: int = Field(
        default=100, ge=1, description="the access API's per-stage limit (Lambda concurrency)"
    )
    # Traces (the write-up's X-Ray step): the access API samples this share of its invocations
    # and the proxy follows; spans go to <state_dir>/traces/*.jsonl, and to otlp_endpoint if set.
    trace_sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="share of invocations traced; 0: tracing off"
    )
    otlp_endpoint: str | None = Field(
        default=None, pattern=r"^https?://", description="also send spans to this OTLP/HTTP URL"
    )
    startup_timeout_s: float = Field(default=60.0, gt=0, description="per process, to listen")
    stop_timeout_s: float = Field(default=30.0, gt=0, description="SIGTERM, then SIGKILL")


def parse_set_options(items: Iterable[str]) -> dict[str, str]:
    """``["tenants=10", "load_test=false"]`` → ``{"tenants": "10", "load_test": "false"}``."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        if key not in StackSettings.model_fields:
            known = ", ".join(StackSettings.model_fields)
            raise ConfigError(f"--set {key}: unknown setting (known: {known})")
        values[key] = value.strip()
    return values


def read_stack_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names the line and column: "... (at line 3, column 9)".
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_stack_settings(
    file: Path | None = None,
    overrides: Iterable[str] = (),
    state_dir: Path | None = None,
) -> StackSettings:
    """Builds the settings from a stack file, ``--set`` items and ``--state-dir``."""
    raw: dict[str, Any] = read_stack_file(file) if file is not None else {}
    raw.update(parse_set_options(overrides))
    if state_dir is not None:
        raw["state_dir"] = state_dir
    if file is None:
        return validate_settings(raw)
    return validate_settings(raw, source=str(file), toml_text=Path(file).read_text())


def validate_settings(
    raw: Mapping[str, Any], source: str = "settings", toml_text: str = ""
) -> StackSettings:
    try:
        return StackSettings.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(source, exc, toml_text)) from None
