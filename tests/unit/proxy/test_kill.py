"""Which KILLs name a proxy session, and what the proxy sends a backend in their place."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.proxy.kill import (
    SESSION_ID_BASE,
    SESSION_ID_LIMIT,
    KillRequest,
    may_be_a_kill,
)
from tenantproxy.wire.mysql import commands

SESSION = SESSION_ID_BASE + 7


def query(sql: str) -> bytes:
    return commands.com_query(sql)


def process_kill(thread_id: int) -> bytes:
    return bytes((0x0C,)) + thread_id.to_bytes(4, "little")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (f"KILL {SESSION}", KillRequest(SESSION, is_query_only=False)),
        (f"kill connection {SESSION};", KillRequest(SESSION, is_query_only=False)),
        (f"KILL QUERY {SESSION}", KillRequest(SESSION, is_query_only=True)),
        (f"KILL HARD QUERY {SESSION}", KillRequest(SESSION, is_query_only=True, force="HARD")),
        (f"KILL soft {SESSION}", KillRequest(SESSION, is_query_only=False, force="SOFT")),
        (f"  /* from the app */ KILL\n\tQUERY /* x */ {SESSION} ;  ", KillRequest(SESSION, True)),
        (f"-- why\nKILL {SESSION}", KillRequest(SESSION, is_query_only=False)),
        (f"# why\nKILL {SESSION} # done\n", KillRequest(SESSION, is_query_only=False)),
    ],
)
def test_a_kill_of_a_proxy_session_id_is_recognised(sql, expected):
    payload = query(sql)
    assert may_be_a_kill(payload[:2])
    assert KillRequest.parse(payload) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "KILL 42",  # a backend's own thread id: for the server
        f"KILL {SESSION_ID_LIMIT}",
        "KILL CONNECTION_ID()",
        "KILL QUERY ID 5",
        "KILL USER user7",
        f"KILL {SESSION}; SELECT 1",
        f"/*! KILL */ {SESSION}",  # an executable comment is SQL to MariaDB
        f"SELECT {SESSION}",
        f"KILLX {SESSION}",
    ],
)
def test_other_statements_go_to_the_server_unchanged(sql):
    assert KillRequest.parse(query(sql)) is None


def test_com_process_kill_names_a_session_by_its_four_bytes():
    assert KillRequest.parse(process_kill(SESSION)) == KillRequest(SESSION, is_query_only=False)
    assert KillRequest.parse(process_kill(42)) is None
    assert KillRequest.parse(process_kill(SESSION)[:4]) is None


def test_most_statements_are_ruled_out_by_their_first_byte():
    assert not may_be_a_kill(query("SELECT 1")[:2])
    assert not may_be_a_kill(b"\x0e")  # COM_PING
    assert not may_be_a_kill(b"")


@pytest.mark.parametrize(
    ("request_", "sql"),
    [
        (KillRequest(SESSION, is_query_only=False), "KILL CONNECTION 12"),
        (KillRequest(SESSION, is_query_only=True), "KILL QUERY 12"),
        (KillRequest(SESSION, is_query_only=True, force="HARD"), "KILL HARD QUERY 12"),
    ],
)
def test_the_request_is_rewritten_for_the_backends_thread_id(request_, sql):
    assert request_.for_backend(12) == query(sql)


@given(st.binary(max_size=64))
def test_any_payload_parses_to_a_request_or_none(payload):
    request = KillRequest.parse(payload)
    assert request is None or SESSION_ID_BASE <= request.session_id < SESSION_ID_LIMIT
