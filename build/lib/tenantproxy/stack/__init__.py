"""The local stack: MariaDB clusters, GTID replication, the seeded tenants, the proxy.

``tenantproxy stack up | status | down`` call :func:`up`, :func:`status` and :func:`down`.
"""

from tenantproxy.stack.settings import StackSettings, load_stack_settings
from tenantproxy.stack.stack import UpResult, down, print_outputs, print_status, status, up

__all__ = [
    "StackSettings",
    "UpResult",
    "down",
    "load_stack_settings",
    "print_outputs",
    "print_status",
    "status",
    "up",
]
