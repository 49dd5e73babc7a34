"""The router: writer for read/write, least-leased healthy replica for read-only."""

from __future__ import annotations

from tenantproxy.pool import TargetBudget
from tenantproxy.proxy.backends import Target
from tenantproxy.proxy.routing import Router, TargetState
from tenantproxy.wire.mysql.constants import CapabilityFlags as F


def state(name: str, role: str) -> TargetState:
    return TargetState(Target(name, role, "127.0.0.1", 1), TargetBudget(name, 10))


def test_read_write_goes_to_the_writer():
    router = Router([state("w", "writer"), state("r1", "replica")])
    picked = router.pick("read_write")
    assert picked is not None and picked.target.name == "w"


def test_read_only_picks_the_replica_with_the_fewest_leases():
    busy, idle = state("r1", "replica"), state("r2", "replica")
    busy.active_leases = 3
    router = Router([state("w", "writer"), busy, idle])
    assert {router.pick("read_only").target.name for _ in range(4)} == {"r2"}  # type: ignore[union-attr]


def test_read_only_spreads_ties_round_robin():
    router = Router([state("w", "writer"), state("r1", "replica"), state("r2", "replica")])
    picks = [router.pick("read_only").target.name for _ in range(4)]  # type: ignore[union-attr]
    assert sorted(picks) == ["r1", "r1", "r2", "r2"]


def test_unhealthy_replicas_are_skipped_and_none_left_means_none():
    r1, r2 = state("r1", "replica"), state("r2", "replica")
    r1.is_healthy = False
    router = Router([state("w", "writer"), r1, r2])
    assert {router.pick("read_only").target.name for _ in range(3)} == {"r2"}  # type: ignore[union-attr]
    r2.is_healthy = False
    assert router.pick("read_only") is None


def test_without_replicas_the_reader_endpoint_reads_from_the_writer():
    router = Router([state("w", "writer")])
    picked = router.pick("read_only")
    assert picked is not None and picked.target.name == "w"


def test_shared_capabilities_are_what_every_target_offered():
    writer, replica = state("w", "writer"), state("r1", "replica")
    writer.server_capabilities = F.CLIENT_PROTOCOL_41 | F.MARIADB_CLIENT_PROGRESS
    replica.server_capabilities = (
        F.CLIENT_PROTOCOL_41 | F.MARIADB_CLIENT_PROGRESS | F.MARIADB_CLIENT_CACHE_METADATA
    )
    router = Router([writer, replica])
    assert router.shared_capabilities() == F.CLIENT_PROTOCOL_41 | F.MARIADB_CLIENT_PROGRESS


def test_no_capabilities_are_shared_while_a_target_has_not_been_heard_from():
    writer, replica = state("w", "writer"), state("r1", "replica")
    writer.server_capabilities = F.CLIENT_PROTOCOL_41 | F.MARIADB_CLIENT_PROGRESS
    assert Router([writer, replica]).shared_capabilities() == F(0)


def test_read_only_leaves_out_the_replicas_a_lease_tried_already():
    router = Router([state("w", "writer"), state("r1", "replica"), state("r2", "replica")])
    assert {router.pick("read_only", avoid={"r1"}).target.name for _ in range(4)} == {"r2"}  # type: ignore[union-attr]
    assert router.pick("read_only", avoid={"r1", "r2"}) is None
