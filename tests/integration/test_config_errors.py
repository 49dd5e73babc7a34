"""Config errors found at start: `tenantproxy proxy run` exits 1 with one line on stderr naming
the file, the key (and its line) and the cause; no traceback, no proxy that starts broken."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantproxy.secretstore import FileSecretStore, Secret
from tenantproxy.stack.certificates import create_certificates
from tenantproxy.stack.outputs import to_toml

PROGRAM = Path(sys.executable).parent / "tenantproxy"


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (the targets: the proxy must fail before it needs them)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def secret_store(tmp_path: Path) -> dict[str, str]:
    key = FileSecretStore.generate_key()
    key_file = tmp_path / "secrets.key"
    FileSecretStore.write_key_file(key_file, key)
    store = FileSecretStore(tmp_path / "secrets.enc", key)
    store.put("tenants/user1", Secret(username="user1", password="pw", dbname="db1"))
    return {"kind": "file", "path": str(store.path), "key_file": str(key_file)}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def base_config(store: dict[str, str], target_port: int, **settings: Any) -> dict[str, Any]:
    return {
        **settings,
        "secret_store": store,
        "endpoints": [{"name": "read_write", "role": "read_write", "port": 0}],
        "targets": [{"name": "writer", "role": "writer", "port": target_port}],
    }


def run_proxy(
    tmp_path: Path, config: dict[str, Any]
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    config_file = tmp_path / "proxy.toml"
    config_file.write_text(to_toml(config))
    result = subprocess.run(
        [str(PROGRAM), "proxy", "run", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return config_file, result


def assert_one_line_error(
    config_file: Path, result: subprocess.CompletedProcess[str], key: str, cause: str
) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert f"{config_file}:" in line, line
    assert f": {key}: " in line, line
    assert cause in line, line
    assert result.stdout == ""  # never said ready
    return line


def line_number_of(config_file: Path, text: str) -> int:
    return next(n for n, line in enumerate(config_file.read_text().splitlines(), 1) if text in line)


def test_a_missing_secret_store_file_stops_the_start(tmp_path, secret_store, closed_port):
    store = {**secret_store, "path": str(tmp_path / "nowhere.enc")}
    config_file, result = run_proxy(tmp_path, base_config(store, closed_port))
    line = assert_one_line_error(config_file, result, "secret_store.path", "no such file")
    assert "nowhere.enc" in line


def test_a_secret_store_the_key_cannot_decrypt_stops_the_start(tmp_path, secret_store, closed_port):
    other_key = tmp_path / "other.key"
    FileSecretStore.write_key_file(other_key, FileSecretStore.generate_key())
    store = {**secret_store, "key_file": str(other_key)}
    config_file, result = run_proxy(tmp_path, base_config(store, closed_port))
    line = assert_one_line_error(config_file, result, "secret_store.key_file", "cannot decrypt")
    assert f"{config_file}:{line_number_of(config_file, 'other.key')}:" in line


@pytest.mark.parametrize("missing", ["tls_cert_file", "tls_key_file"])
def test_a_missing_tls_file_stops_the_start(tmp_path, secret_store, closed_port, missing):
    certs = create_certificates(tmp_path / "certs")
    files = {"tls_cert_file": str(certs.server_cert), "tls_key_file": str(certs.server_key)}
    files[missing] = str(tmp_path / "absent.pem")
    config_file, result = run_proxy(tmp_path, base_config(secret_store, closed_port, **files))
    line = assert_one_line_error(config_file, result, missing, "No such file or directory")
    assert f"{config_file}:{line_number_of(config_file, 'absent.pem')}:" in line


def test_a_tls_file_that_is_not_pem_stops_the_start(tmp_path, secret_store, closed_port):
    certs = create_certificates(tmp_path / "certs")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    files = {"tls_cert_file": str(garbage), "tls_key_file": str(certs.server_key)}
    config_file, result = run_proxy(tmp_path, base_config(secret_store, closed_port, **files))
    assert_one_line_error(config_file, result, "tls_cert_file", "not a PEM certificate")


def test_a_listen_port_in_use_stops_the_start(tmp_path, secret_store, closed_port, busy_port):
    config = base_config(secret_store, closed_port)
    config["endpoints"][0]["port"] = busy_port
    config_file, result = run_proxy(tmp_path, config)
    line = assert_one_line_error(config_file, result, "endpoints.0.port", "address already in use")
    assert f"127.0.0.1:{busy_port}" in line


def test_a_metrics_port_in_use_stops_the_start(tmp_path, secret_store, closed_port, busy_port):
    config = base_config(secret_store, closed_port, metrics_port=busy_port)
    config_file, result = run_proxy(tmp_path, config)
    assert_one_line_error(config_file, result, "metrics_port", "address already in use")
