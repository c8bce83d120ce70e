"""The scheduler's service reports go on while a boot recovery pass is stuck."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from onestack.bus.base import Bus
from onestack.compute.manager import ComputeManager
from onestack.compute.recovery import BootRecovery
from onestack.scheduler.manager import Scheduler


class _Manager:
    def __init__(self) -> None:
        self.host_listeners: list[Any] = []
        self.beats: list[tuple[str, str]] = []

    def heartbeat(self, hosts: list[str], binary: str) -> None:
        self.beats.extend((h, binary) for h in hosts)


class _StuckRecovery:
    def __init__(self) -> None:
        self.runs = 0

    async def run(self, on_start: bool = False) -> dict[str, int]:
        self.runs += 1
        await asyncio.Event().wait()
        return {}


async def test_reports_continue_while_a_recovery_pass_is_stuck() -> None:
    m, recovery = _Manager(), _StuckRecovery()
    sched = Scheduler(cast(ComputeManager, m), cast(Bus, None), host="s1",
                      heartbeat_interval=0.01, recovery=cast(BootRecovery, recovery),
                      recovery_interval=0.02)
    task = asyncio.create_task(sched._heartbeat())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert recovery.runs == 1
    assert m.beats.count(("s1", "nova-scheduler")) >= 5
    assert m.beats.count(("s1", "nova-conductor")) == m.beats.count(("s1", "nova-scheduler"))
