"""COM_CHANGE_USER, answered by the proxy as MariaDB answers it.

The session's state goes first: the backend it holds is reset where it is (its user locks are
gone before the answer), or, in transaction mode between transactions, a backend is leased for
the purpose. Then the client logs in again, checked as at its first login (login_flow.py), with
an AuthSwitchRequest framed here when it used another plugin (the command phase's sequence ids
count). The new user's backend, on its database, is leased before the old one is let go, so a
refusal (the tenant's caps, a database it may not use) leaves the session as it was: it keeps its
user and database and goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenantproxy.errors import BackendError
from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.authentication import requires_token
from tenantproxy.proxy.leasing import LeaseRefused, give_back, lease_backend, select_schema
from tenantproxy.wire.mysql import auth_plugins
from tenantproxy.wire.mysql.errors import ProtocolError
from tenantproxy.wire.mysql.framing import PacketDecoder
from tenantproxy.wire.mysql.handshake import AuthSwitchRequest, ComChangeUser
from tenantproxy.wire.mysql.responses import ErrPacket

if TYPE_CHECKING:
    from tenantproxy.proxy.backends import BackendProfile
    from tenantproxy.proxy.client_channel import PendingBytes
    from tenantproxy.proxy.client_session import ClientSession
    from tenantproxy.proxy.leasing import HeldBackend
    from tenantproxy.proxy.login_flow import LoginFlow
    from tenantproxy.proxy.mysql_errors import MysqlError
    from tenantproxy.proxy.relay import Relay


class ChangeUser:
    """Answers one COM_CHANGE_USER: resets the session's backend, checks the new login, and
    moves the session to the new user's backend, or back to its own."""

    __slots__ = ("_context", "_decoder", "_kept", "_login", "_pending", "_sequence_id", "_session")

    def __init__(
        self,
        session: ClientSession,
        login: LoginFlow,
        pending: PendingBytes,
        kept: tuple[BackendProfile, str | None] | None,
    ) -> None:
        self._session = session
        self._context = session.context
        self._login = login
        self._pending = pending
        # Transaction mode: the profile and schema the session had (its backend went back).
        self._kept = kept
        self._decoder = PacketDecoder(self._context.config.max_packet_bytes, expected_sequence_id=2)
        self._sequence_id = 1  # COM_CHANGE_USER was packet 0

    async def run(self, payload: bytes) -> None:
        session = self._session
        try:
            request = ComChangeUser.decode(payload, session.negotiated_capabilities)
        except ProtocolError:
            session.send_error_and_close(mysql_errors.MALFORMED_PACKET, sequence_id=1)
            return
        # The change owns the backend until it answers: a client that leaves meanwhile does
        # not give it back while a command runs on it.
        held, relay = session.take_backend()
        if held is None and self._kept is not None:
            # Transaction mode between transactions: a backend to reset and go on with.
            relay = None
            held = await self._lease_kept_backend(*self._kept)
            if held is None:
                return
        held = await self._reset_in_place(held, relay)
        try:
            error, held = await self._log_in_again(request, held)
        except ProtocolError:
            self._give_back_unless_none(held)
            session.send_error_and_close(mysql_errors.MALFORMED_PACKET)
            return
        except TimeoutError:  # no answer to the AuthSwitchRequest within login_timeout_s
            self._give_back_unless_none(held)
            self._context.log.info("session %d: COM_CHANGE_USER timed out", session.session_id)
            session.send_error_and_close(mysql_errors.BAD_HANDSHAKE, self._sequence_id)
            return
        self._answer(request, error, held)

    def _answer(
        self, request: ComChangeUser, error: MysqlError | None, held: HeldBackend | None
    ) -> None:
        session = self._session
        if session.is_closed:
            self._give_back_unless_none(held)
            return
        if held is None or held.connection.is_broken:
            self._give_back_unless_none(held)
            lost = error or mysql_errors.backend_unavailable(session.endpoint.name)
            session.send_error_and_close(lost, sequence_id=self._sequence_id)
            return
        if error is None:
            answer = session.ok_payload(self._login.login_status(held))
        else:
            answer = ErrPacket(*error).encode()
        session.write_packet(answer, self._sequence_id)
        kept_schema = held.connection.current_schema if self._kept is None else self._kept[1]
        session.start_relaying(held, request.database if error is None else kept_schema)

    async def _lease_kept_backend(
        self, profile: BackendProfile, schema: str | None
    ) -> HeldBackend | None:
        session = self._session
        assert session.username is not None
        try:
            return await lease_backend(
                self._context, session.endpoint, session.username, profile, schema
            )
        except LeaseRefused as refused:
            session.send_error_and_close(refused.error, sequence_id=1)
            return None

    async def _reset_in_place(
        self, held: HeldBackend | None, relay: Relay | None
    ) -> HeldBackend | None:
        """The held backend, reset; None when it could not be (it is then given back broken)."""
        if held is None:
            return None
        is_idle = relay.detach() if relay is not None else not held.connection.is_broken
        try:
            if not is_idle:
                raise BackendError("a response was still on its way")
            await held.connection.reset_session(self._context.config.init_query)
        except BackendError as exc:
            self._context.log.info(
                "session %d: backend not reset: %s", self._session.session_id, exc
            )
            give_back(self._context, held, is_reusable=False)
            return None
        return held

    async def _log_in_again(
        self, request: ComChangeUser, held: HeldBackend | None
    ) -> tuple[MysqlError | None, HeldBackend | None]:
        """Checks the new login and moves to its user; returns the refusal, if any, and the
        backend the session goes on with."""
        secret = await self._context.secrets.find(request.username)
        if requires_token(secret) and not self._session.is_tls:
            self._context.metrics.count("ClientConnectionsNoTLS")
            return mysql_errors.INSECURE_TRANSPORT, held
        verdict = await self._login.check_credentials(
            request.username,
            secret,
            request.auth_plugin_name,
            request.auth_response,
            switch_plugin=self._switch_plugin,
        )
        if not verdict.is_accepted:
            return self._login.refusal(request.username, verdict), held
        return await self._move_to_user(request, held)

    async def _move_to_user(
        self, request: ComChangeUser, held: HeldBackend | None
    ) -> tuple[MysqlError | None, HeldBackend | None]:
        """A backend of the new user on its database, leased before the old one is let go."""
        session, context = self._session, self._context
        new_user = request.username
        is_new_user = new_user != session.username
        if is_new_user and not await context.admit_tenant_client(new_user):
            return mysql_errors.too_many_user_connections(new_user), held
        profile = self._login.profile_of(request.character_set, request.database)
        try:
            if held is not None and not is_new_user and held.connection.profile == profile:
                await select_schema(held.connection, request.database)
                new_held = held
            else:
                new_held = await lease_backend(
                    context, session.endpoint, new_user, profile, request.database
                )
        except LeaseRefused as refused:
            if is_new_user:
                context.release_tenant_client(new_user)
            return refused.error, held
        if session.is_closed:  # the client left; its old user was let go
            if is_new_user:
                context.release_tenant_client(new_user)
            if new_held is not held:
                self._give_back_unless_none(new_held)
            return None, held
        if is_new_user:
            if session.username is not None:
                context.release_tenant_client(session.username)
            session.username = new_user
        if new_held is not held:
            self._give_back_unless_none(held)
        return None, new_held

    def _give_back_unless_none(self, held: HeldBackend | None) -> None:
        if held is not None:
            give_back(self._context, held, is_reusable=not held.connection.is_broken)

    async def _switch_plugin(self, plugin_name: str) -> tuple[bytes, bytes]:
        """AuthSwitchRequest inside COM_CHANGE_USER, framed here: the command phase counts."""
        scramble = auth_plugins.new_scramble()
        request = AuthSwitchRequest(plugin_name, scramble + b"\x00").encode()
        self._session.write_packet(request, self._sequence_id)
        decoder, pending = self._decoder, self._pending
        while (answer := decoder.next_packet()) is None:
            if pending.data:
                decoder.feed(pending.take())
                continue
            if self._session.is_closed:
                raise ProtocolError("client left during COM_CHANGE_USER")
            # As long as a login may take: a client that never answers must not hold the
            # session (and its backend) open.
            await pending.wait(self._context.config.login_timeout_s)
        self._sequence_id = (answer[0] + 1) % 256
        return answer[1], scramble
