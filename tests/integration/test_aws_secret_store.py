"""AwsSecretStore against moto's Secrets Manager in server mode (a real HTTP service)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tenantproxy.config import AwsSecretStoreConfig
from tenantproxy.errors import SecretNotFound, SecretStoreError
from tenantproxy.secretstore import AwsSecretStore, Secret
from tests.integration.moto_server import aws_session, free_port, moto_endpoint

pytestmark = pytest.mark.integration

# The fixtures are imported to be found by name; listing them here marks them as used.
__all__ = ["aws_session", "moto_endpoint"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CallLog:
    """The Secrets Manager operations a store's client sends, from botocore's ``before-call``."""

    def __init__(self, store: AwsSecretStore) -> None:
        self.operations: list[str] = []
        store.client.meta.events.register("before-call.secrets-manager", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)

    def take(self) -> list[str]:
        operations, self.operations = self.operations, []
        return operations


def secret(i: int, password: str = "pw") -> Secret:
    return Secret(username=f"user{i}", password=f"{password}-{i}", dbname=f"user_database{i}")


@pytest.fixture
def prefix() -> str:
    """A prefix of this test's own: tests share one moto server."""
    return f"t{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_store(
    moto_endpoint: str, aws_session: boto3.Session, prefix: str, clock: FakeClock
) -> Any:
    def open_store(**settings: Any) -> AwsSecretStore:
        config = AwsSecretStoreConfig(endpoint_url=moto_endpoint, **settings)
        return AwsSecretStore.from_config(config, prefix, session=aws_session, clock=clock)

    return open_store


def test_put_many_2000_secrets_then_list_names_by_prefix_returns_all_2000(
    open_store: Any, prefix: str, record_property: Any
) -> None:
    store = open_store()
    items = {f"{prefix}user{i}": secret(i) for i in range(2000)}
    started = time.perf_counter()
    store.put_many(items)
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    names = store.list_names(prefix)
    list_s = time.perf_counter() - started
    record_property("put_many_2000_s", round(put_s, 2))
    record_property("list_2000_s", round(list_s, 2))
    assert names == sorted(items)
    assert store.list_names() == names  # the store's own prefix is the default scope
    assert len(store.list_names(f"{prefix}user1")) == 1 + 10 + 100 + 1000
    assert store.list_names("elsewhere/") == []


def test_get_returns_the_secret_with_its_password(open_store: Any, prefix: str) -> None:
    store = open_store()
    store.put(f"{prefix}user7", secret(7))
    assert store.get(f"{prefix}user7") == secret(7)
    assert store.get(f"{prefix}user7").password == "pw-7"


def test_an_unknown_name_or_one_outside_the_prefix_is_secret_not_found(
    open_store: Any, prefix: str
) -> None:
    store = open_store()
    calls = CallLog(store)
    with pytest.raises(SecretNotFound):
        store.get(f"{prefix}nosuchuser")
    assert calls.take() == ["GetSecretValue"]
    with pytest.raises(SecretNotFound):
        store.get("other/user1")
    assert calls.take() == []  # outside the prefix: not even asked


def test_putting_an_existing_name_replaces_its_value(open_store: Any, prefix: str) -> None:
    store = open_store(tag_key="tenantproxy")
    store.put(f"{prefix}user1", secret(1))
    store.put(f"{prefix}user1", secret(1, "new"))
    assert store.get(f"{prefix}user1").password == "new-1"


def test_with_a_tag_filter_a_secret_without_the_tag_is_neither_served_nor_listed(
    open_store: Any, prefix: str
) -> None:
    tagged = open_store(tag_key="tenantproxy", tag_value="fleet-a")
    tagged.put(f"{prefix}user1", secret(1))
    open_store().put(f"{prefix}user2", secret(2))  # no tag
    open_store(tag_key="tenantproxy", tag_value="fleet-b").put(f"{prefix}user3", secret(3))
    open_store(tag_key="tenantproxyx", tag_value="fleet-a").put(f"{prefix}user4", secret(4))

    assert tagged.get(f"{prefix}user1") == secret(1)
    for i in (2, 3, 4):
        with pytest.raises(SecretNotFound):
            tagged.get(f"{prefix}user{i}")
    assert tagged.list_names(prefix) == [f"{prefix}user1"]
    assert open_store(tag_key="tenantproxy").list_names() == [f"{prefix}user1", f"{prefix}user3"]


def test_a_tagged_store_checks_the_tag_once_per_cache_period_not_per_get(
    open_store: Any, prefix: str, clock: FakeClock
) -> None:
    store = open_store(tag_key="tenantproxy", cache_ttl_s=60)
    store.put(f"{prefix}user1", secret(1))
    calls = CallLog(store)
    for _ in range(100):
        store.get(f"{prefix}user1")
    assert calls.take() == ["DescribeSecret", "GetSecretValue"]
    clock.now += 61
    store.get(f"{prefix}user1")
    assert calls.take() == ["DescribeSecret", "GetSecretValue"]


