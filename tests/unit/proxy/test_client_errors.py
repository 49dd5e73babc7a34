"""The per-client error log: one line each, a bounded number per window, all of them counted."""

from __future__ import annotations

import logging

import pytest

from tenantproxy.observability.metrics import Metrics
from tenantproxy.proxy.client_errors import ClientErrorLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def error_log(caplog: pytest.LogCaptureFixture, clock: Clock) -> tuple[ClientErrorLog, Metrics]:
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    log = ClientErrorLog(
        logging.getLogger("test.client-errors"),
        metrics,
        lines_per_window=3,
        window_s=10,
        clock=clock,
    )
    return log, metrics


def test_a_flood_of_client_errors_writes_a_few_lines_and_counts_them_all(caplog, clock):
    log, metrics = error_log(caplog, clock)
    for session_id in range(1000):
        log.report(session_id, "bad handshake: garbage")
    assert [r.getMessage() for r in caplog.records] == [
        "session 0: bad handshake: garbage",
        "session 1: bad handshake: garbage",
        "session 2: bad handshake: garbage",
    ]
    assert metrics.snapshot()["ClientErrors"] == 1000
    assert metrics.snapshot()["ClientErrorsNotLogged"] == 997


def test_the_next_window_says_how_many_lines_were_left_out(caplog, clock):
    log, _ = error_log(caplog, clock)
    for session_id in range(5):
        log.report(session_id, "login not finished by login_timeout_s")
    clock.now += 10
    log.report(9, "bad handshake: garbage")
    assert [r.getMessage() for r in caplog.records][-2:] == [
        "2 more client errors in the last 10 s were not logged (rate limit)",
        "session 9: bad handshake: garbage",
    ]


def test_an_unexpected_exception_is_one_line_naming_where_it_was_raised(caplog, clock):
    log, _ = error_log(caplog, clock)
    try:
        (300).to_bytes(1, "little")
    except OverflowError as exc:
        log.unexpected(7, exc)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith(
        "session 7: closed after an unexpected OverflowError at test_client_errors.py:"
    )
