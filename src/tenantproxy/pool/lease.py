"""A client's temporary hold on a backend, given back exactly once."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from tenantproxy.errors import PoolError

if TYPE_CHECKING:
    from tenantproxy.pool.pool import Pool
    from tenantproxy.pool.states import Backend

C = TypeVar("C")


class Lease(Generic[C]):
    """A leased backend: use ``connection``, then give the lease back to its pool once."""

    __slots__ = ("_backend", "_is_given_back", "_pool", "connection", "leased_at")

    def __init__(self, backend: Backend[C], pool: Pool[C], leased_at: float) -> None:
        self.connection: C = backend.connection
        self.leased_at = leased_at
        self._backend = backend
        self._pool = pool
        self._is_given_back = False

    @property
    def is_given_back(self) -> bool:
        return self._is_given_back

    def _take_back(self, pool: Pool[C]) -> Backend[C]:
        """Called by ``pool`` on give-back: marks the lease given back and returns its backend."""
        if pool is not self._pool:
            raise PoolError(f"this lease belongs to pool {self._pool.name!r}, not {pool.name!r}")
        if self._is_given_back:
            raise PoolError(f"lease of pool {pool.name!r} was already given back")
        self._is_given_back = True
        return self._backend

    def __repr__(self) -> str:
        # The connection's repr is left out on purpose: it is not ours to print.
        state = "given back" if self._is_given_back else "held"
        return f"<Lease pool={self._pool.name!r} {state}>"


class LeaseContext(AbstractAsyncContextManager["Lease[C]"], Generic[C]):
    """``async with pool.leased() as lease``: a body that raises leaves the backend broken."""

    __slots__ = ("_lease", "_pool")

    def __init__(self, pool: Pool[C]) -> None:
        self._pool = pool
        self._lease: Lease[C] | None = None

    async def __aenter__(self) -> Lease[C]:
        self._lease = await self._pool.lease()
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease = self._lease
        if lease is not None and not lease.is_given_back:
            # An exception may have left the backend mid-exchange: never lend it again.
            await self._pool.give_back(lease, is_broken=exc_type is not None)
