"""A generic asyncio connection pool; it knows nothing of MySQL, only a ``Connector``.

Pools are per (target, db user); the pools on one target share a ``TargetBudget``.
"""

from tenantproxy.pool.budget import TargetBudget
from tenantproxy.pool.connector import Connector
from tenantproxy.pool.lease import Lease
from tenantproxy.pool.maintenance import run_maintenance
from tenantproxy.pool.pool import Pool, PoolStats
from tenantproxy.pool.states import ALLOWED_TRANSITIONS, BackendState

__all__ = [
    "ALLOWED_TRANSITIONS",
    "BackendState",
    "Connector",
    "Lease",
    "Pool",
    "PoolStats",
    "TargetBudget",
    "run_maintenance",
]
