"""Client-leg protocol compression (CLIENT_COMPRESS, zlib): real clients through the proxy get
what they get from MariaDB directly, and the proxy's counters show the bytes crossed compressed.

The backend leg stays uncompressed (docs/decisions/0012-client-leg-compression.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tenantproxy.wire.mysql.compression import CompressedStream
from tenantproxy.wire.mysql.constants import CapabilityFlags
from tests.integration.clients import ca_path, mariadb_cli, mysqlclient_connect
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.raw_client import RawClient, errors_in

pytestmark = pytest.mark.integration

TENANT = "user9"
DATABASE = "user_database9"
# About 2 MB in 2000 rows of 1000 letters each; MariaDB's sequence engine makes the rows.
BIG_RESULT_SQL = "SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) AS letters FROM seq_1_to_2000"
BIG_RESULT_BYTES = 2000 * 1000


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    # Plain TCP allowed, so that compression is tried with and without TLS.
    with ProxyThread(proxy_config_from_stack(stack.outputs, require_tls=False)) as running:
        yield running


def tenant(stack: Any, endpoint: str, *, tls: bool) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "user": TENANT,
        "password": stack.secret(TENANT).password,
        "database": DATABASE,
        "ca_file": ca_path(stack.outputs) if tls else None,
    }


def byte_counters(proxy: ProxyThread) -> tuple[int, int]:
    assert proxy.server is not None
    snapshot = proxy.call(proxy.server.context.metrics.snapshot)
    return snapshot["ClientBytesCompressed"], snapshot["ClientBytesUncompressed"]


def counted_since(proxy: ProxyThread, before: tuple[int, int]) -> tuple[int, int]:
    compressed, uncompressed = byte_counters(proxy)
    return compressed - before[0], uncompressed - before[1]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_mariadb_compress_fetches_2_mb_as_directly_and_it_crosses_compressed(stack, proxy, tls):
    direct = mariadb_cli(
        **tenant(stack, stack.proxy_writer, tls=tls), sql=BIG_RESULT_SQL, options=("--compress",)
    )
    assert direct.returncode == 0, direct.stderr
    before = byte_counters(proxy)
    proxied = mariadb_cli(
        **tenant(stack, proxy.endpoint("read_write"), tls=tls),
        sql=BIG_RESULT_SQL,
        options=("--compress",),
    )
    assert proxied.returncode == 0, proxied.stderr
    assert proxied.stdout == direct.stdout
    assert len(proxied.stdout) > BIG_RESULT_BYTES
    compressed, uncompressed = counted_since(proxy, before)
    # The whole result went through the compressed stream, and the letters shrink a lot.
    assert uncompressed > BIG_RESULT_BYTES
    assert 0 < compressed < uncompressed // 10


def test_an_uncompressed_client_is_not_counted(stack, proxy):
    before = byte_counters(proxy)
    result = mariadb_cli(**tenant(stack, proxy.endpoint("read_write"), tls=False), sql="SELECT 1")
    assert result.returncode == 0, result.stderr
    assert byte_counters(proxy) == before


def test_mysqlclient_compress_true_reads_the_same_rows(stack, proxy):
    rows = {}
    before = byte_counters(proxy)
    for name, endpoint in (("direct", stack.proxy_writer), ("proxy", proxy.endpoint("read_write"))):
        connection = mysqlclient_connect(**tenant(stack, endpoint, tls=True), compress=True)
        try:
            cursor = connection.cursor()
            cursor.execute(BIG_RESULT_SQL)
            rows[name] = cursor.fetchall()
            cursor.execute("SELECT @@version")  # a second command: the sequence restarts
            assert cursor.fetchone()
        finally:
            connection.close()
    assert rows["proxy"] == rows["direct"]
    assert len(rows["proxy"]) == 2000
    compressed, uncompressed = counted_since(proxy, before)
    assert uncompressed > BIG_RESULT_BYTES
    assert 0 < compressed < uncompressed // 10


def test_a_compressed_packet_that_is_not_zlib_closes_that_client_with_error_1835(
    stack, proxy, caplog
):
    client = RawClient(proxy.endpoint("read_only"))
    client.log_in(TENANT, stack.secret(TENANT).password, DATABASE, CapabilityFlags.CLIENT_COMPRESS)
    garbage = b"this is not a zlib stream"
    # int<3> length, int<1> compressed sequence id, int<3> length once inflated: 100 bytes.
    client.send(len(garbage).to_bytes(3, "little") + b"\x00" + (100).to_bytes(3, "little"))
    client.send(garbage)
    answer = CompressedStream().decompress(client.read_until_closed())
    client.close()
    assert [error.error_code for error in errors_in(answer)] == [1835]
    assert not [record for record in caplog.records if record.exc_info]
