"""``ComputeAgentPool``: the compute agents of this process (one per host, many with fake
hosts) with one shared heartbeat loop and one shared reconciliation loop, so ``--fake-hosts
1000`` costs 1000 dict entries, not 1000 timers.
"""

from __future__ import annotations

import asyncio
import logging

from onestack.agents.compute import ComputeAgent
from onestack.bus.base import Bus
from onestack.compute.manager import ComputeManager
from onestack.faults.rules import FaultTable
from onestack.tasks import cancel_and_wait

LOG = logging.getLogger(__name__)


class ComputeAgentPool:
    """Runs one or many agents in this process: bus consumers plus one periodic loop."""

    def __init__(self, agents: list[ComputeAgent], manager: ComputeManager, bus: Bus,
                 heartbeat_interval: float = 10.0, reconcile_interval: float = 60.0) -> None:
        self.agents = agents
        self.m = manager
        self.bus = bus
        self.heartbeat_interval = heartbeat_interval
        self.reconcile_interval = reconcile_interval
        self._task: asyncio.Task[None] | None = None
        #: ``host_down`` rules stop the heartbeats of the hosts they hold down.
        self.faults: FaultTable | None = None
        #: Start the guests of running instances again on start (after a snapshot load).
        self.resume_guests = False

    def set_faults(self, table: FaultTable | None) -> None:
        """Apply ``table``'s rules to these agents (``build`` and ``host_down``)."""
        self.faults = table
        for agent in self.agents:
            agent.ctx.faults = table

    async def start(self) -> None:
        for agent in self.agents:
            await agent.register()
            await self.bus.serve(f"compute.{agent.host}", agent)
        if self.resume_guests:
            started = 0
            for agent in self.agents:
                started += await agent.resume_guests()
            LOG.info("started %d guests again", started)
        for agent in self.agents:
            try:
                await agent.reconcile(on_start=True)
            except Exception:  # noqa: BLE001
                LOG.exception("reconciliation of %s failed", agent.host)
        self._task = asyncio.create_task(self._periodic())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for agent in self.agents:
            try:
                await agent.driver.cleanup_host()
            except Exception:  # noqa: BLE001 - stopping anyway
                LOG.exception("driver cleanup of %s failed", agent.host)

    async def _periodic(self) -> None:
        """The heartbeats and the reconciliation, as two loops: a reconciliation waiting on a
        busy guest (a graceful stop, a slow boot under TCG) must not delay the heartbeat, or
        the scheduler reads a running host as down (Nova's service report is a loop of its
        own too)."""
        await asyncio.gather(self._heartbeats(), self._reconciles())

    async def _heartbeats(self) -> None:
        hosts = [a.host for a in self.agents]
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                down = self.faults.hosts_down(hosts) if self.faults is not None else set()
                if down:
                    # A host held down by a fault rule reports nothing and reads down at
                    # once (its messages are dropped by the fault bus).
                    await asyncio.to_thread(self.m.report_down, sorted(down))
                await asyncio.to_thread(self.m.heartbeat,
                                        [h for h in hosts if h not in down] if down else hosts)
            except Exception:  # noqa: BLE001 - keep reporting
                LOG.exception("compute heartbeat failed")

    async def _reconciles(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_interval)
            for agent in self.agents:
                try:
                    await agent.reconcile()
                except Exception:  # noqa: BLE001 - keep reconciling
                    LOG.exception("reconciliation of %s failed", agent.host)
