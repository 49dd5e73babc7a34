"""`tenantproxy token` and `tenantproxy identity new-key | run` (errors only; the service runs in
the integration tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tenantproxy.cli import main
from tenantproxy.identity import load_key
from tenantproxy.identity.sigv4 import parse_presigned_query

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE000000001",
    "AWS_SECRET_ACCESS_KEY": "secret-key-0123456789",
    "AWS_SESSION_TOKEN": "v1.sealed",
}


@pytest.fixture
def no_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", *CREDENTIALS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_token_prints_a_db_auth_token_for_the_environment_credentials(
    no_aws_config: None,
) -> None:
    result = CliRunner().invoke(
        main,
        ["token", "--user", "user7", "--host", "proxy", "--port", "3307", "--region", "eu-west-1"],
        env=CREDENTIALS,
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("proxy:3307/?Action=connect&DBUser=user7&")
    presigned = parse_presigned_query(token.partition("?")[2])
    assert presigned.credential.access_key_id == "ASIAEXAMPLE000000001"
    assert presigned.credential.region == "eu-west-1"
    assert presigned.security_token == "v1.sealed"


def test_token_without_credentials_says_so(no_aws_config: None) -> None:
    result = CliRunner().invoke(main, ["token", "--user", "user7"])
    assert result.exit_code == 1
    assert "no AWS credentials" in result.output


def test_new_key_writes_a_private_key_file_once(tmp_path: Path) -> None:
    out = tmp_path / "identity.key"
    assert CliRunner().invoke(main, ["identity", "new-key", "--out", str(out)]).exit_code == 0
    assert len(load_key(out)) == 32
    assert out.stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(main, ["identity", "new-key", "--out", str(out)])
    assert again.exit_code == 1 and "not overwriting" in again.output


def test_run_with_a_bad_config_fails_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "identity.toml"
    config.write_text('account_id = "1"\n')
    result = CliRunner().invoke(main, ["identity", "run", "--config", str(config)])
    assert result.exit_code == 1
    assert "account_id" in result.output and str(config) in result.output
