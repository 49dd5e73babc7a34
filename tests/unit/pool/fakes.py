"""An in-memory connector and a controllable clock for the generic pool's tests."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(eq=False)
class FakeConn:
    ident: int
    is_broken: bool = False
    is_closed: bool = False
    resets: int = 0


@dataclass
class OpenCounter:
    """Open connections to one fake server, possibly shared by several connectors."""

    open_now: int = 0
    peak: int = 0

    def opened(self) -> None:
        self.open_now += 1
        self.peak = max(self.peak, self.open_now)


@dataclass
class FakeConnector:
    counter: OpenCounter = field(default_factory=OpenCounter)
    yields_on_connect: bool = False
    connect_gate: asyncio.Event | None = None
    connect_failures_to_come: int = 0
    reset_failures_to_come: int = 0
    adopts: bool = False  # whether adopt() takes over another pool's connection
    opened: list[FakeConn] = field(default_factory=list)
    adopted: list[FakeConn] = field(default_factory=list)
    closed: list[FakeConn] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def connect(self) -> FakeConn:
        if self.connect_gate is not None:
            await self.connect_gate.wait()
        if self.yields_on_connect:
            await asyncio.sleep(0)
        if self.connect_failures_to_come:
            self.connect_failures_to_come -= 1
            raise ConnectionRefusedError("fake server refused")
        conn = FakeConn(next(self._ids))
        self.opened.append(conn)
        self.counter.opened()
        return conn

    async def adopt(self, conn: FakeConn) -> bool:
        assert not conn.is_closed
        if self.adopts:
            self.adopted.append(conn)
        return self.adopts

    async def reset(self, conn: FakeConn) -> None:
        assert not conn.is_closed
        if self.reset_failures_to_come:
            self.reset_failures_to_come -= 1
            raise OSError("fake reset failed")
        conn.resets += 1

    async def close(self, conn: FakeConn) -> None:
        assert not conn.is_closed, "closed twice"
        conn.is_closed = True
        self.closed.append(conn)
        self.counter.open_now -= 1

    def is_broken(self, conn: FakeConn) -> bool:
        return conn.is_broken


async def settle(rounds: int = 20) -> None:
    """Lets every ready task run until the loop has nothing left to do right now."""
    for _ in range(rounds):
        await asyncio.sleep(0)
