"""Who may hold a client slot: sockets that have not yet sent their login do not count against
max_clients; they have a pool of their own, of the same size, and when it is full the one that
has been silent longest makes room.

Why: a client that sends an SSLRequest and then nothing (or a TCP connect and nothing) costs
the attacker one socket and the proxy one slot until the login deadline. Counted against
max_clients, 100 of them lock every tenant out (ERROR 1040) for login_timeout_s at a time, over
and over. MariaDB counts them too and relies on connect_timeout alone. Here a client takes a
slot of max_clients only once its HandshakeResponse41 has arrived (it has finished TLS and
spoken MySQL). Until then it sits among the unproven, at most max_clients of them; a new
connection that finds them all taken closes the one whose last byte is oldest. A real client
sends a byte every round trip and is the newest; a flood of silent sockets only evicts itself.
Memory and file descriptors stay bounded by twice max_clients.
"""

from __future__ import annotations

from typing import Protocol


class Unproven(Protocol):
    """A session before its login packet."""

    session_id: int

    def close_to_make_room(self) -> None: ...


class Admission:
    """The unproven sessions, longest-silent first (a dict keeps insertion order)."""

    def __init__(self, max_unproven: int) -> None:
        self._max_unproven = max_unproven
        self._unproven: dict[int, Unproven] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._unproven)

    def accept(self, session: Unproven) -> None:
        """A new connection; makes room first when the unproven are all there."""
        while len(self._unproven) >= self._max_unproven:
            oldest = next(iter(self._unproven.values()))
            self._unproven.pop(oldest.session_id)
            self.evicted += 1
            oldest.close_to_make_room()
        self._unproven[session.session_id] = session

    def heard_from(self, session_id: int) -> None:
        """The session sent bytes: it moves to the back of the eviction order."""
        session = self._unproven.pop(session_id, None)
        if session is not None:
            self._unproven[session_id] = session

    def proven(self, session_id: int) -> None:
        """The login packet arrived (or the session ended): it leaves the unproven."""
        self._unproven.pop(session_id, None)
