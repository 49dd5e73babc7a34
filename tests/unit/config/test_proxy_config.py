"""A broken proxy config gives one clear line per problem, naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantproxy.config import load_proxy_config
from tenantproxy.errors import ConfigError

VALID = """
require_tls = false

[secret_store]
path = "/tmp/secrets.enc"
key_file = "/tmp/secrets.key"

[[endpoints]]
name = "read_write"
role = "read_write"
port = 6033

[[targets]]
name = "writer"
role = "writer"
port = 3306
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return path


def test_a_valid_file_loads_with_rds_proxy_defaults(tmp_path):
    config = load_proxy_config(write(tmp_path, VALID), environ={})
    assert config.max_connections_percent == 100
    assert config.max_idle_connections_percent == 50
    assert config.connection_borrow_timeout_s == 120
    assert config.idle_client_timeout_s == 1800
    assert config.endpoints[0].host == "127.0.0.1"


def test_an_unknown_key_is_named_with_the_file_and_its_line(tmp_path):
    path = write(tmp_path, VALID.replace("require_tls = false", "require_tsl = false"))
    with pytest.raises(ConfigError) as caught:
        load_proxy_config(path, environ={})
    assert str(caught.value) == f"{path}:2: require_tsl: unknown setting"


def test_a_wrong_type_in_a_nested_table_names_the_path_of_the_key_and_its_line(tmp_path):
    path = write(tmp_path, VALID.replace("port = 3306", 'port = "three"'))
    with pytest.raises(ConfigError) as caught:
        load_proxy_config(path, environ={})
    assert str(caught.value).startswith(f"{path}:16: targets.0.port: ")


def test_a_missing_key_is_named_without_a_line(tmp_path):
    path = write(tmp_path, VALID.replace('path = "/tmp/secrets.enc"\n', ""))
    with pytest.raises(ConfigError) as caught:
        load_proxy_config(path, environ={})
    assert str(caught.value) == f"{path}: secret_store.file.path: Field required"


def test_invalid_toml_names_the_line(tmp_path):
    path = write(tmp_path, VALID + "\nmax_clients = = 3\n")
    with pytest.raises(ConfigError) as caught:
        load_proxy_config(path, environ={})
    assert "not valid TOML" in str(caught.value) and "line" in str(caught.value)


def test_require_tls_without_a_certificate_is_refused(tmp_path):
    path = write(tmp_path, VALID.replace("require_tls = false", "require_tls = true"))
    with pytest.raises(ConfigError) as caught:
        load_proxy_config(path, environ={})
    assert "require_tls = true needs tls_cert_file and tls_key_file" in str(caught.value)


def test_an_environment_variable_overrides_a_setting(tmp_path):
    path = write(tmp_path, VALID)
    config = load_proxy_config(path, environ={"TENANTPROXY_CONNECTION_BORROW_TIMEOUT_S": "5"})
    assert config.connection_borrow_timeout_s == 5


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_proxy_config(tmp_path / "absent.toml", environ={})
    assert "cannot read" in str(caught.value)


def test_the_monitor_password_is_not_in_the_configs_repr(tmp_path):
    config = load_proxy_config(
        write(tmp_path, 'monitor_user = "m"\nmonitor_password = "hunter2-secret"\n' + VALID),
        environ={},
    )
    assert "hunter2-secret" not in repr(config)
