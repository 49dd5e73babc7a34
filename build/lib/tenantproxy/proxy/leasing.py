"""Leasing a backend for a session: pick the target, borrow a backend that answers, and put it
on the client's schema. Every refusal carries the MySQL error the client should see."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenantproxy.errors import BackendError, BorrowTimeout, PoolClosed
from tenantproxy.proxy import mysql_errors
from tenantproxy.proxy.backends import (
    BackendCommandFailed,
    BackendConnection,
    BackendLoginRejected,
    BackendProfile,
)
from tenantproxy.proxy.mysql_errors import MysqlError
from tenantproxy.wire.mysql import commands
from tenantproxy.wire.mysql.responses import ErrPacket

if TYPE_CHECKING:
    from tenantproxy.config import EndpointConfig
    from tenantproxy.pool import Lease, Pool
    from tenantproxy.proxy.routing import TargetState
    from tenantproxy.proxy.server import ProxyContext

# Backends tried before the client is told that none answers.
_LIVENESS_ATTEMPTS = 3


class LeaseRefused(Exception):
    """No backend for the session; ``error`` is what the client is told."""

    def __init__(self, error: MysqlError) -> None:
        super().__init__(error.message)
        self.error = error


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
    """A backend of ``db_user`` on the endpoint's target, on ``database``; or LeaseRefused."""
    target = context.router.pick(endpoint.role)
    if target is None:
        raise LeaseRefused(mysql_errors.backend_unavailable(endpoint.name))
    pool = context.pools.pool_for(target, db_user, profile)
    held = HeldBackend(await _acquire_live_backend(context, pool, target, db_user), pool, target)
    await _select_schema(held, database)
    target.active_leases += 1
    return held


def give_back(context: ProxyContext, held: HeldBackend, *, is_reusable: bool) -> None:
    """Returns a backend to its pool, reset (COM_RESET_CONNECTION) or closed when broken."""
    held.target.active_leases -= 1
    held.connection.last_released_at = time.monotonic()
    context.spawn(held.pool.release(held.lease, needs_reset=True, is_broken=not is_reusable))


async def _acquire_live_backend(
    context: ProxyContext, pool: Pool[BackendConnection], target: TargetState, db_user: str
) -> Lease[BackendConnection]:
    for _ in range(_LIVENESS_ATTEMPTS):
        try:
            context.metrics.count("DatabaseConnectionRequests", tenant=db_user)
            asked_at = time.perf_counter()
            lease = await pool.acquire()
            context.metrics.observe_borrow_latency_us((time.perf_counter() - asked_at) * 1e6)
        except BorrowTimeout:
            context.metrics.count("DatabaseConnectionsBorrowTimeouts", tenant=db_user)
            raise LeaseRefused(mysql_errors.BORROW_TIMEOUT) from None
        except BackendLoginRejected as exc:
            raise LeaseRefused(_as_mysql_error(exc.error)) from None
        except (BackendError, PoolClosed) as exc:
            context.log.warning("no backend on %s: %s", target.target.name, exc)
            raise LeaseRefused(mysql_errors.backend_unavailable(target.target.name)) from None
        if await _is_alive(context, lease.connection):
            return lease
        await pool.release(lease, is_broken=True)
    raise LeaseRefused(mysql_errors.backend_unavailable(target.target.name))


async def _is_alive(context: ProxyContext, backend: BackendConnection) -> bool:
    """Pings a backend that sat idle long enough for the server to have dropped it
    (wait_timeout, a KILL, a restart): PgBouncer's server_check_delay."""
    if backend.is_broken:
        return False
    idle_s = time.monotonic() - backend.last_released_at
    if idle_s < context.config.backend_check_after_idle_s:
        return True
    try:
        await backend.run_simple_command(commands.com_ping())
    except BackendError:
        return False
    return True


async def _select_schema(held: HeldBackend, database: str | None) -> None:
    """COM_INIT_DB when the backend sits on another schema; the server's own refusal
    (1044 for another tenant's database) goes to the client as it is."""
    backend = held.connection
    if database is None or database == backend.current_schema:
        return
    try:
        await backend.run_simple_command(commands.com_init_db(database))
    except BackendCommandFailed as exc:
        await held.pool.release(held.lease, needs_reset=False)
        raise LeaseRefused(_as_mysql_error(exc.error)) from None
    except BackendError:
        await held.pool.release(held.lease, is_broken=True)
        raise LeaseRefused(mysql_errors.backend_unavailable(held.target.target.name)) from None
    backend.current_schema = database


def _as_mysql_error(error: ErrPacket) -> MysqlError:
    return MysqlError(error.error_code, error.sql_state, error.error_message)
