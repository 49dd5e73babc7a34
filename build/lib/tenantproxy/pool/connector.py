"""The one thing a pool knows about its backends: how to open, reset, check and close them.

Like PgCat's pool (``connect`` / ``is_valid`` / ``has_broken``) and asyncpg's connection class
hook, the pool never looks inside a connection: the proxy's MySQL connector implements this.
"""

from typing import Protocol, TypeVar

C = TypeVar("C")


class Connector(Protocol[C]):
    """Opens, resets and closes backends of one (target, db user)."""

    async def connect(self) -> C:
        """Opens and authenticates a new backend; raises on failure."""
        ...

    async def adopt(self, conn: C) -> bool:
        """Takes over ``conn``, an idle backend of another pool on the same target (the proxy
        logs it in again as this pool's user); False when it cannot, and the pool closes it."""
        ...

    async def reset(self, conn: C) -> None:
        """Makes ``conn`` clean for the next client; raising makes the pool discard it."""
        ...

    async def close(self, conn: C) -> None:
        """Closes ``conn`` politely; must not raise."""
        ...

    def is_broken(self, conn: C) -> bool:
        """Cheap and without I/O: the transport is closed or a protocol error was seen."""
        ...
