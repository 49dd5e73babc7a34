"""The identity config: valid files load; errors name the key and the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenantproxy.identity import IdentityError, load_identity_config

POLICY = json.dumps({"Statement": {"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}})
ROLE_ARN = "arn:aws:iam::123456789012:role/tenant-access"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "identity.toml"
    path.write_text(text)
    return path


def valid(policy: str = POLICY, may_assume: str = ROLE_ARN, account: str = "123456789012") -> str:
    return f"""
account_id = "{account}"
region = "eu-west-1"
key_file = "identity.key"

[[roles]]
name = "tenant-access"
policy = {json.dumps(policy)}

[[principals]]
name = "access-api"
access_key_id = "AKIAEXAMPLE000000001"
secret_access_key = "a-secret-access-key-of-some-length"
may_assume = ["{may_assume}"]
"""


def test_a_valid_file_loads_with_defaults_and_a_key_file_next_to_it(tmp_path: Path) -> None:
    config = load_identity_config(write(tmp_path, valid()))
    assert config.key_file == tmp_path / "identity.key"
    assert (config.host, config.port, config.max_session_duration_s) == ("127.0.0.1", 0, 43200)
    role = config.roles[0]
    assert config.role_arn(role) == ROLE_ARN
    assert config.find_role(ROLE_ARN) is role
    assert config.find_principal("AKIAEXAMPLE000000001") is config.principals[0]
    assert config.find_principal("AKIAOTHER") is None


def test_the_secret_key_is_not_in_the_repr(tmp_path: Path) -> None:
    config = load_identity_config(write(tmp_path, valid()))
    assert "a-secret-access-key" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (valid(account="1234"), "account_id: String should match pattern"),
        (
            valid(policy='{"Statement": {"Effect": "Maybe"}}'),
            "roles.0.policy: Value error, invalid policy: Statement[0].Effect must be Allow",
        ),
        (
            valid(may_assume="arn:aws:iam::123456789012:role/nope"),
            "may_assume names no role arn:aws:iam::123456789012:role/nope",
        ),
        (valid() + "\nbogus = 1\n", "bogus: Extra inputs are not permitted"),
        (valid().replace('region = "eu-west-1"', "region = 5"), "region: Input should be"),
        ("account_id = ", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(IdentityError) as caught:
        load_identity_config(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot read"):
        load_identity_config(tmp_path / "absent.toml")
