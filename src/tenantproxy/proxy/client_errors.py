"""What one client did wrong, in the log: one line each, no traceback, and a bounded number of
lines however many clients misbehave.

Every report counts in ``ClientErrors``. Past ``lines_per_window`` lines in a window of
``window_s``, reports are counted in ``ClientErrorsNotLogged`` instead of written, and the first
line of the next window says how many were left out. A flood of bad clients therefore costs the
log a few lines per window, and the metrics still tell how many there were.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tenantproxy.observability.metrics import Metrics

LINES_PER_WINDOW = 20
WINDOW_S = 10.0


class ClientErrorLog:
    """The proxy's log for per-client trouble (bad handshakes, timeouts, broken TLS, refused
    logins, packets that break the protocol)."""

    def __init__(
        self,
        log: logging.Logger,
        metrics: Metrics,
        *,
        lines_per_window: int = LINES_PER_WINDOW,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._metrics = metrics
        self._lines_per_window = lines_per_window
        self._window_s = window_s
        self._clock = clock
        self._window_ends_at = clock() + window_s
        self._lines_written = 0
        self._not_logged = 0

    def report(self, session_id: int, message: str, *, level: int = logging.INFO) -> None:
        """``message`` says what happened to session ``session_id``; it must hold no secret."""
        self._metrics.count("ClientErrors")
        if not self._may_write():
            self._not_logged += 1
            self._metrics.count("ClientErrorsNotLogged")
            return
        self._log.log(level, "session %d: %s", session_id, message)

    def unexpected(self, session_id: int, exc: BaseException) -> None:
        """An exception no handler expected: a defect of the proxy that a client's bytes reached.
        One line, naming the exception and where it was raised, instead of a traceback."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        message = f"closed after an unexpected {type(exc).__name__}{where}: {exc}"
        self.report(session_id, message, level=logging.WARNING)

    def _may_write(self) -> bool:
        now = self._clock()
        if now >= self._window_ends_at:
            if self._not_logged:
                self._log.warning(
                    "%d more client errors in the last %.0f s were not logged (rate limit)",
                    self._not_logged,
                    self._window_s + now - self._window_ends_at,
                )
            self._window_ends_at = now + self._window_s
            self._lines_written = self._not_logged = 0
        if self._lines_written >= self._lines_per_window:
            return False
        self._lines_written += 1
        return True
