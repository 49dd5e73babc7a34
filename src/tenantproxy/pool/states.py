"""Backend states, and the only moves between them.

Rules (PgBouncer's ``change_server_state``): a backend's state says which collection of its pool
holds it, and only ``Pool._move`` changes a state, along ``ALLOWED_TRANSITIONS``:

    state       held in                what it means
    CONNECTING  Pool._connecting (set)  a pool slot and a budget slot are reserved; connect runs
    IDLE        Pool._idle (deque)      open and clean; the right end is the most recent (LIFO)
    LEASED      Pool._leased (set)      lent to a client (or being reset, or handed to a waiter)
    CLOSING     Pool._closing (set)     connector.close runs; still holds its budget slot
    CLOSED      nothing                 gone; its slots were handed on

A backend counts in the pool's ``size`` while CONNECTING, IDLE or LEASED.
"""

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Generic, TypeVar

C = TypeVar("C")


class BackendState(enum.Enum):
    CONNECTING = "connecting"
    IDLE = "idle"
    LEASED = "leased"
    CLOSING = "closing"
    CLOSED = "closed"


_S = BackendState

ALLOWED_TRANSITIONS: Final[Mapping[BackendState, frozenset[BackendState]]] = MappingProxyType(
    {
        # LEASED: the connect for a lease or a warm-up succeeded; CLOSING: it succeeded but the
        # pool closed meanwhile; CLOSED: it failed or its caller gave up before connecting.
        _S.CONNECTING: frozenset({_S.LEASED, _S.IDLE, _S.CLOSING, _S.CLOSED}),
        _S.IDLE: frozenset({_S.LEASED, _S.CLOSING}),
        _S.LEASED: frozenset({_S.IDLE, _S.CLOSING}),
        _S.CLOSING: frozenset({_S.CLOSED}),
        _S.CLOSED: frozenset(),
    }
)


class Backend(Generic[C]):
    """One backend as the pool sees it: the connection, its state and when it went idle."""

    __slots__ = ("connection", "idle_since", "state")

    connection: C  # set once the connect succeeds

    def __init__(self) -> None:
        self.state = BackendState.CONNECTING
        self.idle_since = 0.0

    def __repr__(self) -> str:
        return f"<Backend {self.state.name}>"
