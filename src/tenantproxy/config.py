"""The proxy's configuration: one TOML file, every setting with a documented default.

Setting names follow RDS Proxy's (see docs/configuration.md). Environment variables
``TENANTPROXY_<SETTING>`` override top-level scalar settings. Errors name the key and the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tenantproxy.errors import ConfigError

ENV_PREFIX = "TENANTPROXY_"


# "transaction": a client holds a backend for one transaction (one statement in autocommit mode)
# and its session state is carried to the next backend (docs/multiplexing.md). "session": from
# login to logout, as PgBouncer's pool_mode = session.
PoolMode = Literal["transaction", "session"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointConfig(_Strict):
    """A proxy listener. ``read_write`` goes to the writer, ``read_only`` to the replicas."""

    name: str
    role: Literal["read_write", "read_only"]
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    # None: the proxy's pool_mode.
    pool_mode: PoolMode | None = None


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


class AwsSecretStoreConfig(_Strict):
    """AWS Secrets Manager (or anything that speaks its API, e.g. moto's server)."""

    kind: Literal["aws"] = "aws"
    region: str = "us-east-1"
    # None: AWS's own endpoint for the region. Credentials come from boto3's usual chain.
    endpoint_url: str | None = None
    # Only secrets with this tag (key, value) serve as tenants; None: every name under the prefix.
    tag_key: str | None = None
    tag_value: str | None = None
    # How long a secret read from the store is used before it is read again.
    cache_ttl_s: float = Field(default=300.0, ge=0)


SecretStoreConfig = Annotated[
    FileSecretStoreConfig | AwsSecretStoreConfig, Field(discriminator="kind")
]


class IamAuthConfig(_Strict):
    """Token login (RDS Proxy's IAMAuth): what the proxy needs to verify db-auth tokens
    without calling the identity service."""

    # The identity service's sealing key (AES-256-GCM), shared with the proxy.
    key_file: Path
    region: str = "us-east-1"
    account_id: str = "123456789012"  # the stack's and the identity service's default
    # The id in arn:aws:rds-db:<region>:<account>:dbuser:<proxy_resource_id>/<db user>.
    proxy_resource_id: str = "prx-tenantproxy"
    # host:port names a token may be signed for; empty: the proxy's endpoints.
    endpoint_hosts: list[str] = Field(default_factory=list)
    # Tokens live 15 minutes at most (X-Amz-Expires <= 900); clocks may differ by this much.
    clock_skew_s: float = Field(default=60.0, ge=0)
    token_cache_size: int = Field(default=100_000, ge=0)


class TracingConfig(_Strict):
    """OpenTelemetry spans (observability/tracing.py). Off unless ``sample_ratio`` > 0 and there
    is somewhere to send them: a JSON-lines ``spans_file`` and/or an OTLP/HTTP collector."""

    # Share of the traces started here that are recorded; a caller's trace context (the
    # ``traceparent`` connect attribute) decides for the traces it started.
    sample_ratio: float = Field(default=0.0, ge=0, le=1)
    spans_file: Path | None = None
    # e.g. "http://127.0.0.1:4318/v1/traces" (Jaeger, Tempo, an OpenTelemetry Collector).
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://")


class ProxyConfig(_Strict):
    """Everything one proxy process needs."""

    endpoints: list[EndpointConfig]
    targets: list[TargetConfig]
    secret_store: SecretStoreConfig
    # Secret names are ``secret_name_prefix + db user``, e.g. ``tenants/user7``.
    secret_name_prefix: str = "tenants/"

    # Token login for secrets with iam_auth = "required"; None: such secrets cannot log in.
    iam_auth: IamAuthConfig | None = None

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
    # MariaDB's connect_timeout: a client has this long from its accept to finish its login.
    login_timeout_s: float = Field(default=10.0, gt=0)
    init_query: str | None = None

    # Transaction multiplexing (docs/multiplexing.md); an endpoint may set its own pool_mode.
    pool_mode: PoolMode = "transaction"
    # ProxySQL's mysql-query_retries_on_failure: a command whose backend died before any byte
    # of its answer came back is sent again on another backend this many times, when nothing
    # (a transaction, a pin) tied the session to the dead one. It may then run twice.
    retries_on_backend_loss: int = Field(default=1, ge=0, le=5)
    # ProxySQL's auto_increment_delay_multiplex: after an OK with a last insert id, the client
    # keeps its backend for this many more statements, so SELECT LAST_INSERT_ID() runs there.
    last_insert_id_hold_statements: int = Field(default=5, ge=0)
    # ProxySQL's auto_increment_delay_multiplex_timeout_ms: a client that goes quiet after such
    # an OK gives its backend back after this long (the id is then read on another backend).
    last_insert_id_hold_timeout_s: float = Field(default=1.0, gt=0)
    # RDS Proxy's SessionPinningFilters: "EXCLUDE_VARIABLE_SETS" stops SETs of variables the
    # proxy does not carry from pinning (they are then not carried either).
    session_pinning_filters: list[Literal["EXCLUDE_VARIABLE_SETS"]] = Field(default_factory=list)
    # Binary prepared statements each backend keeps for the clients it serves (closed least
    # recently used first).
    backend_statement_cache_size: int = Field(default=256, ge=1)

    # Pools: one per (target, db user).
    target_max_connections: int = Field(default=151, ge=1)  # used until the target is asked
    pool_min_idle: int = Field(default=0, ge=0)
    backend_idle_timeout_s: float = Field(default=300.0, gt=0)
    # A backend idle this long is pinged before a client gets it (PgBouncer's server_check_delay).
    backend_check_after_idle_s: float = Field(default=30.0, ge=0)
    max_clients: int = Field(default=10000, ge=1)
    # Per-tenant caps, which RDS Proxy lacks (None: no cap). A tenant's client connections past
    # the first get MySQL's ERROR 1203; its backends per target past the second wait for a lease.
    max_clients_per_tenant: int | None = Field(default=None, ge=1)
    max_backends_per_tenant: int | None = Field(default=None, ge=1)

    # Processes that serve the endpoints, each with its own SO_REUSEPORT listeners; the limits
    # hold for all of them together (docs/decisions/0007-workers.md). 1: a single process.
    # None: one per CPU this process may use (``worker_count``).
    workers: int | None = Field(default=None, ge=1)

    # Prometheus metrics at http://127.0.0.1:<metrics_port>/metrics; None: not served; 0: a free
    # port, printed in the ready line.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    health_check_interval_s: float = Field(default=5.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    # The version the proxy announces; by default the targets' own (drivers pick collations and
    # features from it: a MariaDB behind a "MySQL 8" banner gets utf8mb4_0900_ai_ci and fails).
    server_version: str | None = None
    max_packet_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # Spans per login (client login, token check, borrow wait, the first backend query).
    tracing: TracingConfig = Field(default_factory=TracingConfig)

    @model_validator(mode="before")
    @classmethod
    def _file_store_is_the_default_kind(cls, raw: Any) -> Any:
        store = raw.get("secret_store") if isinstance(raw, dict) else None
        if isinstance(store, dict) and "kind" not in store:
            raw = {**raw, "secret_store": {**store, "kind": "file"}}
        return raw

    @model_validator(mode="after")
    def _tls_files_come_in_pairs(self) -> ProxyConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.require_tls and self.tls_cert_file is None:
            raise ValueError("require_tls = true needs tls_cert_file and tls_key_file")
        return self

    @property
    def worker_count(self) -> int:
        """``workers``, or the CPUs of this process's affinity mask (what a container or
        taskset allows it, not the host's count)."""
        if self.workers is not None:
            return self.workers
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1

    @property
    def is_tls_offered(self) -> bool:
        return self.tls_cert_file is not None

    def pool_mode_of(self, endpoint: EndpointConfig) -> PoolMode:
        return endpoint.pool_mode or self.pool_mode


def load_proxy_config(path: Path, environ: dict[str, str] | None = None) -> ProxyConfig:
    """Reads and validates a proxy config file; environment variables override scalars."""
    environ = dict(os.environ) if environ is None else environ
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
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
        raise ConfigError(describe_validation_error(str(path), exc, text)) from None


def describe_validation_error(source: str, exc: ValidationError, toml_text: str = "") -> str:
    """One line per problem, naming the key, and its line when the TOML text sets it:
    ``file:line: key.sub: message``."""
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = ".".join(str(part) for part in loc) or "(top level)"
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        line = toml_line_of(toml_text, loc) if toml_text else None
        where = f"{source}:{line}" if line is not None else source
        lines.append(f"{where}: {key}: {message}")
    return "\n".join(lines)


def describe_setting_error(path: Path, loc: tuple[Any, ...], cause: str) -> str:
    """``file:line: key: cause`` for a setting that failed when used (the line when found)."""
    try:
        text = path.read_text()
    except OSError:
        text = ""
    line = toml_line_of(text, loc) if text else None
    where = f"{path}:{line}" if line is not None else str(path)
    key = ".".join(str(part) for part in loc)
    return f"{where}: {key}: {cause}"


_ARRAY_HEADER = re.compile(r"\[\[\s*([\w.-]+)\s*\]\]")
_TABLE_HEADER = re.compile(r"\[\s*([\w.-]+)\s*\]")
_KEY = re.compile(r"([\w-]+)\s*=")


def toml_line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line that sets the key at ``loc`` (a validation error's location, e.g.
    ``("targets", 0, "port")`` or ``("require_tls",)``); None when the text does not set it."""
    section: tuple[Any, ...] = ()
    arrays_seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if found := _ARRAY_HEADER.match(stripped):
            name = found.group(1)
            section = (name, arrays_seen.get(name, 0))
            arrays_seen[name] = section[1] + 1
        elif found := _TABLE_HEADER.match(stripped):
            section = (found.group(1),)
        elif (found := _KEY.match(stripped)) is None:
            continue
        else:
            section_key = (*section, found.group(1))
            if section_key == loc[: len(section_key)] and len(section_key) == len(loc):
                return number
            continue
        if section == loc:
            return number
    return None
