"""A small thread-safe cache of values by name, each kept until its own deadline.

A remote secret store puts it in front of its reads, so that a login whose secret is cached does
no I/O. Rules:

- Deadlines run on a monotonic clock (injectable, so tests move time by hand).
- One load per name at a time: callers that miss the same name together wait for one load instead
  of each asking the remote store (a burst of logins for one tenant after its entry expires).
  Loads of different names hash to one of a fixed set of locks, so memory does not grow with names.
- A failed load caches nothing: the next call tries again.
- At most ``max_entries`` entries: when full, expired entries go first, then the oldest, down to
  nine tenths of the limit (so that a full cache does not scan itself on every insert).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

_LOAD_LOCK_STRIPES = 64


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    value: V
    expires_at: float


class TtlCache(Generic[V]):
    """Values by name, each until ``now + ttl_s`` of the clock at the time it was loaded."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_entries: int = 1_000_000
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, Cached[V]] = {}
        self._lock = threading.Lock()
        self._load_locks = [threading.Lock() for _ in range(_LOAD_LOCK_STRIPES)]

    def __len__(self) -> int:
        return len(self._entries)

    def fresh(self, name: str) -> Cached[V] | None:
        """The entry for ``name`` if it has not expired; no I/O, no waiting on loads."""
        entry = self._entries.get(name)
        if entry is None or entry.expires_at <= self._clock():
            return None
        return entry

    def get_or_load(self, name: str, load: Callable[[], tuple[V, float]]) -> V:
        """The fresh cached value, else ``load()``'s value, kept for the ``ttl_s`` it returns."""
        entry = self.fresh(name)
        if entry is not None:
            return entry.value
        with self._load_locks[hash(name) % _LOAD_LOCK_STRIPES]:
            entry = self.fresh(name)  # another thread may have loaded it while this one waited
            if entry is not None:
                return entry.value
            value, ttl_s = load()
            self.put(name, value, ttl_s)
            return value

    def put(self, name: str, value: V, ttl_s: float) -> None:
        with self._lock:
            self._entries.pop(name, None)  # re-inserted last: insertion order is age order
            if len(self._entries) >= self._max_entries:
                self._make_room()
            self._entries[name] = Cached(value, self._clock() + ttl_s)

    def forget(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _make_room(self) -> None:
        now = self._clock()
        for name in [n for n, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[name]
        while len(self._entries) > self._max_entries * 9 // 10:
            del self._entries[next(iter(self._entries))]
