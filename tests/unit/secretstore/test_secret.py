import json

import pytest

from tenantproxy.errors import SecretStoreError
from tenantproxy.secretstore import Secret


def _secret() -> Secret:
    return Secret(
        username="user7",
        password="s3cr3t-pa55word",
        port=4406,
        dbname="user_database7",
        extra={"dbClusterIdentifier": "proxy", "iam_auth": "REQUIRED"},
    )


def test_json_round_trip_keeps_every_field_and_extra_keys():
    secret = _secret()
    assert Secret.from_json(secret.to_json()) == secret


def test_json_has_the_secrets_manager_shape_with_extra_keys_at_top_level():
    document = json.loads(_secret().to_json())
    assert document["username"] == "user7"
    assert document["engine"] == "mysql"
    assert document["dbClusterIdentifier"] == "proxy"
    assert "extra" not in document


def test_repr_and_str_hide_the_password():
    secret = _secret()
    assert "s3cr3t-pa55word" not in repr(secret)
    assert "s3cr3t-pa55word" not in str(secret)
    assert "user7" in repr(secret)


@pytest.mark.parametrize("missing", ["username", "password"])
def test_from_json_names_the_missing_key(missing):
    document = json.loads(_secret().to_json())
    del document[missing]
    with pytest.raises(SecretStoreError, match=missing):
        Secret.from_json(json.dumps(document))


def test_from_json_rejects_invalid_json_without_quoting_it():
    with pytest.raises(SecretStoreError, match="not valid JSON") as info:
        Secret.from_json('{"password": "hunter2"')
    assert "hunter2" not in str(info.value)


def test_defaults_fill_missing_optional_keys():
    secret = Secret.from_json('{"username": "u", "password": "p"}')
    assert (secret.engine, secret.host, secret.port, secret.dbname) == (
        "mysql",
        "127.0.0.1",
        3306,
        None,
    )
