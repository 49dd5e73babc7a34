import json

from click.testing import CliRunner

from tenantproxy.cli import main
from tenantproxy.secretstore import FileSecretStore, Secret


def _store(tmp_path):
    key = FileSecretStore.generate_key()
    key_file = tmp_path / "secrets.key"
    FileSecretStore.write_key_file(key_file, key)
    store_path = tmp_path / "secrets.enc"
    FileSecretStore(store_path, key).put_many(
        {f"tenants/user{i}": Secret(f"user{i}", f"pw{i}") for i in range(3)}
        | {"other": Secret("o", "p")}
    )
    return ["--store", str(store_path), "--key-file", str(key_file)]


def test_list_prints_names_with_the_prefix(tmp_path):
    result = CliRunner().invoke(
        main, ["secrets", "list", *_store(tmp_path), "--prefix", "tenants/"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["tenants/user0", "tenants/user1", "tenants/user2"]


def test_get_prints_the_secret_json_with_the_password(tmp_path):
    result = CliRunner().invoke(main, ["secrets", "get", *_store(tmp_path), "tenants/user1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["password"] == "pw1"


def test_get_of_a_missing_secret_fails_naming_it(tmp_path):
    result = CliRunner().invoke(main, ["secrets", "get", *_store(tmp_path), "tenants/nobody"])
    assert result.exit_code == 1
    assert "SecretNotFound: tenants/nobody" in result.output


def test_the_store_is_found_through_a_stacks_outputs(tmp_path):
    options = _store(tmp_path)
    outputs = {"SecretStore": options[1], "SecretsKeyFile": options[3]}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    result = CliRunner().invoke(main, ["secrets", "list", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "other" in result.output


def test_without_a_stack_the_error_names_the_state_dir(tmp_path):
    result = CliRunner().invoke(main, ["secrets", "list", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no stack in" in result.output
