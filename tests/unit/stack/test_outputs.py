import json
import stat
import tomllib
from pathlib import Path

from tenantproxy.config import ProxyConfig
from tenantproxy.stack.mariadb import AdminAccount
from tenantproxy.stack.outputs import (
    read_admin_credentials,
    to_toml,
    write_admin_credentials,
    write_proxy_config,
)
from tenantproxy.stack.settings import StackSettings
from tenantproxy.stack.stack import plan_clusters


def test_to_toml_writes_scalars_tables_and_arrays_of_tables():
    document = {
        "flag": True,
        "ratio": 1.5,
        "count": 3,
        "name": 'quote " and \\ back',
        "skipped": None,
        "store": {"path": "/x"},
        "items": [{"a": 1}, {"a": 2}],
    }
    parsed = tomllib.loads(to_toml(document))
    assert parsed == {k: v for k, v in document.items() if v is not None}


def test_the_proxy_config_written_is_a_valid_proxy_config_with_mode_0600(tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    config = {
        "require_tls": True,
        "tls_cert_file": str(tmp_path / "cert.pem"),
        "tls_key_file": str(tmp_path / "key.pem"),
        "monitor_user": "tpadmin",
        "monitor_password": "hidden",
        "secret_store": {"kind": "file", "path": str(tmp_path / "s.enc")},
        "endpoints": [{"name": "read_write", "role": "read_write", "port": 1}],
        "targets": [{"name": "w", "role": "writer", "port": 2}],
    }
    path = tmp_path / "proxy.toml"
    write_proxy_config(path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parsed = ProxyConfig.model_validate(tomllib.loads(path.read_text()))
    assert parsed.monitor_password == "hidden"


def test_admin_credentials_round_trip_in_a_private_file(tmp_path):
    path = tmp_path / "admin.json"
    admin = AdminAccount("tpadmin", "pw")
    write_admin_credentials(path, admin)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["username"] == "tpadmin"
    assert read_admin_credentials(path) == admin
    assert "pw" not in repr(admin)


def test_plan_gives_distinct_ports_and_server_ids_for_both_clusters():
    clusters = plan_clusters(StackSettings(replicas=2), Path("/state"))
    instances = [spec for specs in clusters.values() for spec in specs]
    assert [i.name for i in instances] == [
        "proxy-writer",
        "proxy-replica1",
        "proxy-replica2",
        "noproxy-writer",
        "noproxy-replica1",
        "noproxy-replica2",
    ]
    assert len({i.port for i in instances}) == 6
    assert len({i.server_id for i in instances}) == 6


def test_plan_without_load_test_has_only_the_proxy_cluster():
    clusters = plan_clusters(StackSettings(load_test=False, replicas=1), Path("/state"))
    assert list(clusters) == ["proxy"]
