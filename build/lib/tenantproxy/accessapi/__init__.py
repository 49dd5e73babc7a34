"""The access API: the write-up's API Gateway stages and Lambda access function, as one process.

It is a client of the proxy like any application: it reaches it over the wire only.
"""

from tenantproxy.accessapi.api import build_access_api
from tenantproxy.accessapi.config import (
    AccessApiConfig,
    config_from_mapping,
    load_access_api_config,
)
from tenantproxy.accessapi.metrics import AccessApiMetrics, StageMetrics
from tenantproxy.accessapi.server import run_access_api

__all__ = [
    "AccessApiConfig",
    "AccessApiMetrics",
    "StageMetrics",
    "build_access_api",
    "config_from_mapping",
    "load_access_api_config",
    "run_access_api",
]
