"""Worker places: fixed shares of a limit, and session ids that say their worker."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.proxy.kill import SESSION_ID_BASE, SESSION_ID_LIMIT
from tenantproxy.proxy.workers import SINGLE, WorkerPlace


@given(total=st.integers(0, 10_000), count=st.integers(1, 64))
def test_the_shares_of_a_limit_add_up_to_it_and_differ_by_at_most_one(total, count):
    shares = [WorkerPlace(i, count).share(total) for i in range(count)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def test_a_single_process_has_the_whole_limit_and_every_id():
    assert SINGLE.share(36) == 36
    assert SINGLE.first_session_id() == SESSION_ID_BASE
    assert SINGLE.last_session_id() == SESSION_ID_LIMIT - 1


@given(count=st.integers(1, 64), data=st.data())
def test_each_workers_session_ids_name_that_worker(count, data):
    index = data.draw(st.integers(0, count - 1))
    place = WorkerPlace(index, count)
    step = data.draw(st.integers(0, 1000))
    for session_id in (place.first_session_id() + step * count, place.last_session_id()):
        assert SESSION_ID_BASE <= session_id < SESSION_ID_LIMIT
        assert WorkerPlace(0, count).owner_of(session_id) == index
