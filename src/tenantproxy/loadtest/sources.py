"""The sampler's sources for a running stack, built from its outputs.json."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pymysql

from tenantproxy.loadtest.sampler import (
    STATUS_VARIABLES,
    DatabaseSource,
    ProxySource,
    Source,
    StagesSource,
)
from tenantproxy.stack.mariadb import connect
from tenantproxy.stack.outputs import read_admin_credentials

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 3.0
# A sampler stuck on one slow instance would blur every series: bound each status query.
STATUS_READ_TIMEOUT_S = 3
PID_FILE = "mysqld.pid"
_STATUS_QUERY = "SHOW GLOBAL STATUS WHERE Variable_name IN ({})".format(
    ", ".join(f"'{name}'" for name in STATUS_VARIABLES)
)


class AdminStatusConnection:
    """One admin connection to an instance, kept open for the run."""

    def __init__(self, connection: pymysql.connections.Connection[Any]) -> None:
        self._connection = connection

    def show_global_status(self) -> dict[str, float]:
        with self._connection.cursor() as cursor:
            cursor.execute(_STATUS_QUERY)
            rows = cursor.fetchall()
        return {str(name): float(value) for name, value in rows}

    def close(self) -> None:
        self._connection.close()


def stages_source(url: str) -> StagesSource:
    client = _http_client()

    def fetch() -> Mapping[str, Any]:
        response = client.get(url)
        response.raise_for_status()
        data: Mapping[str, Any] = response.json()
        return data

    return StagesSource(fetch, close=client.close)


def proxy_metrics_url(endpoint: str) -> str:
    """``127.0.0.1:9100`` or a full URL → the URL of the Prometheus text."""
    url = endpoint if "://" in endpoint else f"http://{endpoint}"
    _, _, rest = url.partition("://")
    return url if "/" in rest else f"{url}/metrics"


def proxy_source(url: str) -> ProxySource:
    client = _http_client()

    def fetch() -> str:
        response = client.get(url)
        response.raise_for_status()
        return response.text

    return ProxySource(fetch, close=client.close)


def database_sources(outputs: Mapping[str, Any], state_dir: Path) -> list[Source]:
    admin = read_admin_credentials(Path(outputs["AdminCredentials"]))
    ca_file = Path(outputs["CACertificate"]) if outputs.get("CACertificate") else None
    base_dir = Path(outputs.get("StateDir") or state_dir)
    sources: list[Source] = []
    for key in ("ProxyClusterInstances", "NoProxyClusterInstances"):
        for instance in outputs.get(key) or []:
            port = int(str(instance["endpoint"]).rsplit(":", 1)[1])

            def connect_instance(port: int = port) -> AdminStatusConnection:
                return AdminStatusConnection(
                    connect(port, admin, ca_file, read_timeout=STATUS_READ_TIMEOUT_S)
                )

            pid_file = base_dir / instance["name"] / PID_FILE
            sources.append(DatabaseSource(instance["name"], connect_instance, pid_file))
    return sources


def build_sources(outputs: Mapping[str, Any], state_dir: Path) -> list[Source]:
    """Stages (access API), every database instance, and the proxy when it exposes metrics."""
    sources: list[Source] = []
    api_url = outputs.get("APIGatewayURL")
    if api_url:
        sources.append(stages_source(f"{str(api_url).rstrip('/')}/metrics.json"))
    sources += database_sources(outputs, state_dir)
    metrics_endpoint = outputs.get("ProxyMetricsEndpoint")
    if metrics_endpoint:
        sources.append(proxy_source(proxy_metrics_url(str(metrics_endpoint))))
    else:
        log.info("outputs.json has no ProxyMetricsEndpoint: the proxy is not sampled")
    return sources


def _http_client() -> httpx.Client:
    # trust_env=False: the stack is on loopback; a proxy from the environment must not apply.
    return httpx.Client(timeout=HTTP_TIMEOUT_S, trust_env=False)
