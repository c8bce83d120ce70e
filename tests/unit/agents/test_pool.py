"""ComputeAgentPool's periodic work: heartbeats go on while a reconciliation is stuck."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from onestack.agents.compute import ComputeAgent
from onestack.agents.pool import ComputeAgentPool
from onestack.compute.manager import ComputeManager


class _Manager:
    def __init__(self) -> None:
        self.beats: list[list[str]] = []

    def heartbeat(self, hosts: list[str]) -> None:
        self.beats.append(list(hosts))


class _StuckAgent:
    """An agent whose reconciliation never ends (a guest lock held by a slow operation)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.reconciles = 0

    async def reconcile(self, on_start: bool = False) -> dict[str, int]:
        self.reconciles += 1
        await asyncio.Event().wait()
        return {}


class _FailingAgent(_StuckAgent):
    async def reconcile(self, on_start: bool = False) -> dict[str, int]:
        self.reconciles += 1
        raise RuntimeError("broken")


async def _run(agents: list[Any], seconds: float) -> _Manager:
    m = _Manager()
    pool = ComputeAgentPool(cast(list[ComputeAgent], agents), cast(ComputeManager, m),
                            bus=cast(Any, None), heartbeat_interval=0.01,
                            reconcile_interval=0.02)
    task = asyncio.create_task(pool._periodic())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return m


async def test_heartbeats_continue_while_a_reconciliation_is_stuck() -> None:
    stuck = _StuckAgent("h1")
    m = await _run([stuck], 0.3)
    assert stuck.reconciles == 1
    assert len(m.beats) >= 5
    assert all(b == ["h1"] for b in m.beats)


async def test_one_agents_failed_reconciliation_does_not_skip_the_next() -> None:
    failing, stuck = _FailingAgent("h1"), _StuckAgent("h2")
    m = await _run([failing, stuck], 0.2)
    assert failing.reconciles == 1 and stuck.reconciles == 1
    assert m.beats and all(b == ["h1", "h2"] for b in m.beats)
