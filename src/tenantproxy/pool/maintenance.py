"""The maintenance loop: one ``Pool.maintain`` pass per pool every interval.

A pass closes backends idle past idle_timeout_s (down to min_idle) and warms pools up to
min_idle; see ``Pool.maintain``. One loop serves every pool, so it costs one task in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from tenantproxy.pool.pool import Pool

logger = logging.getLogger(__name__)


async def run_maintenance(
    pools: Callable[[], Iterable[Pool[Any]]], interval_s: float, stop: asyncio.Event
) -> None:
    """Calls ``maintain()`` on each pool ``pools()`` lists, every interval_s, until ``stop``."""
    while not stop.is_set():
        for pool in list(pools()):
            if stop.is_set():
                return
            if pool.is_closed:
                continue
            try:
                await pool.maintain()
            except Exception:
                # One pool's trouble must not stop the others' maintenance.
                logger.exception("maintenance of pool %r failed", pool.name)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await stop.wait()
