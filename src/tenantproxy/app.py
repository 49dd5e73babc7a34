"""The composition root: config → secret store → targets and pools → the proxy server.

The one place that builds concrete objects and wires them together.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import sys
from pathlib import Path

import uvloop

from tenantproxy.config import (
    AwsSecretStoreConfig,
    FileSecretStoreConfig,
    ProxyConfig,
    describe_setting_error,
    load_proxy_config,
)
from tenantproxy.errors import (
    BackendError,
    ConfigError,
    SecretStoreError,
    SettingError,
    TenantProxyError,
)
from tenantproxy.identity import DbAuthTokenVerifier
from tenantproxy.identity.sealing import load_key
from tenantproxy.observability.tracing import start_tracing
from tenantproxy.pool import TargetBudget
from tenantproxy.proxy import tls
from tenantproxy.proxy.backends import (
    BackendCredentials,
    BackendProfile,
    Target,
)
from tenantproxy.proxy.connector import MysqlConnector
from tenantproxy.proxy.coordination import Coordinator
from tenantproxy.proxy.health import HealthChecker
from tenantproxy.proxy.link import Link
from tenantproxy.proxy.login_trace import SERVICE_NAME as LOGIN_TRACE_SERVICE
from tenantproxy.proxy.routing import PoolRegistry, PoolSettings, Router, TargetState
from tenantproxy.proxy.secret_lookup import SecretLookup
from tenantproxy.proxy.server import ProxyContext, ProxyServer
from tenantproxy.proxy.tenant_backends import TenantBackendSlots
from tenantproxy.proxy.token_login import TokenLogins
from tenantproxy.proxy.workers import SINGLE, WorkerPlace, bind, run_workers
from tenantproxy.secretstore import AwsSecretStore, FileSecretStore, SecretStore

READY_LINE = "tenantproxy ready"


def build_proxy(
    config: ProxyConfig,
    log: logging.Logger,
    place: WorkerPlace = SINGLE,
    link: Link | None = None,
) -> ProxyServer:
    """Builds a proxy server from its config (one worker's, at ``place``, with its ``link`` to
    the coordinator); nothing is started yet."""
    secrets = SecretLookup(open_secret_store(config), config.secret_name_prefix, log)
    backend_tls = _backend_tls(config)
    tenant_slots = None
    if link is not None and config.max_backends_per_tenant is not None:
        tenant_slots = TenantBackendSlots(link)
    states = [
        TargetState(
            Target(t.name, t.role, t.host, t.port),
            TargetBudget(t.name, place.share(_budget(config, config.target_max_connections))),
        )
        for t in config.targets
    ]
    pools = PoolRegistry(
        PoolSettings(
            max_connections_percent=config.max_connections_percent,
            max_idle_connections_percent=config.max_idle_connections_percent,
            borrow_timeout_s=config.connection_borrow_timeout_s,
            idle_timeout_s=config.backend_idle_timeout_s,
            min_idle=config.pool_min_idle,
            max_backends_per_tenant=config.max_backends_per_tenant,
        ),
        connector_factory=lambda target, db_user, profile: _connector(
            config, secrets, backend_tls, target, db_user, profile, tenant_slots
        ),
    )
    client_tls = _client_tls(config)
    token_hosts = {h.lower() for h in config.iam_auth.endpoint_hosts} if config.iam_auth else set()
    context = ProxyContext(
        config=config,
        router=Router(states),
        pools=pools,
        secrets=secrets,
        client_tls_context=client_tls,
        log=log,
        token_logins=_token_logins(config, token_hosts),
        token_hosts=token_hosts,
        tracing=start_tracing(
            LOGIN_TRACE_SERVICE,
            sample_ratio=config.tracing.sample_ratio,
            spans_file=config.tracing.spans_file,
            otlp_endpoint=config.tracing.otlp_endpoint,
        ),
        place=place,
        link=link,
    )
    monitor = None
    if config.monitor_user is not None:
        monitor = BackendCredentials(config.monitor_user, config.monitor_password or "")
    health = HealthChecker(
        states,
        monitor,
        tls_context=backend_tls,
        max_connections_percent=config.max_connections_percent,
        log=log,
        share=place.share,
    )
    return ProxyServer(context, health)


def open_secret_store(config: ProxyConfig) -> SecretStore:
    """The secret store the config names; an AWS store serves the names under
    ``secret_name_prefix`` (and with its tag, when one is set)."""
    store = config.secret_store
    if isinstance(store, FileSecretStoreConfig):
        return _open_file_store(store)
    if isinstance(store, AwsSecretStoreConfig):
        return AwsSecretStore.from_config(store, config.secret_name_prefix)
    raise ConfigError(f"secret_store.kind = {store.kind!r} is not known")


def _open_file_store(config: FileSecretStoreConfig) -> FileSecretStore:
    """The file store, read once now: a missing file or a wrong key is a config error at start,
    not a proxy that refuses every login with 1045."""
    if not config.path.is_file():
        raise SettingError(("secret_store", "path"), f"{config.path}: no such file")
    key_loc = ("secret_store", "key_file" if config.key_file is not None else "key_env")
    try:
        store = FileSecretStore.from_config(config)
    except SecretStoreError as exc:
        raise SettingError(key_loc, str(exc)) from None
    try:
        store.list_names()
    except SecretStoreError as exc:
        raise SettingError(key_loc, str(exc)) from None
    except OSError as exc:
        raise SettingError(("secret_store", "path"), f"{config.path}: {exc.strerror}") from None
    return store


def _client_tls(config: ProxyConfig) -> ssl.SSLContext | None:
    cert_file, key_file = config.tls_cert_file, config.tls_key_file
    if cert_file is None or key_file is None:
        return None
    _check_readable("tls_cert_file", cert_file)
    _check_readable("tls_key_file", key_file)
    try:
        return tls.server_context(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        cause = f"{cert_file} and {key_file} are not a PEM certificate and its key: {exc}"
        raise SettingError(("tls_cert_file",), cause) from None


def _backend_tls(config: ProxyConfig) -> ssl.SSLContext | None:
    if not config.backend_tls:
        return None
    if config.backend_ca_file is not None:
        _check_readable("backend_ca_file", config.backend_ca_file)
    try:
        return tls.client_context(config.backend_ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise SettingError(("backend_ca_file",), f"not a PEM CA certificate: {exc}") from None


def _check_readable(key: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise SettingError((key,), f"{path}: {exc.strerror}") from None


def _token_logins(config: ProxyConfig, allowed_hosts: set[str]) -> TokenLogins | None:
    """Token login when the config has an iam_auth table. ``allowed_hosts`` is filled with the
    endpoints' addresses once they are bound (ports may be chosen by the OS)."""
    iam = config.iam_auth
    if iam is None:
        return None
    verifier = DbAuthTokenVerifier(
        sealing_key=load_key(iam.key_file),
        region=iam.region,
        account_id=iam.account_id,
        proxy_resource_id=iam.proxy_resource_id,
        allowed_hosts=allowed_hosts,
        clock_skew_s=iam.clock_skew_s,
    )
    return TokenLogins(verifier, iam.token_cache_size)


