"""What one load test run does: its options, and the run-time forms Locust accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoadTestOptions:
    """What one run does; defaults are the write-up's suggested start."""

    users: int = 1000
    spawn_rate: float = 10.0
    run_time_s: int = 180
    workers: int = 0
    web: bool = False
    report_dir: Path = Path("loadtest-reports")
    state_dir: Path = Path(".tenantproxy")
    wait_min_s: float = 5.0
    wait_max_s: float = 9.0
    sample_interval_s: float = 5.0
    tenants: int | None = None  # None: the stack's
    stop_timeout_s: int = 10
    # Share of the requests traced end to end, decided by Locust; None: the stack's
    # trace_sample_ratio.
    trace_sample_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.users < 1 or self.spawn_rate <= 0 or self.run_time_s < 1:
            raise ValueError("users, spawn rate and run time must be positive")
        if self.workers < 0:
            raise ValueError("workers must be 0 (no master/worker mode) or more")
        if self.sample_interval_s <= 0:
            raise ValueError("the sample interval must be positive")
        if self.trace_sample_ratio is not None and not 0 <= self.trace_sample_ratio <= 1:
            raise ValueError("the trace sample ratio must be between 0 and 1")


def parse_run_time(text: str) -> int:
    """``"3m"``, ``"1h30m"``, ``"90s"`` or ``"90"`` → seconds (Locust's --run-time forms)."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        match = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", value)
        if not match or not any(match.groups()):
            raise ValueError(f"bad run time {text!r}: use e.g. 180, 90s, 3m or 1h30m")
        hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds < 1:
        raise ValueError(f"bad run time {text!r}: at least one second")
    return seconds
