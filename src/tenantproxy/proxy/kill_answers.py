"""A client's KILL of a proxy session id (kill.py), answered in order with its other commands.

The answer always comes from the killer's own backend, so that it keeps its place among the
answers to the commands pipelined around it: the server's own answer to the KILL rewritten for
the victim's backend when both run on one target, or, when the KILL is done elsewhere (another
target, another worker process) or nothing runs for the victim, a command whose answer is the OK
(or "Unknown thread id") the client should get. While a KILL is done elsewhere the session is
ANSWERING: its later bytes wait, and in transaction mode its backend stays attached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tenantproxy.errors import BackendError
from tenantproxy.proxy.kill import KillRequest, answered_without_a_kill, kill_on_target
from tenantproxy.proxy.link import LinkClosed

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from tenantproxy.proxy.client_session import ClientSession
    from tenantproxy.proxy.leasing import HeldBackend
    from tenantproxy.proxy.relay import Relay


class KillAnswers:
    """Answers a KILL of a proxy session id that one session sends."""

    __slots__ = ("_context", "_session")

    def __init__(self, session: ClientSession) -> None:
        self._session = session
        self._context = session.context

    def kill(self, relay: Relay, request: KillRequest, later: bytes) -> bool:
        """False when the KILL runs elsewhere first; ``later`` then waits until it is done."""
        session, context = self._session, self._context
        victim = context.sessions.get(request.session_id)
        if victim is None and context.is_served_elsewhere(request.session_id):
            self._wait_for(self._kill_in_another_worker(request), later)
            return False
        if victim is None or victim.username != session.username:
            # No such session for this tenant: the server's "Unknown thread id" for the same id.
            relay.forward_command(request.for_backend(request.session_id))
            return True
        victim_backend = victim.held_backend
        if victim_backend is None:  # logging in, or between backends: nothing runs there
            if not request.is_query_only:
                victim.close_now()
            relay.forward_command(answered_without_a_kill())
            return True
        own = session.held_backend
        if own is not None and victim_backend.target is own.target:
            relay.forward_command(request.for_backend(victim_backend.connection.connection_id))
            return True
        self._wait_for(self._kill_elsewhere(request, victim_backend), later)
        return False

    def _wait_for(self, kill: Coroutine[Any, Any, bytes], later: bytes) -> None:
        """Runs a KILL done away from this session's backend; the command it returns then
        answers the client from that backend, and ``later`` waits until it is sent."""
        multiplexer = self._session.multiplexer
        if multiplexer is not None:  # the answer comes from this backend: it stays
            multiplexer.is_held_by_session = True
        self._session.start_answering(later)
        self._context.spawn(self._answer(kill))

    async def _answer(self, kill: Coroutine[Any, Any, bytes]) -> None:
        answer = await kill
        session = self._session
        relay = session.relay
        if session.is_closed or relay is None:
            return
        multiplexer = session.multiplexer
        if multiplexer is not None:
            multiplexer.is_held_by_session = False
        relay.forward_command(answer)
        session.resume_relaying()

    async def _kill_elsewhere(self, request: KillRequest, victim_backend: HeldBackend) -> bytes:
        try:
            await kill_on_target(victim_backend, request)
        except BackendError as exc:  # the victim's backend or its target is gone already
            self._context.log.info(
                "session %d: KILL on another target: %s", self._session.session_id, exc
            )
        return answered_without_a_kill()

    async def _kill_in_another_worker(self, request: KillRequest) -> bytes:
        """The worker that served the id does the KILL (coordination.py); when it has no such
        session of this tenant, the server's own "Unknown thread id" answers."""
        link = self._context.link
        assert link is not None
        try:
            is_done = await link.call(
                "kill",
                session_id=request.session_id,
                user=self._session.username,
                is_query_only=request.is_query_only,
                force=request.force,
            )
        except LinkClosed:  # the proxy is going down
            is_done = False
        return answered_without_a_kill() if is_done else request.for_backend(request.session_id)
