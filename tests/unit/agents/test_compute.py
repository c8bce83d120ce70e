"""The compute agent (``agents/compute.py``): what it reports of a guest's VNC console."""

from __future__ import annotations

from typing import Any

import pytest

from onestack.agents.compute import ComputeAgent
from onestack.drivers.hypervisor.base import Capabilities, PowerState
from onestack.drivers.hypervisor.fake import FakeDriver

UUID = "11111111-2222-3333-4444-555555555555"


class _InlineDb:
    """``Database.run`` as the agent uses it (calls in place)."""

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


class _Manager:
    """Just what the agent's get_vnc_console reads."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.db = _InlineDb()

    def get_instance(self, ctx: object, uuid: str) -> dict[str, str]:
        if uuid not in self.known:
            raise LookupError(uuid)
        return {"uuid": uuid}


async def test_agent_reports_vnc_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from onestack.agents.compute_context import AgentContext

    monkeypatch.setattr(AgentContext, "spec", staticmethod(lambda inst: {"uuid": inst["uuid"]}))
    driver = FakeDriver("console-unit")
    await driver.spawn({"uuid": UUID, "name": "vm", "flavor": {}})
    agent = ComputeAgent("console-unit", driver, _Manager({UUID}), None)  # type: ignore[arg-type]
    try:
        info = await agent.get_vnc_console(UUID)
        assert info["host"] == "127.0.0.1" and info["port"] == driver.vnc.port
        assert (await agent.get_vnc_console("gone"))["error"] == "not_ready"
        driver.guests[UUID].state = PowerState.SHUTDOWN
        stopped = await agent.get_vnc_console(UUID)
        assert stopped["error"] == "not_ready" and "not running" in stopped["message"]
        monkeypatch.setattr(driver, "capabilities", Capabilities(supports_remote_console=False))
        assert await agent.get_vnc_console(UUID) == {"error": "unavailable"}
    finally:
        await driver.cleanup_host()
        FakeDriver.registry.pop("console-unit", None)
