"""Target health changes: one place moves them, logs each once and counts it."""

from __future__ import annotations

import logging

import pytest

from tenantproxy.pool import TargetBudget
from tenantproxy.proxy.backends import Target
from tenantproxy.proxy.health import set_target_health
from tenantproxy.proxy.routing import TargetState

LOG = logging.getLogger("tenantproxy.test-health")


def replica() -> TargetState:
    return TargetState(Target("r1", "replica", "127.0.0.1", 1), TargetBudget("r1", 10))


def test_many_failed_connects_make_one_warning_and_one_counted_change(
    caplog: pytest.LogCaptureFixture,
):
    state = replica()
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        changes = [
            set_target_health(state, False, cause="cannot connect: refused", log=LOG)
            for _ in range(25)
        ]
    assert changes == [True] + [False] * 24
    assert not state.is_healthy
    assert (state.went_unhealthy_total, state.went_healthy_total) == (1, 0)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "target r1 is now unhealthy: cannot connect: refused")
    ]


def test_coming_back_is_one_more_warning_and_counted_the_other_way(
    caplog: pytest.LogCaptureFixture,
):
    state = replica()
    set_target_health(state, False, cause="refused", log=LOG)
    down_at = state.health_changed_at
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        set_target_health(state, True, cause="the health check passed", log=LOG)
        set_target_health(state, True, cause="the health check passed", log=LOG)
    assert state.is_healthy and state.health_changed_at >= down_at
    assert (state.went_unhealthy_total, state.went_healthy_total) == (1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "target r1 is now healthy: the health check passed"
    ]
