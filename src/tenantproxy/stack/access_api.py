"""The stack's access API (API Gateway + Lambda of the write-up), started when ``load_test``.

``up`` writes ``<state>/accessapi.toml`` with every value the API needs (taken from the outputs
being built, since outputs.json is written last), starts `tenantproxy accessapi run`, and adds
the output ``APIGatewayURL`` (the base URL; stages at /proxy_stage and /no_proxy_stage).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenantproxy.accessapi import config_from_mapping
from tenantproxy.errors import ConfigError, StackError
from tenantproxy.stack.identity_service import NOPROXY_RESOURCE_ID
from tenantproxy.stack.outputs import StackFiles, to_toml, tracing_table
from tenantproxy.stack.settings import StackSettings
from tenantproxy.stack.state import write_private_file

ACCESS_API_PROCESS = "accessapi"
HOST = "127.0.0.1"


def access_api_config(
    settings: StackSettings, stack_outputs: Mapping[str, Any], port: int
) -> dict[str, Any]:
    """The API's TOML document, from the outputs being built (no secret in it: file paths)."""
    o = stack_outputs
    return {
        "host": HOST,
        "port": port,
        "tenants": settings.tenants,
        "rows": settings.rows,
        "concurrency_limit": settings.api_concurrency_limit,
        "proxy_reader_endpoint": o["ProxyReaderEndpoint"],
        "noproxy_replica_endpoints": o["NoProxyReplicaEndpoints"] or [o["NoProxyReaderEndpoint"]],
        "ca_file": o["CACertificate"],
        "secret_store": o["SecretStore"],
        "secrets_key_file": o["SecretsKeyFile"],
        "identity_endpoint": o["IdentityEndpoint"],
        "region": o["Region"],
        "account_id": o["AccountId"],
        "proxy_resource_id": o["ProxyResourceId"],
        "role_arn": o["TenantAccessRoleArn"],
        "access_principal_credentials": o["AccessPrincipalCredentials"],
        "noproxy_auth": settings.noproxy_auth,
        "noproxy_resource_id": NOPROXY_RESOURCE_ID,
        "tracing": tracing_table(
            settings.trace_sample_ratio,
            settings.otlp_endpoint,
            Path(o.get("TracesDir") or StackFiles(settings.state_dir).traces_dir),
            "accessapi",
        ),
    }


def write_access_api_config(path: Path, config: Mapping[str, Any]) -> None:
    """Writes the TOML (0600) and validates it as the API will."""
    write_private_file(path, to_toml(config))
    try:
        config_from_mapping(dict(config), source=str(path))
    except ConfigError as exc:
        raise StackError(f"the access API config written is invalid: {exc}") from None


def access_api_argv(files: StackFiles) -> list[str]:
    program = Path(sys.executable).parent / "tenantproxy"
    return [str(program), "accessapi", "run", "--config", str(files.access_api_config)]


def api_gateway_url(port: int) -> str:
    return f"http://{HOST}:{port}"
