import os
import stat

import pytest

from tenantproxy.config import FileSecretStoreConfig
from tenantproxy.errors import SecretNotFound, SecretStoreError
from tenantproxy.secretstore import FileSecretStore, Secret


def _secret(i: int, password: str = "pw") -> Secret:
    return Secret(username=f"user{i}", password=f"{password}{i}", dbname=f"user_database{i}")


@pytest.fixture
def key() -> bytes:
    return FileSecretStore.generate_key()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "secrets.enc"


def test_put_then_get_round_trips_through_the_file(path, key):
    FileSecretStore(path, key).put("tenants/user1", _secret(1))
    assert FileSecretStore(path, key).get("tenants/user1") == _secret(1)


def test_put_many_writes_all_in_one_file_with_mode_0600(path, key):
    store = FileSecretStore(path, key)
    store.put_many({f"tenants/user{i}": _secret(i) for i in range(2000)})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(FileSecretStore(path, key).list_names("tenants/")) == 2000


def test_the_file_does_not_contain_passwords_in_clear(path, key):
    FileSecretStore(path, key).put("tenants/user1", _secret(1, password="very-visible-"))
    assert b"very-visible-" not in path.read_bytes()


def test_list_names_filters_by_prefix_and_sorts(path, key):
    store = FileSecretStore(path, key)
    store.put_many({"tenants/user2": _secret(2), "tenants/user1": _secret(1), "admin": _secret(0)})
    assert store.list_names("tenants/") == ["tenants/user1", "tenants/user2"]
    assert store.list_names() == ["admin", "tenants/user1", "tenants/user2"]


def test_get_of_a_missing_name_raises_secret_not_found_naming_it(path, key):
    store = FileSecretStore(path, key)
    with pytest.raises(SecretNotFound, match="tenants/nobody"):
        store.get("tenants/nobody")


def test_wrong_key_gives_a_clear_error(path, key):
    FileSecretStore(path, key).put("tenants/user1", _secret(1))
    with pytest.raises(SecretStoreError, match="wrong key"):
        FileSecretStore(path, FileSecretStore.generate_key()).get("tenants/user1")


def test_a_malformed_key_gives_a_clear_error(path):
    with pytest.raises(SecretStoreError, match="not a valid Fernet key"):
        FileSecretStore(path, b"not-a-key")


def test_get_rereads_after_another_writer_changes_the_file(path, key):
    reader = FileSecretStore(path, key)
    FileSecretStore(path, key).put("tenants/user1", _secret(1))
    assert reader.get("tenants/user1") == _secret(1)
    FileSecretStore(path, key).put("tenants/user1", _secret(1, password="rotated"))
    assert reader.get("tenants/user1").password == "rotated1"


def test_get_does_not_decrypt_again_when_the_file_is_unchanged(path, key, monkeypatch):
    store = FileSecretStore(path, key)
    store.put("tenants/user1", _secret(1))
    calls = []
    original = store._decrypt
    monkeypatch.setattr(store, "_decrypt", lambda token: calls.append(1) or original(token))
    for _ in range(100):
        store.get("tenants/user1")
    assert calls == []


def test_repr_of_the_store_shows_no_key(path, key):
    assert key.decode() not in repr(FileSecretStore(path, key))


def test_from_config_reads_the_key_file(path, key, tmp_path):
    key_file = tmp_path / "secrets.key"
    FileSecretStore.write_key_file(key_file, key)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    FileSecretStore(path, key).put("a", _secret(1))
    store = FileSecretStore.from_config(FileSecretStoreConfig(path=path, key_file=key_file))
    assert store.get("a") == _secret(1)


def test_from_config_falls_back_to_the_environment_variable(path, key, monkeypatch):
    monkeypatch.setenv("TP_TEST_KEY", key.decode())
    FileSecretStore(path, key).put("a", _secret(1))
    store = FileSecretStore.from_config(FileSecretStoreConfig(path=path, key_env="TP_TEST_KEY"))
    assert store.get("a") == _secret(1)


def test_from_config_without_any_key_names_the_variable(path, monkeypatch):
    monkeypatch.delenv("TP_TEST_KEY", raising=False)
    with pytest.raises(SecretStoreError, match="TP_TEST_KEY"):
        FileSecretStore.from_config(FileSecretStoreConfig(path=path, key_env="TP_TEST_KEY"))


def test_from_config_with_a_missing_key_file_names_it(path, tmp_path):
    missing = tmp_path / "nope.key"
    with pytest.raises(SecretStoreError, match=r"nope\.key"):
        FileSecretStore.from_config(FileSecretStoreConfig(path=path, key_file=missing))


def test_a_failed_write_leaves_no_temporary_file(path, key, monkeypatch):
    store = FileSecretStore(path, key)

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        store.put("a", _secret(1))
    assert list(path.parent.iterdir()) == []
