"""The AWS store's pure parts (cache, tag and prefix rules, wiring) and ``invalidate`` on both
stores; no sockets. The store against a real Secrets Manager API: tests/integration."""

from __future__ import annotations

import threading
from pathlib import Path

import boto3
import pytest

from tenantproxy.app import open_secret_store
from tenantproxy.config import AwsSecretStoreConfig, ProxyConfig
from tenantproxy.errors import ConfigError
from tenantproxy.secretstore import AwsSecretStore, FileSecretStore, Secret
from tenantproxy.secretstore.aws_store import TagFilter, default_client_config, scoped_prefix
from tenantproxy.secretstore.caching import TtlCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_value_is_served_until_its_ttl_then_loaded_again() -> None:
    clock = FakeClock()
    cache: TtlCache[str] = TtlCache(clock)
    loads: list[str] = []

    def load() -> tuple[str, float]:
        loads.append("x")
        return f"value{len(loads)}", 10.0

    assert cache.get_or_load("a", load) == "value1"
    clock.now = 9.9
    assert cache.get_or_load("a", load) == "value1"
    clock.now = 10.0
    assert cache.fresh("a") is None
    assert cache.get_or_load("a", load) == "value2"
    assert len(loads) == 2


def test_a_ttl_of_zero_caches_nothing() -> None:
    cache: TtlCache[int] = TtlCache(FakeClock())
    cache.put("a", 1, 0.0)
    assert cache.fresh("a") is None


def test_forget_makes_the_next_get_load() -> None:
    cache: TtlCache[int] = TtlCache(FakeClock())
    cache.put("a", 1, 60.0)
    cache.forget("a")
    cache.forget("never-there")
    assert cache.get_or_load("a", lambda: (2, 60.0)) == 2


def test_a_failed_load_caches_nothing() -> None:
    cache: TtlCache[int] = TtlCache(FakeClock())

    def failing() -> tuple[int, float]:
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        cache.get_or_load("a", failing)
    assert cache.get_or_load("a", lambda: (1, 60.0)) == 1


def test_concurrent_misses_of_one_name_share_one_load() -> None:
    cache: TtlCache[int] = TtlCache(FakeClock())
    started, release = threading.Event(), threading.Event()
    loads: list[int] = []

    def slow_load() -> tuple[int, float]:
        loads.append(1)
        started.set()
        release.wait(5)
        return 42, 60.0

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(cache.get_or_load("a", slow_load)))
    first.start()
    started.wait(5)
    others = [
        threading.Thread(target=lambda: results.append(cache.get_or_load("a", slow_load)))
        for _ in range(5)
    ]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert results == [42] * 6
    assert loads == [1]


def test_a_full_cache_drops_expired_entries_first_then_the_oldest() -> None:
    clock = FakeClock()
    cache: TtlCache[int] = TtlCache(clock, max_entries=10)
    cache.put("short", 0, 1.0)
    for i in range(9):
        cache.put(f"n{i}", i, 60.0)
    clock.now = 2.0
    cache.put("new", 9, 60.0)  # full: "short" has expired and goes
    assert cache.fresh("n0") is not None and len(cache) == 10
    cache.put("newer", 10, 60.0)  # full, nothing expired: the oldest go, down to 9 of 10
    assert cache.fresh("n0") is None and cache.fresh("newer") is not None
    assert len(cache) <= 10


def test_the_tag_must_match_key_and_value_exactly() -> None:
    tag = TagFilter("tenantproxy", "fleet-a")
    assert tag.matches([{"Key": "other", "Value": "x"}, {"Key": "tenantproxy", "Value": "fleet-a"}])
    assert not tag.matches([{"Key": "tenantproxy", "Value": "fleet-ab"}])
    assert not tag.matches([{"Key": "tenantproxyx", "Value": "fleet-a"}])
    assert not tag.matches([{"Key": "tenantproxy"}])
    assert not tag.matches([])
    assert TagFilter("tenantproxy").matches([{"Key": "tenantproxy", "Value": "anything"}])


def test_the_tag_becomes_list_filters_and_create_tags() -> None:
    assert TagFilter("k", "v").list_filters() == [
        {"Key": "tag-key", "Values": ["k"]},
        {"Key": "tag-value", "Values": ["v"]},
    ]
    assert TagFilter("k").list_filters() == [{"Key": "tag-key", "Values": ["k"]}]
    assert TagFilter("k").as_tags() == [{"Key": "k", "Value": ""}]


@pytest.mark.parametrize(
    ("store_prefix", "prefix", "expected"),
    [
        ("tenants/", "", "tenants/"),
        ("tenants/", "tenants/user1", "tenants/user1"),
        ("tenants/", "ten", "tenants/"),
        ("tenants/", "other/", None),
        ("", "", ""),
        ("", "x/", "x/"),
    ],
)
def test_list_names_asks_for_the_longer_of_the_two_prefixes(
    store_prefix: str, prefix: str, expected: str | None
) -> None:
    assert scoped_prefix(store_prefix, prefix) == expected


def test_calls_are_bounded_by_default() -> None:
    config = default_client_config()
    assert (config.connect_timeout, config.read_timeout) == (2, 5)
    assert config.retries == {"max_attempts": 2, "mode": "standard"}


def _session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="AKIDSECRETLOOKING", aws_secret_access_key="sk-123")


def test_the_repr_names_the_store_but_no_credentials() -> None:
    config = AwsSecretStoreConfig(
        region="eu-west-1", endpoint_url="http://127.0.0.1:1", tag_key="t", tag_value="v"
    )
    text = repr(AwsSecretStore.from_config(config, "tenants/", session=_session()))
    assert text == (
        "AwsSecretStore(region='eu-west-1', endpoint_url='http://127.0.0.1:1', "
        "name_prefix='tenants/', tag_key='t', tag_value='v')"
    )


def test_a_tag_value_without_a_tag_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tag_value is set without"):
        AwsSecretStore(AwsSecretStoreConfig(tag_value="v"), session=_session())


def test_open_secret_store_builds_an_aws_store_for_the_names_under_the_prefix() -> None:
    config = ProxyConfig.model_validate(
        {
            "endpoints": [{"name": "rw", "role": "read_write", "port": 0}],
            "targets": [{"name": "w", "role": "writer", "port": 3306}],
            "secret_store": {"kind": "aws", "endpoint_url": "http://127.0.0.1:1"},
            "secret_name_prefix": "fleet/",
        }
    )
    store = open_secret_store(config)
    assert isinstance(store, AwsSecretStore)
    assert store.name_prefix == "fleet/"
    assert store.is_fresh("other/user1")  # outside the prefix: answered without I/O


def test_the_file_store_reads_the_file_again_after_invalidate(tmp_path: Path) -> None:
    key = FileSecretStore.generate_key()
    path = tmp_path / "secrets.enc"
    store = FileSecretStore(path, key)
    store.put("tenants/user1", Secret("user1", "old"))
    assert store.get("tenants/user1").password == "old"
    # Another writer whose change the stamp cannot see (same inode, mtime and size).
    store._secrets = {"tenants/user1": Secret("user1", "stale")}
    assert store.get("tenants/user1").password == "stale"
    store.invalidate("tenants/user1")
    assert store.get("tenants/user1").password == "old"
    path.unlink()
    store.invalidate("tenants/user1")
    assert store.list_names() == []
