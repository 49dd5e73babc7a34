"""What ``stack up`` hands over: outputs.json (the CloudFormation Outputs analog), the admin
credentials file, and the proxy's config file. No secret is ever in outputs.json itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenantproxy.config import load_proxy_config
from tenantproxy.errors import ConfigError, StackError
from tenantproxy.stack.mariadb import AdminAccount, InstanceSpec
from tenantproxy.stack.state import OUTPUTS_FILE, write_private_file

OUTPUT_KEYS = (
    "ProxyEndpoint",
    "ProxyReaderEndpoint",
    "NoProxyWriterEndpoint",
    "NoProxyReaderEndpoint",
    "NoProxyReplicaEndpoints",
    "ProxyClusterInstances",
    "NoProxyClusterInstances",
    "CACertificate",
    "StateDir",
    "SecretStore",
    "SecretsKeyFile",
    "AdminCredentials",
    "ProxyConfig",
    "ProxyPid",
    "ProxyMetricsEndpoint",
    "IdentityEndpoint",
    "Region",
    "AccountId",
    "ProxyResourceId",
    "TenantAccessRoleArn",
    "AccessPrincipalCredentials",
    "APIGatewayURL",
    "NoProxyAuth",
    "NoProxyResourceId",
    "NoProxyPamService",
    "TracesDir",
)
# The spans files of the stack's processes, in TracesDir: <service>.jsonl.
SPANS_FILE_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class StackFiles:
    """Paths of everything ``up`` writes, all under the state dir."""

    state_dir: Path

    @property
    def certificates(self) -> Path:
        return self.state_dir / "tls"

    @property
    def secret_store(self) -> Path:
        return self.state_dir / "secrets.enc"

    @property
    def secrets_key(self) -> Path:
        return self.state_dir / "secrets.key"

    @property
    def admin_credentials(self) -> Path:
        return self.state_dir / "admin.json"

    @property
    def proxy_config(self) -> Path:
        return self.state_dir / "proxy.toml"

    @property
    def identity_config(self) -> Path:
        return self.state_dir / "identity.toml"

    @property
    def identity_key(self) -> Path:
        return self.state_dir / "identity.key"

    @property
    def identity_log(self) -> Path:
        return self.state_dir / "identity.log"

    @property
    def access_principal_credentials(self) -> Path:
        return self.state_dir / "access-principal.json"

    @property
    def proxy_log(self) -> Path:
        return self.state_dir / "proxy.log"

    @property
    def access_api_config(self) -> Path:
        return self.state_dir / "accessapi.toml"

    @property
    def access_api_log(self) -> Path:
        return self.state_dir / "accessapi.log"

    @property
    def traces_dir(self) -> Path:
        return self.state_dir / "traces"

    @property
    def outputs(self) -> Path:
        return self.state_dir / OUTPUTS_FILE


def write_admin_credentials(path: Path, admin: AdminAccount) -> None:
    write_private_file(path, json.dumps({"username": admin.user, "password": admin.password}))


def read_admin_credentials(path: Path) -> AdminAccount:
    try:
        data = json.loads(Path(path).read_text())
        return AdminAccount(data["username"], data["password"])
    except (OSError, ValueError, KeyError) as exc:
        raise StackError(f"{path}: cannot read the admin credentials: {exc}") from None


def instance_list(instances: Sequence[InstanceSpec]) -> list[dict[str, str]]:
    return [{"name": i.name, "role": i.role, "endpoint": i.endpoint} for i in instances]


def build_outputs(
    files: StackFiles,
    ca_file: Path,
    proxy_endpoints: Mapping[str, str],
    clusters: Mapping[str, Sequence[InstanceSpec]],
    proxy_pid: int | None,
) -> dict[str, Any]:
    noproxy = list(clusters.get("noproxy", ()))
    noproxy_replicas = [i.endpoint for i in noproxy if i.role == "replica"]
    noproxy_writer = next((i.endpoint for i in noproxy if i.role == "writer"), None)
    return {
        "ProxyEndpoint": proxy_endpoints["read_write"],
        "ProxyReaderEndpoint": proxy_endpoints["read_only"],
        "NoProxyWriterEndpoint": noproxy_writer,
        # With no replicas the writer serves reads, as an Aurora reader endpoint would.
        "NoProxyReaderEndpoint": noproxy_replicas[0] if noproxy_replicas else noproxy_writer,
        "NoProxyReplicaEndpoints": noproxy_replicas,
        "ProxyClusterInstances": instance_list(clusters["proxy"]),
        "NoProxyClusterInstances": instance_list(noproxy),
        "CACertificate": str(ca_file),
        "StateDir": str(files.state_dir),
        "SecretStore": str(files.secret_store),
        "SecretsKeyFile": str(files.secrets_key),
        "AdminCredentials": str(files.admin_credentials),
        "ProxyConfig": str(files.proxy_config),
        "ProxyPid": proxy_pid,
        "TracesDir": str(files.traces_dir),
    }


def tracing_table(
    sample_ratio: float, otlp_endpoint: str | None, traces_dir: Path, service: str
) -> dict[str, Any]:
    """The ``[tracing]`` table of a stack process's config (TracingConfig)."""
    table: dict[str, Any] = {
        "sample_ratio": sample_ratio,
        "spans_file": str(traces_dir / f"{service}{SPANS_FILE_SUFFIX}"),
    }
    if otlp_endpoint:
        table["otlp_endpoint"] = otlp_endpoint
    return table


def write_outputs(files: StackFiles, outputs: Mapping[str, Any]) -> None:
    write_private_file(files.outputs, json.dumps(outputs, indent=2) + "\n")


def write_proxy_config(path: Path, config: Mapping[str, Any]) -> None:
    """Writes the proxy's TOML (0600: it holds the monitor password) and validates it."""
    write_private_file(path, to_toml(config))
    try:
        load_proxy_config(path, environ={})
    except ConfigError as exc:
        raise StackError(f"the proxy config written is invalid: {exc}") from None


def to_toml(document: Mapping[str, Any]) -> str:
    """A small TOML writer for scalars, tables and arrays of tables (what ProxyConfig needs)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, Sequence[Mapping[str, Any]]]] = []
    for key, value in document.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            arrays.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines += ["", f"[{key}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{key}]]", *(f"{k} = {_toml_value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # json.dumps writes a valid TOML basic string (same escapes).
    return json.dumps(str(value))
