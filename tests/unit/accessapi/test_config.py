from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenantproxy.accessapi.config import config_from_mapping, load_access_api_config
from tenantproxy.errors import ConfigError

OUTPUTS = {
    "ProxyReaderEndpoint": "127.0.0.1:4000",
    "NoProxyReplicaEndpoints": ["127.0.0.1:5001", "127.0.0.1:5002"],
    "CACertificate": "/state/tls/ca.pem",
    "SecretStore": "/state/secrets.enc",
    "SecretsKeyFile": "/state/secrets.key",
    "IdentityEndpoint": "http://127.0.0.1:6000",
    "Region": "us-east-1",
    "AccountId": "123456789012",
    "ProxyResourceId": "prx-tenantproxy",
    "TenantAccessRoleArn": "arn:aws:iam::123456789012:role/tenant-access",
    "AccessPrincipalCredentials": "/state/access-principal.json",
}


@pytest.fixture
def outputs_file(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    return path


def test_values_missing_from_the_file_come_from_the_stack_outputs(outputs_file: Path) -> None:
    config = config_from_mapping(
        {"outputs_file": str(outputs_file), "tenants": 10, "rows": 50, "region": "eu-west-1"}
    )

    assert config.proxy_reader_endpoint == "127.0.0.1:4000"
    assert config.noproxy_replica_endpoints == ["127.0.0.1:5001", "127.0.0.1:5002"]
    assert config.region == "eu-west-1"
    assert (config.host, config.concurrency_limit, config.scope_override) == (
        "127.0.0.1",
        100,
        None,
    )


def test_an_error_names_the_file_and_the_key(tmp_path: Path, outputs_file: Path) -> None:
    path = tmp_path / "accessapi.toml"
    path.write_text(f'outputs_file = "{outputs_file}"\ntenants = 0\nrows = 50\nlimit = 3\n')

    with pytest.raises(ConfigError) as caught:
        load_access_api_config(path)

    message = str(caught.value)
    assert f"{path}: tenants: Input should be greater than or equal to 1" in message
    assert f"{path}: limit: unknown setting" in message


def test_without_outputs_every_endpoint_is_required() -> None:
    with pytest.raises(ConfigError, match="proxy_reader_endpoint: Field required"):
        config_from_mapping({"tenants": 1, "rows": 5})
