"""Claims of compute resources: a server's vCPUs, memory and disk taken on a compute node
atomically (never oversubscribing, on every database backend), moved to a migration's
consumer and given back; through placement when the cloud has it (``compute/placement.py``),
the node counters then only mirroring it. ``place_instance`` records a scheduled server's
host together with its claim."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, case, delete, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from onestack.common.errors import APIError, NotFound
from onestack.common.timeutils import utcnow
from onestack.compute.store import ManagerState
from onestack.db.compute import Allocation, ComputeNode, Instance

_I = Instance.__table__
_NODE = ComputeNode.__table__
_ALLOC = Allocation.__table__
_SEL_ALLOCS = select(_ALLOC).where(_ALLOC.c.instance_uuid == bindparam("uuid"))


class ClaimStore(ManagerState):
    """Claims on compute nodes (and in placement), part of ``ComputeManager``."""

    # ================================================================== claims
    def claim(self, consumer: str, node_id: int, vcpus: int, memory_mb: int,
              disk_gb: int, project_id: str = "", user_id: str = "") -> bool:
        """Atomically take resources on a node; False when they no longer fit.

        With placement: a placement claim (provider = the node), then the node counters.
        Without: one conditional UPDATE (usage + request <= capacity × ratio). Either way
        concurrent claims can never oversubscribe a node, on every database backend.
        """
        if self.placement is not None and not self.placement_claim(
                consumer, node_id, vcpus, memory_mb, disk_gb, project_id, user_id):
            return False
        with self.write() as s:
            return self.claim_in(s, consumer, node_id, vcpus, memory_mb, disk_gb,
                               force=self.placement is not None)

    def _node_uuid(self, node_id: int) -> str:
        uuid = self._node_uuids.get(node_id)
        if uuid is None:
            with self.db.reader() as s:
                uuid = s.scalar(select(ComputeNode.uuid).where(ComputeNode.id == node_id))
            if uuid is None:
                raise NotFound(f"Compute node {node_id} could not be found.")
            self._node_uuids[node_id] = uuid
        return uuid

    def placement_claim(self, consumer: str, node_id: int, vcpus: int, memory_mb: int,
                        disk_gb: int, project_id: str, user_id: str) -> bool:
        """Claim in placement (must run outside any compute transaction)."""
        assert self.placement is not None
        wanted = {rc: n for rc, n in (("VCPU", vcpus), ("MEMORY_MB", memory_mb),
                                      ("DISK_GB", disk_gb)) if n > 0}
        try:
            provider = self._node_uuid(node_id)
            with self.serial():
                self.placement.claim_new(consumer, provider, wanted, project_id or "unknown",
                                         user_id or "unknown")
        except APIError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def release_placement(self, consumer: str) -> None:
        """Give back what ``consumer`` holds in placement (nothing: no-op)."""
        if self.placement is not None:
            with self.serial():
                self.placement.release(consumer)

    def claim_in(self, s: Connection | Session, consumer: str, node_id: int, vcpus: int,
               memory_mb: int, disk_gb: int, force: bool = False) -> bool:
        n = _NODE.c
        conds = [n.id == node_id]
        if not force:
            conds += [n.vcpus_used + vcpus <= n.vcpus * n.cpu_allocation_ratio,
                      n.memory_mb_used + memory_mb <= n.memory_mb * n.ram_allocation_ratio,
                      n.local_gb_used + disk_gb <= n.local_gb * n.disk_allocation_ratio]
        res = s.execute(update(_NODE).where(*conds).values(
            vcpus_used=n.vcpus_used + vcpus, memory_mb_used=n.memory_mb_used + memory_mb,
            local_gb_used=n.local_gb_used + disk_gb, running_vms=n.running_vms + 1))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        s.execute(insert(_ALLOC).values(instance_uuid=consumer, node_id=node_id, vcpus=vcpus,
                                        memory_mb=memory_mb, disk_gb=disk_gb))
        return True

    def unplace(self, uuid: str, host: str) -> bool:
        """A build on ``host`` failed: back to ``scheduling`` with no host and its claim
        released, in one transaction (a crash leaves either the placed or the unscheduled
        instance, never a placed one without its claim; a placement claim left behind is
        replaced when it is placed again). False when it is no longer building there."""
        with self.core_write() as c:
            res = c.execute(update(_I).where(
                _I.c.uuid == uuid, _I.c.deleted.is_(False), _I.c.host == host,
                _I.c.task_state == "spawning").values(
                task_state="scheduling", host=None, node=None, updated_at=utcnow()))
            if res.rowcount != 1:
                return False
            self.release_in(c, uuid)
        self.release_placement(uuid)
        return True

    def release(self, consumer: str) -> None:
        with self.core_write() as c:
            self.release_in(c, consumer)
        self.release_placement(consumer)

    def release_in(self, s: Connection | Session, consumer: str) -> None:
        n = _NODE.c
        for a in list(s.execute(_SEL_ALLOCS, {"uuid": consumer})):
            s.execute(update(_NODE).where(n.id == a.node_id).values(
                vcpus_used=n.vcpus_used - a.vcpus, memory_mb_used=n.memory_mb_used - a.memory_mb,
                local_gb_used=n.local_gb_used - a.disk_gb, running_vms=n.running_vms - 1))
            s.execute(delete(_ALLOC).where(_ALLOC.c.instance_uuid == consumer,
                                           _ALLOC.c.node_id == a.node_id))

    def move_allocation(self, from_consumer: str, to_consumer: str) -> None:
        """Re-own allocations (a confirmed move makes the migration's claim the instance's)."""
        if self.placement is not None:
            held = self.placement.get_consumer_allocations(from_consumer)
            if held.allocations:
                with self.serial():
                    self.placement.claim(to_consumer, held.allocations,
                                         held.project_id or "unknown",
                                         held.user_id or "unknown")
                    self.placement.release(from_consumer)
        with self.write() as s:
            s.execute(update(Allocation).where(Allocation.instance_uuid == from_consumer)
                      .values(instance_uuid=to_consumer))


class _Undo(Exception):
    """Raised inside a Core write to roll it back and report ``result``."""

    def __init__(self, result: str) -> None:
        super().__init__(result)
        self.result = result


def place_instance(m: ClaimStore, uuid: str, node: dict[str, Any], vcpus: int,
                   memory_mb: int, disk_gb: int, project_id: str | None = None,
                   user_id: str | None = None) -> str:
    """Claim ``node`` for a scheduling instance and record the host, in one transaction.

    Returns ``"ok"``, ``"full"`` (the claim did not fit: try another host) or ``"gone"`` (the
    instance was deleted or is no longer scheduling; nothing was claimed).
    """
    if m.placement is not None:
        # Placement replaces a consumer's allocations: claiming for an instance another
        # scheduler already placed (a boot cast twice: a redelivered message, a recovered
        # boot) would move or, on "gone", drop the allocation of a placed server. Only a
        # scheduling instance is claimed for.
        with m.db.reader() as s:
            row = s.execute(select(Instance.project_id, Instance.user_id).where(
                Instance.uuid == uuid, Instance.deleted.is_(False),
                Instance.task_state == "scheduling")).first()
        if row is None:
            return "gone"
        owner: Any = (project_id, user_id) if project_id is not None else row
        if not m.placement_claim(uuid, node["node_id"], vcpus, memory_mb, disk_gb,
                                 owner[0], owner[1]):
            return "full"
    az = _I.c.availability_zone
    try:
        with m.core_write() as c:
            res = c.execute(update(_I).where(
                _I.c.uuid == uuid, _I.c.deleted.is_(False), _I.c.task_state == "scheduling",
            ).values(host=node["host"], node=node["nodename"], task_state="spawning",
                     availability_zone=case((or_(az.is_(None), az == ""),
                                             node.get("availability_zone")), else_=az),
                     updated_at=utcnow()))
            if res.rowcount != 1:
                raise _Undo("gone")
            if not m.claim_in(c, uuid, node["node_id"], vcpus, memory_mb, disk_gb,
                            force=m.placement is not None):
                raise _Undo("full")
    except _Undo as undo:
        if undo.result == "gone":
            with m.db.reader() as s:
                placed = s.execute(select(Instance.host).where(
                    Instance.uuid == uuid, Instance.deleted.is_(False))).scalar()
            if not placed:  # deleted meanwhile: nothing may hold resources for it
                m.release_placement(uuid)
        return undo.result
    return "ok"
