"""Leasing a backend for a session: pick the target, lease a backend that answers, and put it
on the client's schema. Every refusal carries the MySQL error the client should see."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenantproxy.errors import BackendError, BorrowTimeout, PoolClosed, TargetUnreachable
from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.backends import (
    BackendCommandFailed,
    BackendConnection,
    BackendLoginRejected,
    BackendProfile,
)
from tenantproxy.proxy.health import set_target_health
from tenantproxy.proxy.mysql_errors import MysqlError
from tenantproxy.wire.mysql import commands
from tenantproxy.wire.mysql.responses import ErrPacket

if TYPE_CHECKING:
    from tenantproxy.config import EndpointConfig
    from tenantproxy.pool import Lease, Pool
    from tenantproxy.proxy.routing import TargetState
    from tenantproxy.proxy.server import ProxyContext

# Backends tried on one target before the lease moves to another (or the client is told that
# none answers).
_LIVENESS_ATTEMPTS = 3
# A ping unanswered this long: the backend (or its target) is gone without a word.
_PING_TIMEOUT_S = 5.0


class LeaseRefused(Exception):
    """No backend for the session; ``error`` is what the client is told."""

    def __init__(self, error: MysqlError) -> None:
        super().__init__(error.message)
        self.error = error


class _TargetFailed(Exception):
    """The target's pool could not give a backend (its connect failed, or the pool closed):
    another target of the endpoint may."""


@dataclass
class HeldBackend:
    """A leased backend, with the pool it goes back to and the target it runs on."""

    lease: Lease[BackendConnection]
    pool: Pool[BackendConnection]
    target: TargetState

    @property
    def connection(self) -> BackendConnection:
        return self.lease.connection


async def lease_backend(
    context: ProxyContext,
    endpoint: EndpointConfig,
    db_user: str,
    profile: BackendProfile,
    database: str | None,
) -> HeldBackend:
    """A backend of ``db_user`` on the endpoint's target, on ``database``; or LeaseRefused.

    A target that a new backend cannot reach is marked unhealthy at once (passive health) and
    the lease tried again on another healthy target of the endpoint, all within
    connection_borrow_timeout_s: a replica that just died gets no more logins. A target whose
    pool fails otherwise (a backend lost during its connect, a pool closing) gets a health check
    at once and the lease, too, moves on to another target.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + context.config.connection_borrow_timeout_s
    tried: set[str] = set()
    while (target := context.router.pick(endpoint.role, avoid=tried)) is not None:
        try:
            if not tried:  # the first try: the pool's own borrow timeout bounds it
                held = await _lease_on(context, target, db_user, profile, database)
            else:
                async with asyncio.timeout_at(deadline):
                    held = await _lease_on(context, target, db_user, profile, database)
        except TargetUnreachable as exc:
            set_target_health(target, False, cause=str(exc), log=context.log)
            held = None
        except _TargetFailed:
            if target.request_check is not None:
                target.request_check()
            held = None
        except TimeoutError:
            context.metrics.count("DatabaseConnectionsBorrowTimeouts", tenant=db_user)
            raise LeaseRefused(mysql_errors.BORROW_TIMEOUT) from None
        if held is not None:
            target.active_leases += 1
            return held
        tried.add(target.target.name)
    raise LeaseRefused(mysql_errors.backend_unavailable(endpoint.name))


def give_back(context: ProxyContext, held: HeldBackend, *, is_reusable: bool) -> None:
    """Returns a backend to its pool, reset (COM_RESET_CONNECTION) or closed when broken."""
    held.target.active_leases -= 1
    held.connection.last_given_back_at = time.monotonic()
    context.spawn(held.pool.give_back(held.lease, needs_reset=True, is_broken=not is_reusable))


async def _lease_on(
    context: ProxyContext,
    target: TargetState,
    db_user: str,
    profile: BackendProfile,
    database: str | None,
) -> HeldBackend | None:
    """A live backend on ``target``, on ``database``; None when every backend tried died (the
    caller tries another target). Raises TargetUnreachable when a new one cannot connect."""
    pool = context.pools.pool_for(target, db_user, profile)
    for _ in range(_LIVENESS_ATTEMPTS):
        lease = await _lease(context, pool, target, db_user)
        try:
            is_ready = await _is_alive(context, lease.connection)
            if not is_ready and target.request_check is not None:
                # Its idle backends die: maybe the target did too. Check it now.
                target.request_check()
            is_ready = is_ready and await _is_on_schema(lease.connection, database)
        except BackendCommandFailed as exc:
            await pool.give_back(lease, needs_reset=False)
            raise LeaseRefused(_as_mysql_error(exc.error)) from None
        except BaseException:
            # Cancelled (the retry's deadline) halfway through a command: not to be trusted.
            await pool.give_back(lease, is_broken=True)
            raise
        if is_ready:
            return HeldBackend(lease, pool, target)
        await pool.give_back(lease, is_broken=True)
    return None


async def _lease(
    context: ProxyContext, pool: Pool[BackendConnection], target: TargetState, db_user: str
) -> Lease[BackendConnection]:
    try:
        context.metrics.count("DatabaseConnectionRequests", tenant=db_user)
        asked_at = time.perf_counter()
        lease = await pool.lease()
        context.metrics.observe_borrow_latency_us((time.perf_counter() - asked_at) * 1e6)
    except BorrowTimeout:
        context.metrics.count("DatabaseConnectionsBorrowTimeouts", tenant=db_user)
        raise LeaseRefused(mysql_errors.BORROW_TIMEOUT) from None
    except BackendLoginRejected as exc:
        raise LeaseRefused(_as_mysql_error(exc.error)) from None
    except TargetUnreachable:
        raise
    except (BackendError, PoolClosed) as exc:
        context.log.warning("no backend on %s: %s", target.target.name, exc)
        raise _TargetFailed from None
    return lease


async def _is_alive(context: ProxyContext, backend: BackendConnection) -> bool:
    """Pings a backend that sat idle long enough for the server to have dropped it
    (wait_timeout, a KILL, a restart): PgBouncer's server_check_delay."""
    if backend.is_broken:
        return False
    idle_s = time.monotonic() - backend.last_given_back_at
    if idle_s < context.config.backend_check_after_idle_s:
        return True
    try:
        async with asyncio.timeout(_PING_TIMEOUT_S):
            await backend.run_simple_command(commands.com_ping())
    except (BackendError, TimeoutError):
        return False
    return True


async def _is_on_schema(backend: BackendConnection, database: str | None) -> bool:
    """COM_INIT_DB when the backend sits on another schema; False when the backend dies
    meanwhile. The server's own refusal (1044 for another tenant's database) is raised as
    BackendCommandFailed, for the client to get as it is."""
    if database is None or database == backend.current_schema:
        return True
    try:
        await backend.run_simple_command(commands.com_init_db(database))
    except BackendCommandFailed:
        raise
    except BackendError:
        return False
    backend.current_schema = database
    return True


async def select_schema(backend: BackendConnection, database: str | None) -> None:
    """COM_INIT_DB on a backend a session holds already (COM_CHANGE_USER to the same user);
    LeaseRefused with the server's refusal, or when the backend died meanwhile."""
    try:
        if await _is_on_schema(backend, database):
            return
    except BackendCommandFailed as exc:
        raise LeaseRefused(_as_mysql_error(exc.error)) from None
    backend.mark_broken()
    raise LeaseRefused(mysql_errors.backend_unavailable(backend.target.name))


def _as_mysql_error(error: ErrPacket) -> MysqlError:
    return MysqlError(error.error_code, error.sql_state, error.error_message)
