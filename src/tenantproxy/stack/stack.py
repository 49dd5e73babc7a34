"""``stack up | status | down``: the orchestration, step by step.

``up`` builds two clusters, ``proxy`` and ``noproxy`` (each a writer and ``replicas`` replicas),
seeds both identically, stores one secret per tenant, writes the proxy's config and starts it.
Any failure stops what was started, removes the state dir and names the step and the cause.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenantproxy.errors import StackError
from tenantproxy.secretstore import FileSecretStore, Secret
from tenantproxy.stack import access_api, mariadb, outputs, pam_login, replication, seeding
from tenantproxy.stack.certificates import CertificateFiles, create_certificates
from tenantproxy.stack.identity_service import (
    NOPROXY_RESOURCE_ID,
    IdentityPlan,
    identity_outputs,
    proxy_iam_auth,
    write_identity_files,
)
from tenantproxy.stack.mariadb import AdminAccount, InstanceSpec, ServerOptions
from tenantproxy.stack.processes import (
    ProcessRecord,
    free_ports,
    is_ours,
    start_detached,
    stop,
    wait_for_port,
)
from tenantproxy.stack.settings import StackSettings
from tenantproxy.stack.state import StackState, read_outputs

T = TypeVar("T")
PROXY_PROCESS = "proxy"
IDENTITY_PROCESS = "identity"
SECRET_PREFIX = "tenants/"


@dataclass(frozen=True)
class UpResult:
    outputs: dict[str, Any]
    was_running: bool


@dataclass(frozen=True)
class ProcessStatus:
    record: ProcessRecord
    is_alive: bool


def plan_clusters(settings: StackSettings, state_dir: Path) -> dict[str, list[InstanceSpec]]:
    names = ["proxy", "noproxy"] if settings.load_test else ["proxy"]
    ports = iter(free_ports(len(names) * (1 + settings.replicas)))
    clusters: dict[str, list[InstanceSpec]] = {}
    for number, cluster in enumerate(names):
        specs = []
        for member in range(1 + settings.replicas):
            role: mariadb.Role = "writer" if member == 0 else "replica"
            name = f"{cluster}-writer" if member == 0 else f"{cluster}-replica{member}"
            server_id = 100 * number + member + 1
            specs.append(
                InstanceSpec(cluster, name, role, server_id, next(ports), state_dir / name)
            )
        clusters[cluster] = specs
    return clusters


def up(settings: StackSettings, console: Console) -> UpResult:
    state_dir = settings.state_dir.absolute()
    running = _existing_stack(state_dir)
    if running is not None:
        console.print(f"The stack in {state_dir} is already up: every process is running.")
        return UpResult(running, was_running=True)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = StackState.create(state_dir, settings=settings.model_dump(mode="json"))
    builder = _StackBuilder(settings.model_copy(update={"state_dir": state_dir}), state, console)
    try:
        return UpResult(builder.build(), was_running=False)
    except BaseException as exc:
        console.print(f"[red]stack up failed during: {builder.step}; stopping what it started")
        _stop_all(state.processes, settings.stop_timeout_s)
        pam_login.remove_pam_service(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
        if isinstance(exc, Exception):
            raise StackError(f"stack up failed during: {builder.step}\n{exc}") from None
        raise


def _existing_stack(state_dir: Path) -> dict[str, Any] | None:
    """The outputs of a running stack; None when there is none; StackError if half-dead."""
    if not state_dir.exists():
        return None
    state = StackState.load(state_dir)
    if state is None:
        if any(state_dir.iterdir()):
            raise StackError(
                f"{state_dir} exists and holds no stack (no state.json): "
                "remove it or choose another --state-dir"
            )
        return None
    dead = [record for record in state.processes if not is_ours(record)]
    if dead:
        names = ", ".join(f"{r.name} (pid {r.pid}, port {r.port})" for r in dead)
        raise StackError(
            f"The stack in {state_dir} is partly down; not running: {names}.\n"
            "Run `tenantproxy stack down` first, then `tenantproxy stack up`."
        )
    found = read_outputs(state_dir)
    if found is None:
        raise StackError(
            f"The stack in {state_dir} is incomplete (an earlier `up` did not finish).\n"
            "Run `tenantproxy stack down` first, then `tenantproxy stack up`."
        )
    return found


class _StackBuilder:
    """The steps of ``up``; ``step`` names the one running, for error messages."""

    def __init__(self, settings: StackSettings, state: StackState, console: Console) -> None:
        self.settings = settings
        self.state = state
        self.console = console
        self.files = outputs.StackFiles(settings.state_dir)
        self.admin = AdminAccount.generate()
        self.step = "preparing"
        # Token login checked by the no-proxy cluster's MariaDB (pam_login.py), or None.
        self.pam_service = (
            pam_login.new_service_name()
            if settings.load_test and settings.noproxy_auth == "token"
            else None
        )

    @contextmanager
    def _step(self, description: str) -> Iterator[None]:
        self.step = description
        started = time.monotonic()
        yield
        self.console.print(f"[green]✓[/] {description} ({time.monotonic() - started:.1f} s)")

    def build(self) -> dict[str, Any]:
        settings = self.settings
        started = time.monotonic()
        with self._step("creating the CA and the server certificate"):
            certs = create_certificates(self.files.certificates)
            outputs.write_admin_credentials(self.files.admin_credentials, self.admin)
        clusters = plan_clusters(settings, settings.state_dir)
        instances = [spec for specs in clusters.values() for spec in specs]
        identity_port, metrics_port, checker_port, *ports = free_ports(5)
        if self.pam_service is not None:
            with self._step(f"installing the PAM service {self.pam_service}"):
                pam_login.install_pam_service(settings.state_dir, self.pam_service, checker_port)
        with self._step(f"starting {len(instances)} MariaDB instance(s)"):
            options = ServerOptions(
                certs,
                settings.max_allowed_packet_mb,
                settings.mariadb_max_connections,
                pam_login.SERVER_OPTIONS if self.pam_service is not None else (),
            )
            _in_parallel([partial(self._start_instance, s, options) for s in instances])
        with self._step("starting GTID replication"):
            _in_parallel(
                [
                    partial(replication.start_replica, r, specs[0], self.admin)
                    for specs in clusters.values()
                    for r in specs[1:]
                ]
            )
        tenants = seeding.make_tenants(settings.tenants)
        with self._step(f"seeding {settings.tenants} tenants x {settings.rows} rows"):
            self._seed(clusters, tenants)
        with self._step("writing the secret store"):
            self._write_secrets(clusters["proxy"][0], tenants)
        identity = IdentityPlan.generate(settings.account_id, settings.region, identity_port)
        with self._step("starting the identity service"):
            self._start_identity(identity)
        if self.pam_service is not None:
            with self._step("starting the no-proxy cluster's db-login checker"):
                self._start_checker(identity, clusters["noproxy"], checker_port)
        proxy_ports = dict(zip(("read_write", "read_only"), ports, strict=True))
        with self._step("writing the proxy config"):
            self._write_proxy_config(clusters["proxy"], proxy_ports, certs, identity, metrics_port)
        proxy_pid = None
        if settings.start_proxy:
            with self._step("starting the proxy"):
                proxy_pid = self._start_proxy(proxy_ports)
        with self._step("waiting for the replicas to catch up"):
            self._wait_replicas(clusters)
        endpoints = {role: f"{mariadb.HOST}:{port}" for role, port in proxy_ports.items()}
        result = outputs.build_outputs(self.files, certs.ca_cert, endpoints, clusters, proxy_pid)
        result |= identity_outputs(identity, self.files.access_principal_credentials)
        result["ProxyMetricsEndpoint"] = f"http://{mariadb.HOST}:{metrics_port}/metrics"
        result["NoProxyAuth"] = settings.noproxy_auth if settings.load_test else None
        result["NoProxyResourceId"] = NOPROXY_RESOURCE_ID if settings.load_test else None
        result["NoProxyPamService"] = self.pam_service
        result["APIGatewayURL"] = None
        if settings.load_test:
            with self._step("starting the access API"):
                result["APIGatewayURL"] = self._start_access_api(result)
        outputs.write_outputs(self.files, result)
        self.console.print(f"Stack up in {time.monotonic() - started:.1f} s: {self.files.outputs}")
        return result

    def _start_instance(self, spec: InstanceSpec, options: ServerOptions) -> None:
        mariadb.install(spec)
        record = start_detached(
            spec.name, mariadb.server_argv(spec, options), spec.log_file, port=spec.port
        )
        self.state.add(record)
        mariadb.wait_ready(spec, record, self.settings.startup_timeout_s)
        mariadb.create_admin(spec, self.admin)

    def _seed(self, clusters: dict[str, list[InstanceSpec]], tenants: list[seeding.Tenant]) -> None:
        data_seed = random.SystemRandom().randrange(2**31)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=self.console) as progress:
            jobs = []
            for cluster, specs in clusters.items():
                task = progress.add_task(f"seeding {cluster}", total=len(tenants))

                def advance(_tenant: seeding.Tenant, task: Any = task) -> None:
                    progress.advance(task)

                pam = self.pam_service if cluster == "noproxy" else None
                jobs.append(
                    lambda w=specs[0], a=advance, pam=pam: seeding.seed(
                        w, self.admin, tenants, self.settings.rows, data_seed, a, pam
                    )
                )
            _in_parallel(jobs)

    def _write_secrets(self, writer: InstanceSpec, tenants: list[seeding.Tenant]) -> None:
        key = FileSecretStore.generate_key()
        FileSecretStore.write_key_file(self.files.secrets_key, key)
        store = FileSecretStore(self.files.secret_store, key)
        store.put_many(
            {
                f"{SECRET_PREFIX}{t.user}": Secret(
                    username=t.user,
                    password=t.password,
                    host=mariadb.HOST,
                    port=writer.port,
                    dbname=t.database,
                    extra={
                        "dbClusterIdentifier": writer.cluster,
                        "iam_auth": self.settings.iam_auth,
                    },
                )
                for t in tenants
            }
        )

    def _start_identity(self, plan: IdentityPlan) -> None:
        files = self.files
        write_identity_files(
            plan, files.identity_config, files.identity_key, files.access_principal_credentials
        )
        program = Path(sys.executable).parent / "tenantproxy"
        argv = [str(program), "identity", "run", "--config", str(files.identity_config)]
        record = start_detached(IDENTITY_PROCESS, argv, files.identity_log, port=plan.port)
        self.state.add(record)
        wait_for_port(record, self.settings.startup_timeout_s)

    def _start_checker(
        self, identity: IdentityPlan, cluster: Sequence[InstanceSpec], port: int
    ) -> None:
        config_file = self.settings.state_dir / "dblogin.toml"
        pam_login.write_checker_config(
            config_file,
            port=port,
            key_file=self.files.identity_key,
            region=identity.region,
            account_id=identity.account_id,
            resource_id=NOPROXY_RESOURCE_ID,
            instances=cluster,
        )
        argv = pam_login.checker_argv(config_file)
        log_file = self.settings.state_dir / "dblogin.log"
        record = start_detached(pam_login.CHECKER_PROCESS, argv, log_file, port=port)
        self.state.add(record)
        wait_for_port(record, self.settings.startup_timeout_s)

    def _write_proxy_config(
        self,
        cluster: Sequence[InstanceSpec],
        ports: dict[str, int],
        certs: CertificateFiles,
        identity: IdentityPlan,
        metrics_port: int,
    ) -> None:
        s = self.settings
        config = {
            "secret_name_prefix": SECRET_PREFIX,
            "require_tls": s.require_tls,
            "tls_cert_file": str(certs.server_cert),
            "tls_key_file": str(certs.server_key),
            "monitor_user": self.admin.user,
            "monitor_password": self.admin.password,
            "max_connections_percent": s.max_connections_percent,
            "max_idle_connections_percent": s.max_idle_connections_percent,
            "connection_borrow_timeout_s": s.connection_borrow_timeout_s,
            "target_max_connections": s.mariadb_max_connections,
            "max_packet_bytes": s.max_allowed_packet_mb * 1024 * 1024,
            "iam_auth": proxy_iam_auth(identity, self.files.identity_key),
            "metrics_port": metrics_port,
            **({"workers": s.proxy_workers} if s.proxy_workers is not None else {}),
            "tracing": outputs.tracing_table(
                s.trace_sample_ratio, s.otlp_endpoint, self.files.traces_dir, "proxy"
            ),
            "secret_store": {
                "kind": "file",
                "path": str(self.files.secret_store),
                "key_file": str(self.files.secrets_key),
            },
            "endpoints": [
                {"name": role, "role": role, "host": mariadb.HOST, "port": port}
                for role, port in ports.items()
            ],
            "targets": [
                {"name": i.name, "role": i.role, "host": mariadb.HOST, "port": i.port}
                for i in cluster
            ],
        }
        outputs.write_proxy_config(self.files.proxy_config, config)

    def _start_proxy(self, ports: dict[str, int]) -> int:
        program = Path(sys.executable).parent / "tenantproxy"
        argv = [str(program), "proxy", "run", "--config", str(self.files.proxy_config)]
        record = start_detached(PROXY_PROCESS, argv, self.files.proxy_log, port=ports["read_write"])
        self.state.add(record)
        wait_for_port(record, self.settings.startup_timeout_s)
        other = ProcessRecord(
            record.name, record.pid, record.cmdline, ports["read_only"], record.log_file, 0.0
        )
        wait_for_port(other, self.settings.startup_timeout_s)
        return record.pid

    def _start_access_api(self, stack_outputs: dict[str, Any]) -> str:
        (port,) = free_ports(1)
        config = access_api.access_api_config(self.settings, stack_outputs, port)
        access_api.write_access_api_config(self.files.access_api_config, config)
        argv = access_api.access_api_argv(self.files)
        record = start_detached(
            access_api.ACCESS_API_PROCESS, argv, self.files.access_api_log, port=port
        )
        self.state.add(record)
        wait_for_port(record, self.settings.startup_timeout_s)
        return access_api.api_gateway_url(port)

    def _wait_replicas(self, clusters: dict[str, list[InstanceSpec]]) -> None:
        jobs: list[Callable[[], object]] = []
        for specs in clusters.values():
            position = replication.writer_position(specs[0], self.admin)
            jobs += [
                partial(
                    replication.wait_caught_up,
                    r,
                    position,
                    self.admin,
                    self.settings.startup_timeout_s,
                )
                for r in specs[1:]
            ]
        _in_parallel(jobs)


def _in_parallel(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Runs every job in its own thread; waits for all; raises the first error."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures: list[Future[T]] = [pool.submit(job) for job in jobs]
        wait_all(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]


def _stop_all(records: Sequence[ProcessRecord], timeout_s: float) -> None:
    """The proxy first (it would log its targets' disappearance), then the databases together."""
    proxies = [r for r in records if r.name == PROXY_PROCESS]
    for record in proxies:
        stop(record, timeout_s)
    _in_parallel([partial(stop, r, timeout_s) for r in records if r.name != PROXY_PROCESS])


def status(state_dir: Path) -> tuple[list[ProcessStatus], dict[str, Any] | None]:
    state_dir = state_dir.absolute()
    state = StackState.load(state_dir)
    if state is None:
        raise StackError(f"no stack in {state_dir} (no state.json)")
    processes = [ProcessStatus(r, is_ours(r)) for r in state.processes]
    return processes, read_outputs(state_dir)


def print_status(
    console: Console, processes: Sequence[ProcessStatus], found: dict[str, Any] | None
) -> None:
    table = Table("process", "pid", "port", "state")
    for item in processes:
        alive = "[green]alive" if item.is_alive else "[red]dead"
        table.add_row(item.record.name, str(item.record.pid), str(item.record.port or ""), alive)
    console.print(table)
    if found is None:
        console.print("[yellow]no outputs.json: the stack is incomplete")
    else:
        print_outputs(console, found)


def print_outputs(console: Console, found: dict[str, Any]) -> None:
    table = Table("output", "value")
    for key in outputs.OUTPUT_KEYS:
        value = found.get(key)
        if isinstance(value, list):
            value = ", ".join(v["endpoint"] if isinstance(v, dict) else str(v) for v in value)
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


def down(state_dir: Path, console: Console, timeout_s: float = 30.0) -> None:
    """Stops every process recorded in state.json (by PID) and removes the state dir."""
    state_dir = state_dir.absolute()
    if not state_dir.exists():
        console.print(f"No stack in {state_dir}: nothing to do.")
        return
    state = StackState.load(state_dir)
    if state is None:
        if any(state_dir.iterdir()):
            raise StackError(f"{state_dir} holds no stack (no state.json): not removing it")
        state_dir.rmdir()
        return
    started = time.monotonic()
    _stop_all(state.processes, timeout_s)
    pam_login.remove_pam_service(state_dir)
    survivors = [r.name for r in state.processes if is_ours(r)]
    if survivors:
        raise StackError(f"still running after SIGKILL: {', '.join(survivors)}")
    shutil.rmtree(state_dir)
    count = len(state.processes)
    console.print(
        f"Stopped {count} processes, removed {state_dir} ({time.monotonic() - started:.1f} s)"
    )
