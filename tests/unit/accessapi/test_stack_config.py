from __future__ import annotations

import stat
from pathlib import Path

from tenantproxy.accessapi import load_access_api_config
from tenantproxy.stack.access_api import access_api_config, write_access_api_config
from tenantproxy.stack.settings import StackSettings
from tests.unit.accessapi.test_config import OUTPUTS


def test_the_stack_writes_a_private_config_the_api_loads(tmp_path: Path) -> None:
    settings = StackSettings(tenants=7, rows=40, api_concurrency_limit=12, state_dir=tmp_path)
    path = tmp_path / "accessapi.toml"

    write_access_api_config(path, access_api_config(settings, OUTPUTS, 8123))
    config = load_access_api_config(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (config.host, config.port, config.tenants, config.rows) == ("127.0.0.1", 8123, 7, 40)
    assert config.concurrency_limit == 12
    assert config.noproxy_replica_endpoints == OUTPUTS["NoProxyReplicaEndpoints"]
    assert config.role_arn == OUTPUTS["TenantAccessRoleArn"]
    assert config.tracing.sample_ratio == 1.0 and config.tracing.otlp_endpoint is None
    assert config.tracing.spans_file == tmp_path / "traces" / "accessapi.jsonl"
