"""The local stack, for real: both clusters, TLS, replication, tenants, secrets, up/down."""

from __future__ import annotations

import json
import os
import signal
import socket
import uuid
from pathlib import Path
from typing import Any

import psutil
import pymysql
import pytest
from click.testing import CliRunner

from tenantproxy.cli import main as cli
from tenantproxy.config import FileSecretStoreConfig
from tenantproxy.errors import StackError
from tenantproxy.identity.access import TenantAccess
from tenantproxy.secretstore import FileSecretStore
from tenantproxy.stack import StackSettings, down, mariadb, status, up
from tenantproxy.stack.outputs import OUTPUT_KEYS
from tenantproxy.stack.state import StackState
from tests.integration.conftest import RunningStack, quiet_console

pytestmark = pytest.mark.integration


def instances(stack: RunningStack) -> list[dict[str, str]]:
    return stack.outputs["ProxyClusterInstances"] + stack.outputs["NoProxyClusterInstances"]


def writer_of(stack: RunningStack, key: str) -> str:
    return next(i["endpoint"] for i in stack.outputs[key] if i["role"] == "writer")


def query_one(connection: Any, sql: str, args: Any = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchone()


def test_every_instance_of_both_clusters_serves_tls(stack):
    assert len(instances(stack)) == 6
    for instance in instances(stack):
        with stack.admin_connect(instance["endpoint"]) as connection:
            _, cipher = query_one(connection, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            (read_only,) = query_one(connection, "SELECT @@GLOBAL.read_only")
        assert cipher, instance["name"]
        assert read_only == (instance["role"] == "replica"), instance["name"]


@pytest.mark.parametrize("cluster", ["ProxyClusterInstances", "NoProxyClusterInstances"])
def test_a_row_written_on_the_writer_reaches_every_replica(stack, cluster):
    marker = uuid.uuid4().hex
    with stack.admin_connect(writer_of(stack, cluster)) as writer:
        query_one(writer, "CREATE DATABASE IF NOT EXISTS replication_check")
        query_one(
            writer,
            "CREATE TABLE IF NOT EXISTS replication_check.t (marker VARCHAR(32) PRIMARY KEY)",
        )
        query_one(writer, "INSERT INTO replication_check.t VALUES (%s)", (marker,))
        (position,) = query_one(writer, "SELECT @@GLOBAL.gtid_binlog_pos")
    replicas = [i for i in stack.outputs[cluster] if i["role"] == "replica"]
    assert len(replicas) == 2
    for replica in replicas:
        with stack.admin_connect(replica["endpoint"]) as connection:
            # Waits for the replica's gtid_slave_pos to reach the writer's position (bounded).
            assert query_one(connection, "SELECT MASTER_GTID_WAIT(%s, 10)", (position,)) == (0,)
            found = query_one(
                connection, "SELECT marker FROM replication_check.t WHERE marker = %s", (marker,)
            )
        assert found == (marker,), replica["name"]


def tenant_connect(stack: RunningStack, host_port: str, user: str, database: str) -> Any:
    """As the tenant: its password on the proxy cluster, a db-auth token on the no-proxy one
    (noproxy_auth = "token": MariaDB checks it)."""
    host, port = host_port.rsplit(":", 1)
    noproxy = {i["endpoint"] for i in stack.outputs["NoProxyClusterInstances"]}
    if host_port in noproxy:
        access = TenantAccess.from_outputs(stack.outputs)
        credentials = access.assume(user, resource_id=stack.outputs["NoProxyResourceId"])
        password = access.token(credentials, host, int(port), user)
    else:
        password = stack.secret(user).password
    return pymysql.connect(
        host=host,
        port=int(port),
        user=user,
        password=password,
        database=database,
        ssl={"ca": stack.outputs["CACertificate"]},
        connect_timeout=10,
    )


@pytest.mark.parametrize("cluster", ["ProxyClusterInstances", "NoProxyClusterInstances"])
def test_a_tenant_reads_its_database_and_gets_1044_on_another(stack, cluster):
    writer = writer_of(stack, cluster)
    with tenant_connect(stack, writer, "user7", "user_database7") as connection:
        assert query_one(connection, "SELECT COUNT(*) FROM mytable") == (50,)
    with pytest.raises(pymysql.err.OperationalError) as info:
        tenant_connect(stack, writer, "user7", "user_database8")
    assert info.value.args[0] == 1044


def test_both_clusters_hold_the_same_rows(stack):
    checksums = []
    for cluster in ("ProxyClusterInstances", "NoProxyClusterInstances"):
        with stack.admin_connect(writer_of(stack, cluster)) as connection:
            checksums.append(query_one(connection, "CHECKSUM TABLE user_database3.mytable")[1])
    assert checksums[0] == checksums[1] is not None


def test_the_secret_store_holds_every_tenant_in_the_secrets_manager_shape(stack):
    store = FileSecretStore.from_config(
        FileSecretStoreConfig(
            path=Path(stack.outputs["SecretStore"]), key_file=Path(stack.outputs["SecretsKeyFile"])
        )
    )
    tenants = stack.settings.tenants
    assert store.list_names("tenants/") == sorted(f"tenants/user{i}" for i in range(tenants))
    secret = store.get("tenants/user4")
    assert (secret.username, secret.dbname, secret.engine) == ("user4", "user_database4", "mysql")
    assert f"{secret.host}:{secret.port}" == writer_of(stack, "ProxyClusterInstances")
    assert secret.extra["dbClusterIdentifier"] == "proxy"
    assert len(secret.password) == 32


def test_outputs_have_every_key_and_private_files(stack):
    on_disk = json.loads((stack.state_dir / "outputs.json").read_text())
    assert set(OUTPUT_KEYS) <= set(on_disk)
    assert on_disk == stack.outputs
    assert len(on_disk["NoProxyReplicaEndpoints"]) == 2
    assert on_disk["NoProxyReaderEndpoint"] in on_disk["NoProxyReplicaEndpoints"]
    for key in ("SecretStore", "SecretsKeyFile", "AdminCredentials", "ProxyConfig"):
        assert Path(on_disk[key]).stat().st_mode & 0o077 == 0, key


def test_no_password_appears_in_outputs_state_or_logs(stack):
    passwords = [stack.secret(f"user{i}").password for i in range(10)]
    passwords.append(json.loads(Path(stack.outputs["AdminCredentials"]).read_text())["password"])
    readable = [stack.state_dir / "outputs.json", stack.state_dir / "state.json"]
    readable += list(stack.state_dir.glob("*.log")) + list(stack.state_dir.glob("*/*.log"))
    for path in readable:
        text = path.read_text(errors="replace")
        assert not [p for p in passwords if p in text], path


def test_the_proxy_process_runs_and_listens_on_both_endpoints(stack):
    assert psutil.pid_exists(stack.outputs["ProxyPid"])
    for key in ("ProxyEndpoint", "ProxyReaderEndpoint"):
        host, port = stack.outputs[key].rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=5).close()


def test_up_again_is_idempotent_and_status_shows_all_alive(stack):
    result = up(stack.settings, quiet_console())
    assert result.was_running
    assert result.outputs == stack.outputs
    processes, found = status(stack.state_dir)
    assert all(p.is_alive for p in processes)
    assert found == stack.outputs


def test_a_killed_instance_makes_up_refuse_and_down_still_cleans_up(tmp_path):
    settings = StackSettings(
        tenants=2,
        rows=3,
        replicas=1,
        load_test=False,
        state_dir=tmp_path / "small",
    )
    try:
        up(settings, quiet_console())
        records = StackState.load(settings.state_dir.absolute()).processes
        victim = next(r for r in records if r.name == "proxy-replica1")
        os.kill(victim.pid, signal.SIGKILL)
        psutil.Process(victim.pid).wait(timeout=10)

        runner = CliRunner()
        refused = runner.invoke(cli, ["stack", "up", "--state-dir", str(settings.state_dir)])
        assert refused.exit_code == 1
        assert "proxy-replica1" in refused.output
        assert "tenantproxy stack down" in refused.output
        with pytest.raises(StackError, match="not running: proxy-replica1") as info:
            up(settings, quiet_console())
        assert "proxy-writer" not in str(info.value)

        dead = runner.invoke(cli, ["stack", "status", "--state-dir", str(settings.state_dir)])
        assert dead.exit_code == 1

        result = runner.invoke(cli, ["stack", "down", "--state-dir", str(settings.state_dir)])
        assert result.exit_code == 0, result.output
        assert not settings.state_dir.exists()
        assert not [r.name for r in records if psutil.pid_exists(r.pid)]
    finally:
        down(settings.state_dir, quiet_console())


def test_a_failing_step_stops_what_up_started_and_names_the_step_and_cause(tmp_path, monkeypatch):
    server_argv = mariadb.server_argv

    def broken_replica(spec, options):
        argv = server_argv(spec, options)
        return [*argv, "--no-such-option"] if spec.role == "replica" else argv

    monkeypatch.setattr(mariadb, "server_argv", broken_replica)
    started = []
    record_process = StackState.add

    def add_and_remember(state, record):
        started.append(record)
        record_process(state, record)

    monkeypatch.setattr(StackState, "add", add_and_remember)
    settings = StackSettings(
        tenants=1, rows=1, replicas=1, load_test=False, start_proxy=False, state_dir=tmp_path / "s"
    )
    with pytest.raises(StackError) as info:
        up(settings, quiet_console())
    message = str(info.value)
    assert "starting 2 MariaDB instance(s)" in message
    assert "proxy-replica1 exited before listening" in message
    assert "no-such-option" in message
    assert len(started) == 2
    assert not [r.name for r in started if psutil.pid_exists(r.pid)]
    assert not settings.state_dir.exists()
