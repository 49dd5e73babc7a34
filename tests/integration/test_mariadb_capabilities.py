"""MariaDB's extended capabilities through the proxy: bulk execute, extended metadata, progress
reports and cached metadata behave as straight to MariaDB.

MariaDB's Connector/C (our own small C client, tests/integration/c_client/mariadb_features.c,
built with gcc against libmariadb-dev) runs each feature straight to the writer and through the
proxy's read/write endpoint; what it prints must be the same. A raw client compares the bytes of
the answers, which shows that the backend negotiated exactly what the client did.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantproxy.proxy.backends import MARIADB_RELAYED_CAPABILITIES
from tenantproxy.wire.mysql.constants import CapabilityFlags as F
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.response_tracker import ResponseTracker
from tests.integration.c_build import build_c_client
from tests.integration.clients import host_port
from tests.integration.feature_tables import proxy_over_feature_tables
from tests.integration.proxy_thread import ProxyThread
from tests.integration.raw_client import RawClient

pytestmark = pytest.mark.integration

TENANT = "user77"
DATABASE = "user_database77"
# PROGRESS, STMT_BULK_OPERATIONS, EXTENDED_METADATA and CACHE_METADATA.
MARIADB_EXTENDED = MARIADB_RELAYED_CAPABILITIES


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    with proxy_over_feature_tables(stack, TENANT, DATABASE) as running:
        yield running


@pytest.fixture(scope="module")
def features_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C client, built against the installed Connector/C (libmariadb-dev)."""
    return build_c_client("mariadb_features", tmp_path_factory.mktemp("c_client"))


def run_step(binary: Path, stack: Any, endpoint: str, step: str) -> list[str]:
    host, port = host_port(endpoint)
    password = stack.secret(TENANT).password
    command = [str(binary), host, str(port), TENANT, password, DATABASE, step]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{endpoint} {step}: {result.stdout}{result.stderr}"
    return result.stdout.splitlines()


def direct_and_proxied(binary: Path, stack: Any, proxy: ProxyThread, step: str) -> list[str]:
    direct = run_step(binary, stack, stack.proxy_writer, step)
    proxied = run_step(binary, stack, proxy.endpoint("read_write"), step)
    assert proxied == direct
    return proxied


def test_connector_c_sees_the_extended_capabilities_mariadb_offers(stack, proxy, features_client):
    assert direct_and_proxied(features_client, stack, proxy, "caps") == [
        "extended capabilities 0x1d"  # PROGRESS, STMT_BULK_OPERATIONS, EXTENDED and CACHE_METADATA
    ]


def test_connector_c_bulk_execute_inserts_the_rows(stack, proxy, features_client):
    assert direct_and_proxied(features_client, stack, proxy, "bulk") == ["affected rows 3"]


def test_connector_c_bulk_execute_with_returning_answers_the_rows(stack, proxy, features_client):
    lines = direct_and_proxied(features_client, stack, proxy, "returning")
    assert lines[1:] == [
        "returned columns 2",
        "returned id +0 v a",
        "returned id +1 v bb",
        "returned id +2 v ccc",
    ]


def test_connector_c_reads_json_and_point_type_names_from_extended_metadata(
    stack, proxy, features_client
):
    lines = direct_and_proxied(features_client, stack, proxy, "json")
    assert "field doc type 252 data_type_name '' format_name 'json'" in lines
    assert "field place type 255 data_type_name 'point' format_name ''" in lines
    assert 'row 1 {"a": 1} POINT(1 2)' in lines


def test_connector_c_executes_a_statement_twice_with_cached_metadata(stack, proxy, features_client):
    lines = direct_and_proxied(features_client, stack, proxy, "cache")
    # The second execute's column definitions are the ones Connector/C kept from the first.
    assert lines.count("field doc type 252 data_type_name '' format_name 'json'") == 2
    assert lines[-2:] == ['row 1 {"a": 1}', "row 2 [1, 2]"]


def test_connector_c_gets_the_progress_reports_of_alter_table(stack, proxy, features_client):
    lines = direct_and_proxied(features_client, stack, proxy, "progress")
    assert lines == [
        "progress stage 1 of 2: copy to tmp table",
        "progress stage 2 of 2: Enabling keys",
        "altered, affected rows 20000",
    ]


# -- the bytes, with a raw client --------------------------------------------------------


def exchange(client: RawClient, capabilities: F, payload: bytes) -> bytes:
    """Sends one command; returns the server's bytes up to the end of its answer."""
    tracker = ResponseTracker(capabilities)
    tracker.command_sent(payload[:16])
    client.send(encode_packet(payload, 0)[0])
    received = b""
    while True:
        chunk = client.sock.recv(65536)
        assert chunk, "closed before the answer ended"
        received += chunk
        if tracker.server_data(chunk):
            return received


def answers(stack: Any, endpoint: str, extended: F, commands: list[bytes]) -> list[bytes]:
    client = RawClient(endpoint)
    try:
        login = client.log_in(TENANT, stack.secret(TENANT).password, DATABASE, extended)
        assert login.capability_flags & MARIADB_EXTENDED == extended
        return [exchange(client, login.capability_flags, command) for command in commands]
    finally:
        client.close()


def first_payload(answer: bytes) -> bytes:
    return answer[4 : 4 + int.from_bytes(answer[:3], "little")]


JSON_SELECT = b"\x03SELECT id, doc, place FROM json_doc ORDER BY id"


@pytest.mark.parametrize(
    "extended",
    [MARIADB_EXTENDED, F.MARIADB_CLIENT_PROGRESS, F(0)],
    ids=["all four", "progress only", "none"],
)
def test_a_result_has_the_bytes_mariadb_sends_a_client_of_the_same_capabilities(
    stack, proxy, extended
):
    direct = answers(stack, stack.proxy_writer, extended, [JSON_SELECT])
    proxied = answers(stack, proxy.endpoint("read_write"), extended, [JSON_SELECT])
    assert proxied == direct
    # Extended metadata: a block of 6 bytes, format name (1) "json".
    has_type_names = b"\x06\x01\x04json" in direct[0]
    assert has_type_names == bool(extended & F.MARIADB_CLIENT_EXTENDED_METADATA)


def test_executes_skip_the_column_definitions_the_client_has_as_mariadb_does(stack, proxy):
    def prepare_and_execute_twice(endpoint: str) -> list[bytes]:
        client = RawClient(endpoint)
        try:
            login = client.log_in(TENANT, stack.secret(TENANT).password, DATABASE, MARIADB_EXTENDED)
            caps = login.capability_flags
            prepare_ok = exchange(client, caps, b"\x16SELECT id, doc FROM json_doc ORDER BY id")
            statement_id = first_payload(prepare_ok)[1:5]
            # COM_STMT_EXECUTE: no cursor, one iteration, no parameters.
            execute = b"\x17" + statement_id + b"\x00" + (1).to_bytes(4, "little")
            return [exchange(client, caps, execute) for _ in range(2)]
        finally:
            client.close()

    direct = prepare_and_execute_twice(stack.proxy_writer)
    proxied = prepare_and_execute_twice(proxy.endpoint("read_write"))
    assert proxied == direct
    # Two columns, "metadata follows" 0: the client has them from PREPARE's answer.
    assert [first_payload(answer) for answer in proxied] == [b"\x02\x00", b"\x02\x00"]
