"""Binary prepared statements through a proxy in transaction mode (max_backends_per_tenant = 3,
so clients share backends): proxy-assigned statement ids, every common parameter type, long data,
a cursor fetched with COM_STMT_FETCH, a statement that moves to another backend, a failed lazy
prepare seen once, and many clients preparing the same text at once with no pin counted.

mysql-connector-python's prepared cursor (pure Python: COM_STMT_RESET before each execute, the
parameter types on every execute) and Connector/C (our own small client,
tests/integration/c_client/prepared_statements.c: the types on the first execute only,
mysql_stmt_send_long_data, a read-only cursor) against the proxy and straight to MariaDB."""

from __future__ import annotations

import datetime
import re
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.c_build import build_c_client
from tests.integration.clients import ca_path, connector_connect, host_port
from tests.integration.proxy_thread import ProxyThread, proxy_config_from_stack
from tests.integration.test_multiplexing import backend_counts

pytestmark = pytest.mark.integration

TENANT = 96
USER = f"user{TENANT}"
DATABASE = f"user_database{TENANT}"
MAX_BACKENDS = 3


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[ProxyThread]:
    # require_tls off for the C client, which logs in without TLS; the Python ones use it.
    config = proxy_config_from_stack(
        stack.outputs,
        pool_mode="transaction",
        max_backends_per_tenant=MAX_BACKENDS,
        require_tls=False,
    )
    with ProxyThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def c_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C client, built against the installed Connector/C (libmariadb-dev)."""
    return build_c_client("prepared_statements", tmp_path_factory.mktemp("c_client"))


def connect(stack: Any, endpoint: str) -> Any:
    return connector_connect(
        endpoint,
        USER,
        stack.secret(USER).password,
        DATABASE,
        ca_path(stack.outputs),
        autocommit=True,
    )


def pins(proxy: ProxyThread) -> dict[str, int]:
    assert proxy.server is not None
    metrics = proxy.server.context.metrics
    return proxy.call(lambda: {r: n for (t, r), n in metrics.pins.items() if t == USER})


def backend_of(connection: Any) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


VALUES: list[Any] = [
    7,
    -(2**62),
    2.5,
    Decimal("12345.6789"),
    "héllo wörld",
    b"\x00\xffbytes\x01" * 100,
    datetime.date(2026, 12, 3),
    datetime.datetime(2026, 12, 3, 11, 22, 33, 456789),
    datetime.timedelta(hours=-25, minutes=3, seconds=4, microseconds=5),
    None,
    True,
]


def round_trip(connection: Any) -> tuple[list[Any], list[int]]:
    """Each value through `SELECT ?` and all at once; the client-side statement ids."""
    answers, ids = [], []
    for value in VALUES:
        with connection.cursor(prepared=True) as cursor:
            cursor.execute("SELECT ?", (value,))
            answers.append(cursor.fetchone()[0])
            ids.append(cursor._prepared["statement_id"])
    marks = ", ".join("?" * len(VALUES))
    with connection.cursor(prepared=True) as cursor:
        for _ in range(2):  # the second time the server statement is reused
            cursor.execute(f"SELECT {marks}", VALUES)
            answers.append(list(cursor.fetchone()))
        ids.append(cursor._prepared["statement_id"])
    return answers, ids


def test_every_common_parameter_type_answers_as_straight_to_mariadb_under_proxy_ids(stack, proxy):
    with connect(stack, stack.proxy_writer) as direct:
        expected, _ = round_trip(direct)
    warm = connect(stack, proxy.endpoint("read_write"))  # the backends have served statements
    round_trip(warm)
    with connect(stack, proxy.endpoint("read_write")) as client:
        answers, ids = round_trip(client)
    warm.close()
    assert answers == expected
    assert answers[-1][:4] == [7, -(2**62), 2.5, Decimal("12345.6789")]
    assert ids[: len(VALUES)] == list(range(1, len(VALUES) + 1))  # the proxy's: 1, 2, ...
    assert "prepared_statement" not in pins(proxy)


def test_a_statement_prepared_on_one_backend_runs_on_another(stack, proxy):
    client = connect(stack, proxy.endpoint("read_write"))
    holders = []
    try:
        seen = set()
        with client.cursor(prepared=True) as cursor:
            for round_ in range(6):
                cursor.execute("SELECT CONNECTION_ID(), ? * 2, CONCAT(?, 'y')", (round_, "x"))
                backend, doubled, text = cursor.fetchone()
                assert (doubled, text) == (round_ * 2, "xy")
                seen.add(backend)
                if len(seen) > 1:
                    break
                # Another client takes the backend the statement was prepared on and keeps it.
                holder = connect(stack, proxy.endpoint("read_write"))
                holder.start_transaction()
                holders.append((holder, backend_of(holder)))
        assert len(seen) > 1, f"the statement never moved: {seen}"
        assert backend in {b for _, b in holders} or backend not in seen - {backend}
    finally:
        for holder, _ in holders:
            holder.rollback()
            holder.close()
        client.close()
    assert "prepared_statement" not in pins(proxy)


def test_a_failed_lazy_prepare_is_the_one_error_the_client_sees(stack, proxy):
    with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {DATABASE}.ps_gone (v INT)")
        cursor.execute(f"INSERT INTO {DATABASE}.ps_gone VALUES (1)")
        admin.commit()
    client = connect(stack, proxy.endpoint("read_write"))
    holder = connect(stack, proxy.endpoint("read_write"))
    try:
        with client.cursor(prepared=True) as cursor:
            cursor.execute("SELECT v FROM ps_gone WHERE v = ?", (1,))
            assert cursor.fetchall() == [(1,)]
            holder.start_transaction()  # keeps the backend that has the statement
            with stack.admin_connect(stack.proxy_writer) as admin, admin.cursor() as dropper:
                dropper.execute(f"DROP TABLE {DATABASE}.ps_gone")
            with pytest.raises(Exception, match=r"1146.*ps_gone' doesn't exist"):
                cursor.execute("SELECT v FROM ps_gone WHERE v = ?", (1,))
        assert backend_of(client) > 0  # nothing else was left in the stream
    finally:
        holder.rollback()
        holder.close()
        client.close()


def test_many_clients_preparing_the_same_text_at_once_get_their_answers_and_no_pin(stack, proxy):
    before = pins(proxy)
    errors: list[BaseException] = []
    backends: set[int] = set()

    def work(index: int) -> None:
        try:
            with (
                connect(stack, proxy.endpoint("read_write")) as client,
                client.cursor(prepared=True) as cursor,
            ):
                for round_ in range(25):
                    cursor.execute(
                        "SELECT CONNECTION_ID(), ? + ?, CONCAT(?, '-', ?)",
                        (index, round_, f"c{index}", round_),
                    )
                    backend, total, text = cursor.fetchone()
                    assert (total, text) == (index + round_, f"c{index}-{round_}")
                    backends.add(backend)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    # Shared: more than one backend served them, never more than the cap at once (the pool
    # closes idle ones past max_idle_connections_percent, so ids over time may be more).
    assert len(backends) >= 2 and backend_counts(proxy)[0] <= MAX_BACKENDS
    assert pins(proxy) == before  # no pin of any reason


def run_c(binary: Path, stack: Any, endpoint: str, step: str) -> tuple[list[str], str]:
    host, port = host_port(endpoint)
    command = [str(binary), host, str(port), USER, stack.secret(USER).password, DATABASE, step]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{endpoint} {step}: {result.stdout}{result.stderr}"
    return result.stdout.splitlines(), result.stderr


def c_direct_and_proxied(binary: Path, stack: Any, proxy: ProxyThread, step: str) -> str:
    direct, _ = run_c(binary, stack, stack.proxy_writer, step)
    proxied, ids = run_c(binary, stack, proxy.endpoint("read_write"), step)
    assert proxied == direct
    return ids


def test_connector_c_moves_a_statement_whose_types_it_sent_once(stack, proxy, c_client):
    ids = c_direct_and_proxied(c_client, stack, proxy, "moved")
    first, last, holder = map(
        int, re.search(r"ids first (\d+) last (\d+) holder (\d+)", ids).groups()
    )
    assert last != first and holder == first


def test_connector_c_long_data_holds_its_backend_until_the_execute(stack, proxy, c_client):
    c_direct_and_proxied(c_client, stack, proxy, "longdata")


def test_connector_c_cursor_holds_its_backend_until_the_last_row(stack, proxy, c_client):
    before = pins(proxy)
    lines, _ = run_c(c_client, stack, proxy.endpoint("read_write"), "cursor")
    assert lines == [
        "cursor rows 50 sum 1275 last row50",
        "query during the cursor: same backend",
        "cursor rows 20 sum 210 last row20",
        "after close 1",
    ]
    assert c_direct_and_proxied(c_client, stack, proxy, "cursor") == ""
    assert pins(proxy) == before
