"""The Locust user's settings, handed from the runner to Locust's processes by environment.

Standard library only: the locustfile imports it inside Locust's (gevent-patched) processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WAIT_MIN_ENV = "TENANTPROXY_WAIT_MIN_S"
WAIT_MAX_ENV = "TENANTPROXY_WAIT_MAX_S"
TENANTS_ENV = "TENANTPROXY_TENANTS"
TRACE_RATIO_ENV = "TENANTPROXY_TRACE_SAMPLE_RATIO"
SPANS_DIR_ENV = "TENANTPROXY_SPANS_DIR"


@dataclass(frozen=True)
class UserSettings:
    """The write-up's user: waits 5-9 s between calls, over tenants 0..tenants-1."""

    wait_min_s: float = 5.0
    wait_max_s: float = 9.0
    tenants: int = 200
    # Requests Locust traces (its span, and a sampled ``traceparent`` header; the others get an
    # unsampled one): the share, and the folder of its ``locust-<pid>.jsonl`` files; no folder,
    # no spans and no header.
    trace_sample_ratio: float = 0.0
    spans_dir: str = ""

    def __post_init__(self) -> None:
        if self.wait_min_s < 0 or self.wait_max_s < self.wait_min_s:
            raise ValueError(
                f"wait times must satisfy 0 <= min <= max, got {self.wait_min_s}, {self.wait_max_s}"
            )
        if self.tenants < 1:
            raise ValueError(f"tenants must be at least 1, got {self.tenants}")
        if not 0.0 <= self.trace_sample_ratio <= 1.0:
            raise ValueError(f"trace sample ratio must be in [0, 1], got {self.trace_sample_ratio}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> UserSettings:
        defaults = cls()
        try:
            return cls(
                wait_min_s=float(environ.get(WAIT_MIN_ENV, defaults.wait_min_s)),
                wait_max_s=float(environ.get(WAIT_MAX_ENV, defaults.wait_max_s)),
                tenants=int(environ.get(TENANTS_ENV, defaults.tenants)),
                trace_sample_ratio=float(environ.get(TRACE_RATIO_ENV, defaults.trace_sample_ratio)),
                spans_dir=environ.get(SPANS_DIR_ENV, defaults.spans_dir),
            )
        except ValueError as exc:
            raise ValueError(f"bad load-test user settings in the environment: {exc}") from None

    def to_environ(self) -> dict[str, str]:
        return {
            WAIT_MIN_ENV: repr(self.wait_min_s),
            WAIT_MAX_ENV: repr(self.wait_max_s),
            TENANTS_ENV: str(self.tenants),
            TRACE_RATIO_ENV: repr(self.trace_sample_ratio),
            SPANS_DIR_ENV: self.spans_dir,
        }