def test_a_second_get_within_the_ttl_makes_no_call_and_one_after_it_reads_again(
    open_store: Any, prefix: str, clock: FakeClock
) -> None:
    store = open_store(cache_ttl_s=60)
    store.put(f"{prefix}user1", secret(1))
    calls = CallLog(store)
    store.get(f"{prefix}user1")
    assert calls.take() == ["GetSecretValue"]
    assert store.is_fresh(f"{prefix}user1")
    clock.now += 59
    store.get(f"{prefix}user1")
    assert calls.take() == []
    clock.now += 2
    assert not store.is_fresh(f"{prefix}user1")
    store.get(f"{prefix}user1")
    assert calls.take() == ["GetSecretValue"]


def test_a_rotated_password_is_served_after_invalidate_not_before(
    open_store: Any, prefix: str
) -> None:
    store = open_store(cache_ttl_s=300)
    name = f"{prefix}user1"
    store.put(name, secret(1, "old"))
    assert store.get(name).password == "old-1"
    open_store().put(name, secret(1, "rotated"))  # another writer: this store's cache is stale
    assert store.get(name).password == "old-1"
    store.invalidate(name)
    assert store.get(name).password == "rotated-1"


def test_not_found_is_cached_briefly_and_a_put_through_the_store_ends_it(
    open_store: Any, prefix: str, clock: FakeClock
) -> None:
    store = open_store(cache_ttl_s=300)
    name = f"{prefix}user1"
    calls = CallLog(store)
    for _ in range(10):
        with pytest.raises(SecretNotFound):
            store.get(name)
    assert calls.take() == ["GetSecretValue"]
    open_store().put(name, secret(1))
    clock.now += 31  # "not found" is kept 30 s at most
    assert store.get(name) == secret(1)
    store.put(f"{prefix}user2", secret(2))
    assert store.get(f"{prefix}user2") == secret(2)


def test_logins_that_miss_together_share_one_read(open_store: Any, prefix: str) -> None:
    store = open_store()
    store.put(f"{prefix}user1", secret(1))
    calls = CallLog(store)
    barrier = threading.Barrier(8)

    def login() -> None:
        barrier.wait()
        store.get(f"{prefix}user1")

    threads = [threading.Thread(target=login) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls.take() == ["GetSecretValue"]


def test_an_unreachable_endpoint_gives_a_clear_error_within_a_bounded_time(
    aws_session: boto3.Session,
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = AwsSecretStore.from_config(
        AwsSecretStoreConfig(endpoint_url=endpoint), "tenants/", session=aws_session
    )
    started = time.monotonic()
    with pytest.raises(SecretStoreError) as caught:
        store.get("tenants/user1")
    assert time.monotonic() - started < 10
    assert type(caught.value) is SecretStoreError
    message = str(caught.value)
    assert endpoint in message
    assert "GetSecretValue 'tenants/user1'" in message
    assert "Could not connect" in message


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """Accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_an_endpoint_that_never_answers_times_out(
    aws_session: boto3.Session, silent_endpoint: str
) -> None:
    store = AwsSecretStore(
        AwsSecretStoreConfig(endpoint_url=silent_endpoint),
        "tenants/",
        session=aws_session,
        client_config=Config(
            connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 2, "mode": "standard"}
        ),
    )
    started = time.monotonic()
    with pytest.raises(SecretStoreError, match="timeout"):
        store.get("tenants/user1")
    assert time.monotonic() - started < 5


def test_no_password_appears_in_the_store_repr_or_its_errors(
    open_store: Any, aws_session: boto3.Session, moto_endpoint: str, prefix: str
) -> None:
    store = open_store(tag_key="tenantproxy", tag_value="fleet-a")
    assert "testing" not in repr(store)  # the session's credentials
    raw = aws_session.client("secretsmanager", endpoint_url=moto_endpoint)
    password = "hunter2-" + uuid.uuid4().hex
    errors: list[SecretStoreError] = []
    # A value that is not JSON, one with a bad port, one with no password key.
    for i, text in enumerate(
        [
            f'{{"username": "u", "password": "{password}"',
            f'{{"username": "u", "password": "{password}", "port": "x{password}"}}',
            f'{{"username": "u", "pass": "{password}"}}',
        ]
    ):
        name = f"{prefix}broken{i}"
        tags = [{"Key": "tenantproxy", "Value": "fleet-a"}]
        raw.create_secret(Name=name, SecretString=text, Tags=tags)
        with pytest.raises(SecretStoreError) as caught:
            store.get(name)
        errors.append(caught.value)
    # A read refused by the service: the secret is scheduled for deletion.
    raw.create_secret(
        Name=f"{prefix}deleted",
        SecretString=f'{{"password": "{password}"}}',
        Tags=[{"Key": "tenantproxy", "Value": "fleet-a"}],
    )
    raw.delete_secret(SecretId=f"{prefix}deleted")
    with pytest.raises(SecretStoreError) as caught:
        open_store().get(f"{prefix}deleted")
    errors.append(caught.value)
    assert "InvalidRequestException" in str(caught.value)
    with pytest.raises(SecretNotFound):  # a tagged store sees DeletedDate first
        store.get(f"{prefix}deleted")
    for error in errors:
        assert password not in str(error)
        assert password not in repr(error)
        assert error.__cause__ is None and error.__suppress_context__
