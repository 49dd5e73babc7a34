"""ClientConnection and ServerConnection back to back, no sockets (h11's ConnectionPair)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantproxy.wire.mysql import auth_plugins
from tenantproxy.wire.mysql.client_connection import ClientConnection, ClientPhase
from tenantproxy.wire.mysql.constants import CapabilityFlags as F
from tenantproxy.wire.mysql.constants import Command, ServerStatus
from tenantproxy.wire.mysql.errors import PacketTooLarge, ProtocolError
from tenantproxy.wire.mysql.events import (
    NEED_DATA,
    Authenticated,
    AuthResponseReceived,
    CommandReceived,
    ConnectionClosed,
    Event,
    LoginFailed,
    LoginRequested,
    ResponsePacket,
    StartTls,
    TlsRequested,
)
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.handshake import HandshakeResponse41, HandshakeV10
from tenantproxy.wire.mysql.responses import ErrPacket
from tenantproxy.wire.mysql.server_connection import (
    ALLOWED_TRANSITIONS,
    ServerConnection,
    ServerPhase,
)

PASSWORD = b"s3cret-Pa55"
CLIENT_CAPS = (
    F.CLIENT_LONG_PASSWORD
    | F.CLIENT_TRANSACTIONS
    | F.CLIENT_MULTI_RESULTS
    | F.CLIENT_SESSION_TRACK
    | F.CLIENT_DEPRECATE_EOF
)
SERVER_CAPS = CLIENT_CAPS | F.CLIENT_CONNECT_WITH_DB | F.CLIENT_CONNECT_ATTRS | F(0xFFFF)
GOLDEN = Path(__file__).parent / "golden"

ServerApp = Callable[[ServerConnection, Event], bytes]


def make_server(*, plugin: str = auth_plugins.MYSQL_NATIVE_PASSWORD, tls: bool = False, **kw):  # type: ignore[no-untyped-def]
    return ServerConnection(
        connection_id=42,
        server_version="8.0.36-tenantproxy",
        capabilities=SERVER_CAPS,
        is_tls_offered=tls,
        auth_plugin_name=plugin,
        **kw,
    )


def make_client(*, password: bytes = PASSWORD, tls: bool = False, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("username", "user7")
    kw.setdefault("database", "user_database7")
    return ClientConnection(password=password, capabilities=CLIENT_CAPS, use_tls=tls, **kw)


def feed(conn: ClientConnection | ServerConnection, data: bytes, *, one_byte: bool) -> Event:
    """Give ``data`` to ``conn``; return the event it yields once all of it is in."""
    chunks = [data[i : i + 1] for i in range(len(data))] if one_byte else [data]
    event: Event = NEED_DATA
    for index, chunk in enumerate(chunks):
        conn.receive_data(chunk)
        event = conn.next_event()
        if index < len(chunks) - 1:
            assert event is NEED_DATA
    return event


def run_login(
    client: ClientConnection, server: ServerConnection, app: ServerApp, *, one_byte: bool = False
) -> Event:
    """Drive both peers until the client reports Authenticated or LoginFailed."""
    to_client = server.initial_handshake()
    while True:
        client_event = feed(client, to_client, one_byte=one_byte)
        to_server = client.data_to_send()
        if isinstance(client_event, Authenticated | LoginFailed):
            return client_event
        if isinstance(client_event, StartTls):
            assert isinstance(feed(server, to_server, one_byte=one_byte), TlsRequested)
            server.tls_started()  # both adapters wrapped their sockets in TLS here
            client.tls_started()
            assert client.is_tls and server.is_tls
            to_server = client.data_to_send()
        server_event = feed(server, to_server, one_byte=one_byte)
        to_client = app(server, server_event)


def native_app(password: bytes) -> ServerApp:
    def app(server: ServerConnection, event: Event) -> bytes:
        assert isinstance(event, LoginRequested)
        if auth_plugins.native_password_matches(password, server.scramble, event.auth_response):
            return server.send_ok()
        return server.send_error(
            1045,
            "28000",
            f"Access denied for user '{event.username}'@'10.0.0.1' (using password: YES)",
        )

    return app


def switch_app(
    plugin: str, check: Callable[[bytes, bytes], bool], *, more: bytes = b""
) -> ServerApp:
    def app(server: ServerConnection, event: Event) -> bytes:
        if isinstance(event, LoginRequested):
            return server.send_auth_switch(plugin)
        assert isinstance(event, AuthResponseReceived)
        assert check(server.scramble, event.data)
        return (server.send_auth_more_data(more) if more else b"") + server.send_ok()

    return app


# -- logins ----------------------------------------------------------------------------------


@pytest.mark.parametrize("one_byte", [False, True])
def test_native_password_login_reaches_the_command_phase(one_byte: bool) -> None:
    client, server = make_client(connect_attrs={"_client_name": "t"}), make_server()
    seen: list[Event] = []

    def app(server_: ServerConnection, event: Event) -> bytes:
        seen.append(event)
        return native_app(PASSWORD)(server_, event)

    event = run_login(client, server, app, one_byte=one_byte)
    assert isinstance(event, Authenticated)
    assert event.server_version == "8.0.36-tenantproxy"
    assert event.connection_id == 42
    assert event.status_flags == ServerStatus.SERVER_STATUS_AUTOCOMMIT
    assert (
        event.capability_flags == client.negotiated_capabilities == server.negotiated_capabilities
    )
    (login,) = seen
    assert isinstance(login, LoginRequested)
    assert (login.username, login.database) == ("user7", "user_database7")
    assert login.auth_plugin_name == auth_plugins.MYSQL_NATIVE_PASSWORD
    assert login.connect_attrs == {"_client_name": "t"}
    assert client.phase is ClientPhase.COMMAND and server.phase is ServerPhase.COMMAND


@pytest.mark.parametrize("one_byte", [False, True])
def test_wrong_password_yields_login_failed_with_error_1045_intact(one_byte: bool) -> None:
    client, server = make_client(password=b"wrong"), make_server()
    event = run_login(client, server, native_app(PASSWORD), one_byte=one_byte)
    assert event == LoginFailed(
        ErrPacket(1045, "28000", "Access denied for user 'user7'@'10.0.0.1' (using password: YES)")
    )
    assert server.phase is ServerPhase.CLOSED and client.phase is ClientPhase.CLOSED
    assert isinstance(server.next_event(), ConnectionClosed)


@pytest.mark.parametrize("one_byte", [False, True])
def test_auth_switch_to_caching_sha2_fast_path(one_byte: bool) -> None:
    client, server = make_client(), make_server()
    app = switch_app(
        auth_plugins.CACHING_SHA2_PASSWORD,
        lambda nonce, data: auth_plugins.caching_sha2_matches(PASSWORD, nonce, data),
        more=auth_plugins.FAST_AUTH_SUCCESS,
    )
    assert isinstance(run_login(client, server, app, one_byte=one_byte), Authenticated)


def test_caching_sha2_as_first_plugin_fast_path() -> None:
    client, server = make_client(), make_server(plugin=auth_plugins.CACHING_SHA2_PASSWORD)

    def app(server_: ServerConnection, event: Event) -> bytes:
        assert isinstance(event, LoginRequested)
        assert event.auth_plugin_name == auth_plugins.CACHING_SHA2_PASSWORD
        assert auth_plugins.caching_sha2_matches(PASSWORD, server_.scramble, event.auth_response)
        return server_.send_auth_more_data(auth_plugins.FAST_AUTH_SUCCESS) + server_.send_ok()

    assert isinstance(run_login(client, server, app), Authenticated)


@pytest.mark.parametrize("one_byte", [False, True])
def test_caching_sha2_full_authentication_sends_the_password_over_tls(one_byte: bool) -> None:
    client = make_client(tls=True)
    server = make_server(plugin=auth_plugins.CACHING_SHA2_PASSWORD, tls=True)

    def app(server_: ServerConnection, event: Event) -> bytes:
        if isinstance(event, LoginRequested):  # not in the cache: ask for the full password
            return server_.send_auth_more_data(auth_plugins.PERFORM_FULL_AUTHENTICATION)
        assert isinstance(event, AuthResponseReceived)
        assert auth_plugins.clear_password_from_response(event.data) == PASSWORD
        return server_.send_ok()

    assert isinstance(run_login(client, server, app, one_byte=one_byte), Authenticated)


def test_caching_sha2_full_authentication_without_tls_is_refused() -> None:
    client, server = make_client(), make_server(plugin=auth_plugins.CACHING_SHA2_PASSWORD)

    def app(server_: ServerConnection, event: Event) -> bytes:
        return server_.send_auth_more_data(auth_plugins.PERFORM_FULL_AUTHENTICATION)

    with pytest.raises(ProtocolError, match="needs TLS") as info:
        run_login(client, server, app)
    assert PASSWORD.decode() not in str(info.value)


@pytest.mark.parametrize("one_byte", [False, True])
def test_auth_switch_to_clear_password_over_tls(one_byte: bool) -> None:
    client, server = make_client(tls=True), make_server(tls=True)
    app = switch_app(
        auth_plugins.MYSQL_CLEAR_PASSWORD,
        lambda nonce, data: auth_plugins.clear_password_from_response(data) == PASSWORD,
    )
    assert isinstance(run_login(client, server, app, one_byte=one_byte), Authenticated)


def test_clear_password_without_tls_is_refused() -> None:
    client, server = make_client(), make_server()
    app = switch_app(auth_plugins.MYSQL_CLEAR_PASSWORD, lambda nonce, data: True)
    with pytest.raises(ProtocolError, match="only sent over TLS"):
        run_login(client, server, app)


def test_auth_switch_back_to_native_uses_the_new_scramble() -> None:
    client, server = make_client(), make_server(plugin=auth_plugins.CACHING_SHA2_PASSWORD)
    first_scramble = server.scramble
    app = switch_app(
        auth_plugins.MYSQL_NATIVE_PASSWORD,
        lambda nonce, data: auth_plugins.native_password_matches(PASSWORD, nonce, data),
    )
    assert isinstance(run_login(client, server, app), Authenticated)
    assert server.scramble != first_scramble


def test_plaintext_login_while_tls_is_offered_is_left_to_the_adapter() -> None:
    client, server = make_client(), make_server(tls=True)

    def app(server_: ServerConnection, event: Event) -> bytes:
        assert isinstance(event, LoginRequested)
        assert not server_.is_tls
        return server_.send_error(
            3159,
            "HY000",
            "Connections using insecure transport are prohibited while "
            "--require_secure_transport=ON.",
        )

    event = run_login(client, server, app)
    assert isinstance(event, LoginFailed)
    assert event.error.error_code == 3159


def test_client_asking_for_tls_that_the_server_lacks_raises_protocol_error() -> None:
    client, server = make_client(tls=True), make_server(tls=False)
    client.receive_data(server.initial_handshake())
    with pytest.raises(ProtocolError, match="CLIENT_SSL"):
        client.next_event()


def test_ssl_advertised_only_when_tls_is_offered() -> None:
    for offered in (False, True):
        server = make_server(tls=offered)
        client = make_client()
        client.receive_data(server.initial_handshake())
        client.next_event()
        assert bool(server.capabilities & F.CLIENT_SSL) is offered


# -- command phase ---------------------------------------------------------------------------


def logged_in_pair() -> tuple[ClientConnection, ServerConnection]:
    client, server = make_client(), make_server()
    assert isinstance(run_login(client, server, native_app(PASSWORD)), Authenticated)
    return client, server


def test_commands_restart_sequence_ids_and_responses_arrive_packet_by_packet() -> None:
    client, server = logged_in_pair()
    for _ in range(3):
        event = feed(server, client.send_command(b"\x03SELECT 1"), one_byte=False)
        assert event == CommandReceived(Command.COM_QUERY, b"\x03SELECT 1")
        response = [b"\x01", b"\x03def-column", b"\x011", b"\xfe\x00\x00\x02\x00\x00\x00"]
        client.receive_data(server.send_packets(response))
        received = [client.next_event() for _ in response]
        assert received == [ResponsePacket(p) for p in response]
        assert client.next_event() is NEED_DATA


def test_ok_and_error_answers_in_the_command_phase_keep_the_connection_open() -> None:
    client, server = logged_in_pair()
    feed(server, client.send_command(b"\x0e"), one_byte=False)
    client.receive_data(server.send_ok(status_flags=ServerStatus.SERVER_STATUS_IN_TRANS))
    assert isinstance(client.next_event(), ResponsePacket)
    feed(server, client.send_command(b"\x02nope"), one_byte=False)
    client.receive_data(server.send_error(1049, "42000", "Unknown database 'nope'"))
    (payload,) = [client.next_event()]
    assert isinstance(payload, ResponsePacket)
    assert ErrPacket.decode(payload.payload).error_code == 1049
    assert server.phase is ServerPhase.COMMAND


def test_com_quit_closes_the_server_side() -> None:
    client, server = logged_in_pair()
    assert isinstance(feed(server, client.send_command(b"\x01"), one_byte=False), ConnectionClosed)
    assert server.phase is ServerPhase.CLOSED


# -- hypothesis: random logins ---------------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@settings(max_examples=50, deadline=None)
@given(
    username=texts,
    database=st.none() | texts.filter(bool),
    attrs=st.dictionaries(texts, texts, max_size=5),
    password=st.binary(max_size=40),
    tls=st.booleans(),
)
def test_random_logins_arrive_intact(
    username: str, database: str | None, attrs: dict[str, str], password: bytes, tls: bool
) -> None:
    client = make_client(
        username=username, database=database, connect_attrs=attrs, password=password, tls=tls
    )
    server = make_server(tls=tls)
    seen: list[LoginRequested] = []

    def app(server_: ServerConnection, event: Event) -> bytes:
        assert isinstance(event, LoginRequested)
        seen.append(event)
        return native_app(password)(server_, event)

    assert isinstance(run_login(client, server, app), Authenticated)
    (login,) = seen
    assert (login.username, login.database, login.connect_attrs) == (username, database, attrs)


# -- malformed input -------------------------------------------------------------------------


def handshaken_server(**kw) -> ServerConnection:  # type: ignore[no-untyped-def]
    server = make_server(**kw)
    server.initial_handshake()
    return server


def test_garbage_first_bytes_raise_protocol_error() -> None:
    server = handshaken_server()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ProtocolError):
        server.next_event()
    assert server.phase is ServerPhase.CLOSED


def test_wrong_sequence_id_raises_protocol_error() -> None:
    server = handshaken_server()
    response = HandshakeResponse41(
        F.CLIENT_PROTOCOL_41 | F.CLIENT_SECURE_CONNECTION | F.CLIENT_PLUGIN_AUTH, "u"
    )
    server.receive_data(encode_packet(response.encode(), 2)[0])
    with pytest.raises(ProtocolError, match="sequence id"):
        server.next_event()


def test_oversized_packet_raises_protocol_error() -> None:
    server = handshaken_server(max_packet_bytes=1024)
    server.receive_data((2000).to_bytes(3, "little") + b"\x01")
    with pytest.raises(PacketTooLarge):
        server.next_event()


def test_truncated_handshake_response41_raises_protocol_error() -> None:
    client, server = make_client(), handshaken_server()
    client.receive_data(make_server().initial_handshake())
    client.next_event()
    payload = client.data_to_send()[4:]
    for cut in (0, 3, 10, 33, 40):
        server = handshaken_server()
        server.receive_data(encode_packet(payload[:cut], 1)[0])
        with pytest.raises(ProtocolError):
            server.next_event()


def test_second_ssl_request_after_tls_raises_protocol_error() -> None:
    client, server = make_client(tls=True), handshaken_server(tls=True)
    client.receive_data(make_server(tls=True).initial_handshake())
    assert isinstance(client.next_event(), StartTls)
    ssl_request = client.data_to_send()
    assert isinstance(feed(server, ssl_request, one_byte=False), TlsRequested)
    server.tls_started()
    server.receive_data(encode_packet(ssl_request[4:], 2)[0])
    with pytest.raises(ProtocolError, match="SSLRequest"):
        server.next_event()


@settings(max_examples=200)
@given(st.binary(max_size=200), st.booleans())
def test_server_raises_only_protocol_error_on_random_input(data: bytes, framed: bool) -> None:
    server = handshaken_server(tls=True)
    server.receive_data(encode_packet(data, 1)[0] if framed else data)
    with contextlib.suppress(ProtocolError):
        server.next_event()


@settings(max_examples=200)
@given(st.binary(max_size=200), st.booleans())
def test_client_raises_only_protocol_error_on_random_input(data: bytes, framed: bool) -> None:
    client = make_client()
    client.receive_data(encode_packet(data, 0)[0] if framed else data)
    with contextlib.suppress(ProtocolError):
        client.next_event()


# -- golden bytes and the public surface -----------------------------------------------------


def test_client_logs_in_against_captured_mariadb_packets() -> None:
    client = make_client(username="wc", password=b"wcpass", database="wcdb")
    client.receive_data(encode_packet((GOLDEN / "handshake_v10.bin").read_bytes(), 0)[0])
    assert client.next_event() is NEED_DATA
    response = HandshakeResponse41.decode(client.data_to_send()[4:])
    handshake = HandshakeV10.decode((GOLDEN / "handshake_v10.bin").read_bytes())
    assert response.username == "wc" and response.database == "wcdb"
    assert auth_plugins.native_password_matches(
        b"wcpass", handshake.auth_plugin_data, response.auth_response
    )
    assert client.connection_id == handshake.connection_id
    client.receive_data(encode_packet((GOLDEN / "ok_after_login.bin").read_bytes(), 2)[0])
    assert isinstance(client.next_event(), Authenticated)


def test_client_keeps_what_captured_mariadb_offered_and_asks_only_for_what_it_wants() -> None:
    client = make_client(username="wc", password=b"wcpass", database="wcdb")
    client.receive_data(encode_packet((GOLDEN / "handshake_v10.bin").read_bytes(), 0)[0])
    client.next_event()
    # MariaDB 10.11 offers its extended capabilities; this client did not ask for them.
    assert client.server_capabilities & F.MARIADB_CLIENT_STMT_BULK_OPERATIONS
    assert client.server_capabilities & F.MARIADB_CLIENT_CACHE_METADATA
    assert not client.negotiated_capabilities & F.MARIADB_CLIENT_STMT_BULK_OPERATIONS
    response = HandshakeResponse41.decode(client.data_to_send()[4:])
    assert not response.capability_flags & F.MARIADB_CLIENT_STMT_BULK_OPERATIONS


def test_client_reports_the_captured_1045_as_login_failed() -> None:
    client = make_client(username="wc", password=b"bad", database="wcdb")
    client.receive_data(encode_packet((GOLDEN / "handshake_v10.bin").read_bytes(), 0)[0])
    client.next_event()
    client.receive_data(encode_packet((GOLDEN / "err_1045.bin").read_bytes(), 2)[0])
    event = client.next_event()
    assert isinstance(event, LoginFailed)
    assert (event.error.error_code, event.error.sql_state) == (1045, "28000")


def test_password_never_appears_in_repr_or_str() -> None:
    client = make_client()
    assert PASSWORD.decode() not in repr(client)
    assert PASSWORD.decode() not in str(client)
    assert PASSWORD.decode() not in repr(AuthResponseReceived(PASSWORD + b"\x00"))


def test_every_server_phase_has_a_transition_row() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(ServerPhase)
    assert ALLOWED_TRANSITIONS[ServerPhase.CLOSED] == frozenset()


def test_every_client_phase_has_a_transition_row() -> None:
    from tenantproxy.wire.mysql import client_connection

    assert set(client_connection.ALLOWED_TRANSITIONS) == set(ClientPhase)


def test_error_instead_of_the_handshake_yields_login_failed() -> None:
    server, client = make_server(), make_client()
    client.receive_data(server.send_error(1040, "08004", "Too many connections"))
    assert client.next_event() == LoginFailed(ErrPacket(1040, "08004", "Too many connections"))
    assert server.phase is ServerPhase.CLOSED


def test_pre_handshake_error_without_sql_state_marker_yields_login_failed() -> None:
    client = make_client()
    client.receive_data(encode_packet(b"\xff\x10\x04Too many connections", 0)[0])
    assert client.next_event() == LoginFailed(ErrPacket(1040, "HY000", "Too many connections"))
