"""The backend state table and the public surface of the package."""

from __future__ import annotations

import tenantproxy.pool as pool_package
from tenantproxy.pool import ALLOWED_TRANSITIONS, BackendState


def test_every_state_has_a_row_and_closed_is_final() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(BackendState)
    assert ALLOWED_TRANSITIONS[BackendState.CLOSED] == frozenset()


def test_a_backend_is_only_ever_closed_through_closing_once_opened() -> None:
    for state in (BackendState.IDLE, BackendState.LEASED):
        assert BackendState.CLOSED not in ALLOWED_TRANSITIONS[state]
        assert BackendState.CLOSING in ALLOWED_TRANSITIONS[state]


def test_package_exports_the_public_names() -> None:
    assert set(pool_package.__all__) == {
        "ALLOWED_TRANSITIONS",
        "BackendState",
        "Connector",
        "Lease",
        "Pool",
        "PoolStats",
        "TargetBudget",
        "run_maintenance",
    }
