"""Boot recovery after a crash: the conductor's side of "restart-safe".

A boot is recorded (instance rows, quota) and its ports are made inside ``POST /servers``;
only then is it cast to the scheduler and answered 202. A crash (``kill -9``) can lose that
cast, or come between any two of those steps, or between the steps of a delete. The compute
agents reconcile what is on their hosts (``agents/compute_reconcile.py``); what no host knows
about is recovered here, when the scheduler starts and then periodically:

* an accepted boot still unscheduled (BUILD/``scheduling``, no host) from before this
  process started, or untouched for ``stale_after`` seconds, is scheduled again from the
  request kept with it (``system_metadata.schedule_request``). A placement allocation it
  holds from a claim the crash cut short is not touched here (a scheduler may be placing
  it right now): placing it replaces that claim, failing to place it releases it;
* an unscheduled boot whose ports were never all made cannot have been answered (the 202
  comes after the ports): once ``stale_after`` old it is removed with its ports, as the
  API's own rollback would have;
* placement allocations still held by deleted servers are released, and the ports compute
  made for deleted servers are deleted (a crash between the delete and its clean-up);
  likewise the volume attachments of deleted servers are released (and their
  ``delete_on_termination`` volumes deleted).

Every step is idempotent and safe to run beside live schedulers: placing an instance is
atomic (``place_instance`` only moves a ``scheduling`` instance), so a boot cast twice is
placed once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from sqlalchemy import select

from onestack.bus.base import Bus
from onestack.common.timeutils import utcnow
from onestack.compute import block_devices, states
from onestack.compute.boot_request import BootRequest
from onestack.compute.manager import ComputeManager
from onestack.compute.network import ComputeNetwork
from onestack.compute.volumes import ComputeVolumes, release_all
from onestack.db.compute import Instance
from onestack.db.placement import Allocation as PlacementAllocation

LOG = logging.getLogger(__name__)


class BootRecovery:
    """See the module docstring. ``network``: ``compute.network.LocalNetwork`` or None."""

    def __init__(self, manager: ComputeManager, bus: Bus, network: ComputeNetwork | None = None,
                 stale_after: float = 60.0) -> None:
        self.m = manager
        self.bus = bus
        self.network = network
        #: ``compute.volumes.ComputeVolumes`` or None (no block storage).
        self.volumes: ComputeVolumes | None = None
        self.stale_after = stale_after
        self.started_at = utcnow()

    # ------------------------------------------------------------------ queries
    def _unscheduled(self, before: dt.datetime) -> list[dict[str, Any]]:
        i = Instance
        with self.m.db.reader() as s:
            rows = s.execute(select(i.uuid, i.system_metadata, i.updated_at).where(
                i.deleted.is_(False), i.vm_state == states.BUILDING,
                i.task_state == "scheduling", i.host.is_(None),
                i.updated_at < before)).all()
        return [{"uuid": r.uuid, "sm": dict(r.system_metadata or {}),
                 "updated_at": r.updated_at} for r in rows]

    def _deleted_holding_allocations(self) -> list[str]:
        """Deleted instances placement still has allocations for."""
        with self.m.db.reader() as s:
            return list(s.scalars(select(Instance.uuid).where(
                Instance.deleted.is_(True),
                Instance.uuid.in_(select(PlacementAllocation.consumer_id).distinct()))))

    # ------------------------------------------------------------------ work
    def _ports_complete(self, uuid: str, sm: dict[str, Any]) -> bool:
        wanted = int(sm.get("port_count") or 0)
        if not wanted or self.network is None:
            return True
        return self.network.port_count(uuid) >= wanted

    def _remove_unanswered(self, uuid: str, sm: dict[str, Any]) -> None:
        if self.network is not None:
            self.network.deallocate(uuid, list(sm.get("preserve_ports") or []))
        self.m.release_placement(uuid)
        self.m.purge_instances([uuid])

    def plan(self, on_start: bool) -> tuple[list[tuple[str, BootRequest]], dict[str, int]]:
        """Blocking part of a pass: clean-ups done, the boots to cast returned."""
        now = utcnow()
        stale = now - dt.timedelta(seconds=self.stale_after)
        before = max(self.started_at, stale) if on_start else stale
        counts = {"rescheduled": 0, "removed": 0, "released": 0, "ports": 0}
        casts: list[tuple[str, BootRequest]] = []
        rows = self._unscheduled(before)
        for row in rows:
            uuid, sm = row["uuid"], row["sm"]
            if not self._ports_complete(uuid, sm):
                if row["updated_at"] < stale:
                    self._remove_unanswered(uuid, sm)
                    counts["removed"] += 1
                continue
            # Touch it (only if still unscheduled) so the next pass leaves it alone.
            if self.m.finish_task(uuid, "scheduling"):
                casts.append((uuid, BootRequest.from_system_metadata(sm)))
        for uuid in self._deleted_holding_allocations():
            self.m.release_placement(uuid)
            counts["released"] += 1
        if on_start:
            counts["ports"] = self._ports_of_deleted()
        counts["volumes"] = self._volumes_of_deleted()
        counts["rescheduled"] = len(casts)
        return casts, counts

    def _ports_of_deleted(self) -> int:
        """Delete the ports compute made for servers that are deleted (their delete was cut
        short); ports the user attached are detached and survive."""
        if self.network is None:
            return 0
        gone = self._deleted_among(self.network.compute_port_devices())
        for uuid, sm in gone:
            try:
                self.network.deallocate(uuid, list((sm or {}).get("preserve_ports") or []))
            except Exception:  # noqa: BLE001 - the next start tries again
                LOG.exception("could not release the ports of deleted server %s", uuid)
        return len(gone)

    def _deleted_among(self, uuids: set[str]) -> list[tuple[str, dict[str, Any]]]:
        """(uuid, system_metadata) of the deleted servers among ``uuids`` (none asked: no
        query)."""
        if not uuids:
            return []
        with self.m.db.reader() as s:
            return [(u, dict(sm or {})) for u, sm in s.execute(
                select(Instance.uuid, Instance.system_metadata).where(
                    Instance.uuid.in_(list(uuids)), Instance.deleted.is_(True)))]

    def _volumes_of_deleted(self) -> int:
        """Release what deleted servers still hold of the volume service."""
        if self.volumes is None:
            return 0
        gone = self._deleted_among(self.volumes.attached_servers())
        for uuid, sm in gone:
            release_all(self.volumes, uuid, block_devices.of({"system_metadata": sm}))
        return len(gone)

    async def run(self, on_start: bool = False) -> dict[str, int]:
        """One pass (see the module docstring); returns what it did."""
        casts, counts = await asyncio.to_thread(self.plan, on_start)
        for uuid, request in casts:
            await self.bus.cast("scheduler", "build_instances", instance_uuids=[uuid],
                                request=request.to_wire())
        if any(counts.values()):
            LOG.warning("boot recovery: %s", counts)
        return counts

