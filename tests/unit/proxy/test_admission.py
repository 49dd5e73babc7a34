"""Unproven sessions (before their login packet): bounded, and the longest-silent makes room."""

from __future__ import annotations

from tenantproxy.proxy.admission import Admission


class Session:
    def __init__(self, session_id: int, closed: list[int]) -> None:
        self.session_id = session_id
        self._closed = closed

    def close_to_make_room(self) -> None:
        self._closed.append(self.session_id)


def test_a_new_connection_past_the_bound_closes_the_longest_silent_one():
    closed: list[int] = []
    admission = Admission(max_unproven=3)
    for session_id in (1, 2, 3):
        admission.accept(Session(session_id, closed))
    admission.heard_from(1)  # 1 sent a byte: 2 is now the longest silent
    admission.accept(Session(4, closed))
    assert closed == [2]
    assert len(admission) == 3 and admission.evicted == 1


def test_a_flood_of_silent_sockets_evicts_only_itself():
    closed: list[int] = []
    admission = Admission(max_unproven=100)
    admission.accept(Session(0, closed))  # a real client, in the middle of its login
    for session_id in range(1, 2001):
        admission.accept(Session(session_id, closed))
        if session_id % 50 == 0:
            admission.heard_from(0)  # it answers every round trip
    assert 0 not in closed
    assert len(closed) == 1901


def test_a_proven_session_leaves_the_unproven_and_is_never_evicted():
    closed: list[int] = []
    admission = Admission(max_unproven=2)
    admission.accept(Session(1, closed))
    admission.accept(Session(2, closed))
    admission.proven(1)
    admission.accept(Session(3, closed))
    admission.accept(Session(4, closed))
    assert closed == [2]
    admission.proven(99)  # an unknown id (ended already) is no error
