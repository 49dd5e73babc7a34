from pathlib import Path

import pytest

from tenantproxy.errors import ConfigError
from tenantproxy.stack.settings import StackSettings, load_stack_settings, parse_set_options


def test_defaults_are_the_write_ups_values():
    settings = StackSettings()
    assert (settings.tenants, settings.rows, settings.replicas) == (200, 1000, 2)
    assert settings.load_test is True
    assert settings.require_tls is True
    assert settings.state_dir == Path("./.tenantproxy")
    assert settings.max_connections_percent == 90
    assert settings.max_idle_connections_percent == 50
    assert settings.connection_borrow_timeout_s == 120.0


def test_set_values_are_coerced_to_each_fields_type():
    settings = load_stack_settings(
        overrides=["tenants=2000", "rows=10", "load_test=false", "connection_borrow_timeout_s=5.5"]
    )
    assert settings.tenants == 2000
    assert settings.rows == 10
    assert settings.load_test is False
    assert settings.connection_borrow_timeout_s == 5.5


def test_set_of_an_unknown_key_names_it():
    with pytest.raises(ConfigError, match="--set tennants: unknown setting"):
        parse_set_options(["tennants=3"])


def test_set_without_an_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set_options(["tenants"])


def test_set_with_a_value_of_the_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"tenants:.*integer"):
        load_stack_settings(overrides=["tenants=many"])


def test_set_with_a_value_out_of_range_names_the_key():
    with pytest.raises(ConfigError, match="max_connections_percent"):
        load_stack_settings(overrides=["max_connections_percent=150"])


def test_set_value_may_contain_equals_signs():
    assert parse_set_options(["state_dir=/tmp/a=b"]) == {"state_dir": "/tmp/a=b"}


def test_stack_file_is_read_and_set_overrides_it(tmp_path):
    stack_file = tmp_path / "stack.toml"
    stack_file.write_text("tenants = 5\nrows = 7\n")
    settings = load_stack_settings(stack_file, ["rows=9"])
    assert (settings.tenants, settings.rows) == (5, 9)


def test_state_dir_option_wins_over_the_file(tmp_path):
    stack_file = tmp_path / "stack.toml"
    stack_file.write_text('state_dir = "/from/file"\n')
    settings = load_stack_settings(stack_file, state_dir=tmp_path / "option")
    assert settings.state_dir == tmp_path / "option"


def test_bad_toml_names_the_file_and_the_line(tmp_path):
    stack_file = tmp_path / "stack.toml"
    stack_file.write_text("tenants = 5\nrows = = 7\n")
    with pytest.raises(ConfigError, match=r"stack\.toml: not valid TOML: .*line 2"):
        load_stack_settings(stack_file)


def test_unknown_key_in_the_stack_file_names_it_and_its_line(tmp_path):
    stack_file = tmp_path / "stack.toml"
    stack_file.write_text("tenants = 5\nreplica = 1\n")
    with pytest.raises(ConfigError, match=r"stack\.toml:2: replica: unknown setting"):
        load_stack_settings(stack_file)


def test_missing_stack_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_stack_settings(tmp_path / "nope.toml")