def _budget(config: ProxyConfig, max_connections: int) -> int:
    return max(1, max_connections * config.max_connections_percent // 100)


def _connector(
    config: ProxyConfig,
    secrets: SecretLookup,
    backend_tls: ssl.SSLContext | None,
    target: Target,
    db_user: str,
    profile: BackendProfile,
    tenant_slots: TenantBackendSlots | None,
) -> MysqlConnector:
    async def credentials() -> BackendCredentials:
        # Read at every connect, so that a rotated password is picked up.
        secret = await secrets.find(db_user)
        if secret is None:
            raise BackendError(f"no secret for {db_user!r}")
        return BackendCredentials(secret.username, secret.password, secret.dbname)

    return MysqlConnector(
        target,
        credentials,
        profile,
        forget_credentials=lambda: secrets.invalidate(db_user),
        tls_context=backend_tls,
        max_packet_bytes=config.max_packet_bytes,
        init_query=config.init_query,
        db_user=db_user,
        tenant_slots=tenant_slots,
    )


async def serve(config: ProxyConfig, log: logging.Logger) -> None:
    """Runs a proxy until SIGTERM or SIGINT, then shuts it down gracefully."""
    server = build_proxy(config, log)
    await server.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    _announce(server.bound_addresses)
    await server.serve()
    log.info("stopped")


def _announce(addresses: dict[str, tuple[str, int]]) -> None:
    listed = " ".join(f"{name}={h}:{p}" for name, (h, p) in addresses.items())
    print(f"{READY_LINE} {listed}", flush=True)


def serve_workers(config: ProxyConfig, log: logging.Logger) -> int:
    """``workers`` processes on the endpoints, coordinated by this one (proxy/workers.py)."""

    # Bound before anything starts, as a single process binds it: a port in use fails first.
    metrics = None
    if config.metrics_port is not None:
        metrics = bind("127.0.0.1", config.metrics_port, ("metrics_port",), is_shared=False)

    def coordinate(config: ProxyConfig, links: list[tuple[int, socket.socket]]) -> int:
        return uvloop.run(Coordinator(config, log, metrics).run(links, _announce))

    def work(config: ProxyConfig, place: WorkerPlace, link: socket.socket) -> int:
        # The coordinator serves the one /metrics endpoint.
        worker_config = config.model_copy(update={"metrics_port": None})
        try:
            uvloop.run(_serve_worker(worker_config, place, link, log))
        except SettingError:
            return 2  # the coordinator tells it, once, as a single process would
        return 0

    try:
        return run_workers(
            config, config.worker_count, work, coordinate, log, [metrics] if metrics else []
        )
    finally:
        if metrics is not None:
            metrics.close()


async def _serve_worker(
    config: ProxyConfig, place: WorkerPlace, sock: socket.socket, log: logging.Logger
) -> None:
    link = await Link.over(sock, {}, log)
    try:
        server = build_proxy(config, log, place, link)
    except SettingError as exc:
        link.tell("failed", loc=list(exc.loc), cause=exc.cause)
        await link.drain_and_close()
        raise
    link.handlers.update(server.context.link_handlers())
    reading = asyncio.create_task(link.run())
    reading.add_done_callback(lambda _: server.stop())  # the coordinator is gone: stop too
    try:
        await server.start()
    except SettingError as exc:
        link.tell("failed", loc=list(exc.loc), cause=exc.cause)
        await link.drain_and_close()
        raise
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.stop)
    link.tell("ready", addresses=server.bound_addresses)
    await server.serve()
    log.info("worker %d stopped", place.index)


def run_proxy(config_path: Path, log_level: str = "INFO") -> None:
    logging.basicConfig(
        level=log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = load_proxy_config(config_path)
    log = logging.getLogger("tenantproxy.proxy")
    try:
        if config.worker_count == 1:
            uvloop.run(serve(config, log))
        elif serve_workers(config, log) != 0:
            raise TenantProxyError("a worker process failed; the proxy stopped (see its log)")
    except SettingError as exc:
        # One line naming the file, the key and its line, and the cause; no traceback.
        raise ConfigError(describe_setting_error(config_path, exc.loc, exc.cause)) from None
