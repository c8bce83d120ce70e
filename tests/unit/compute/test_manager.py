"""Compute control plane in one process: manager + scheduler + agents + fake driver over the
in-memory bus (the same wiring ``onestack up`` uses, without HTTP)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from onestack.agents.compute import ComputeAgent
from onestack.agents.pool import ComputeAgentPool
from onestack.bus.memory import MemoryBus
from onestack.common.context import RequestContext
from onestack.common.errors import Conflict, Forbidden, NotFound
from onestack.compute import states
from onestack.compute.manager import ComputeManager
from onestack.db.compute import Instance
from onestack.db.engine import Database
from onestack.drivers.hypervisor.fake import FakeDriver
from onestack.placement.manager import PlacementManager
from onestack.scheduler.manager import Scheduler


def ctx(project: str = "p1", user: str = "u1", admin: bool = False) -> RequestContext:
    return RequestContext(request_id="req-test", user_id=user, project_id=project,
                          roles=["admin", "member"] if admin else ["member"])


class Env:
    def __init__(self, db: Database, hosts: int, claims: str = "local", **driver: Any) -> None:
        self.m = ComputeManager(db, placement=PlacementManager(db) if claims == "placement"
                                else None)
        self.m.ensure_default_flavors()
        self.bus = MemoryBus()
        self.scheduler = Scheduler(self.m, self.bus, refresh_interval=0)
        self.drivers = [FakeDriver(f"h{i}", vcpus=4, memory_mb=4096, local_gb=100, **driver)
                        for i in range(hosts)]
        self.agents = [ComputeAgent(d.host, d, self.m, self.bus) for d in self.drivers]
        self.pool = ComputeAgentPool(self.agents, self.m, self.bus, heartbeat_interval=3600)

    async def start(self) -> None:
        await self.bus.start()
        await self.scheduler.start()
        await self.pool.start()

    async def stop(self) -> None:
        await self.pool.stop()
        await self.scheduler.stop()
        await self.bus.stop()

    def spec(self, name: str = "vm", flavor: str = "1", **extra: Any) -> dict[str, Any]:
        return {"name": name, "flavor": self.m.get_flavor(None, flavor),
                "image_ref": "11111111-2222-3333-4444-555555555555",
                "system_metadata": {}, **extra}

    async def boot(self, c: RequestContext, n: int = 1, **kw: Any) -> list[dict[str, Any]]:
        insts = self.m.create_instances(c, self.spec(**kw), n, n)
        await self.bus.cast("scheduler", "build_instances",
                            instance_uuids=[i["uuid"] for i in insts],
                            request={"group": kw.get("group")})
        return insts

    async def wait(self, uuid: str, vm_state: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            inst = self.m.get_instance(None, uuid, True)
            if inst["vm_state"] == vm_state and inst["task_state"] is None:
                return inst
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{uuid} stuck in {inst['vm_state']}/{inst['task_state']}")
            await asyncio.sleep(0.01)


@pytest.fixture(params=["local", "placement"])
def claims(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def env(db: Database, claims: str) -> AsyncIterator[Env]:
    e = Env(db, hosts=2, claims=claims)
    await e.start()
    yield e
    await e.stop()


async def test_boot_to_active_and_delete(env: Env) -> None:
    c = ctx()
    (inst,) = await env.boot(c)
    assert inst["vm_state"] == states.BUILDING and inst["task_state"] == "scheduling"
    active = await env.wait(inst["uuid"], states.ACTIVE)
    assert active["power_state"] == states.RUNNING and active["host"] in ("h0", "h1")
    driver = FakeDriver.registry[active["host"]]
    assert inst["uuid"] in driver.guests
    nodes = {n["host"]: n for n in env.m.list_nodes()}
    assert nodes[active["host"]]["memory_mb_used"] == 512
    env.m.begin_delete(c, inst["uuid"])
    await env.bus.cast(f"compute.{active['host']}", "terminate_instance",
                       instance_uuid=inst["uuid"])
    await env.wait(inst["uuid"], states.DELETED)
    assert inst["uuid"] not in driver.guests
    assert {n["host"]: n for n in env.m.list_nodes()}[active["host"]]["memory_mb_used"] == 0
    actions = env.m.instance_actions(c, inst["uuid"])
    assert [a["action"] for a in actions] == ["delete", "create"]
    assert any(e["event"] == "compute_build_and_run_instance" for e in actions[1]["events"])


async def test_state_machine_conflicts_and_lock(env: Env) -> None:
    c = ctx()
    (inst,) = await env.boot(c)
    await env.wait(inst["uuid"], states.ACTIVE)
    i = env.m.begin_task(c, inst["uuid"], "stop", "powering-off")
    await env.bus.cast(f"compute.{i['host']}", "stop_instance", instance_uuid=i["uuid"])
    stopped = await env.wait(inst["uuid"], states.STOPPED)
    assert stopped["power_state"] == states.SHUTDOWN
    with pytest.raises(Conflict) as err:
        env.m.begin_task(c, inst["uuid"], "stop", "powering-off")
    assert err.value.message == (f"Cannot 'stop' instance {inst['uuid']} while it is in "
                                 "vm_state stopped")
    env.m.lock(c, inst["uuid"], "maintenance")
    with pytest.raises(Conflict, match="is locked"):
        env.m.begin_task(c, inst["uuid"], "start", "powering-on")
    env.m.begin_task(ctx(admin=True), inst["uuid"], "start", "powering-on")  # admin may


async def test_tenancy_is_enforced_in_manager(env: Env) -> None:
    (inst,) = await env.boot(ctx("p1"))
    with pytest.raises(NotFound):
        env.m.get_instance(ctx("p2", "u2"), inst["uuid"])
    assert env.m.list_instances(ctx("p2", "u2"), {"project_id": "p2"}, [], None, None) == []
    assert env.m.get_instance(ctx("p2", "u2", admin=True), inst["uuid"])["uuid"] == inst["uuid"]


async def test_failed_build_reschedules_to_other_host(env: Env) -> None:
    env.drivers[0].fail.add("spawn")
    env.drivers[1].fail.discard("spawn")
    c = ctx()
    insts = await env.boot(c, n=3)
    for i in insts:
        active = await env.wait(i["uuid"], states.ACTIVE)
        assert active["host"] == "h1"
    assert {n["host"]: n for n in env.m.list_nodes()}["h0"]["running_vms"] == 0


async def test_all_hosts_failing_ends_in_error_with_fault(env: Env) -> None:
    for d in env.drivers:
        d.fail.add("spawn")
    (inst,) = await env.boot(ctx())
    err = await env.wait(inst["uuid"], states.ERROR)
    assert err["fault"] and "injected failure" in err["fault"]["details"]
    assert all(n["running_vms"] == 0 for n in env.m.list_nodes())


async def test_no_valid_host_when_full(env: Env) -> None:
    c = ctx(admin=True)
    env.m.set_quotas("p1", {"instances": -1, "cores": -1, "ram": -1}, None, True)
    insts = await env.boot(c, n=3, flavor="3")  # 4 GB each; 2 hosts x 6 GB usable
    results = [await env.wait(i["uuid"], states.ERROR if i["launch_index"] == 2
                              else states.ACTIVE) for i in insts]
    assert "No valid host" in results[2]["fault"]["message"]


async def test_concurrent_boots_never_oversubscribe(db: Database, claims: str) -> None:
    e = Env(db, hosts=3, claims=claims)
    await e.start()
    try:
        c = ctx()
        e.m.set_quotas("p1", {"instances": -1, "cores": -1, "ram": -1}, None, True)
        # Each host fits 12 x 512 MB (4096 MB x 1.5); boot 50 concurrently on 3 hosts.
        batches = await asyncio.gather(*(e.boot(c, name=f"v{i}") for i in range(50)))
        uuids = [b[0]["uuid"] for b in batches]
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            rows = [e.m.get_instance(None, u) for u in uuids]
            if all(r["task_state"] is None for r in rows):
                break
            await asyncio.sleep(0.02)
        active = [r for r in rows if r["vm_state"] == states.ACTIVE]
        assert len(active) == 36
        for n in e.m.list_nodes():
            assert n["memory_mb_used"] <= n["memory_mb"] * n["ram_allocation_ratio"]
    finally:
        await e.stop()


async def test_quota_refusal_leaves_nothing(env: Env) -> None:
    c = ctx()
    env.m.set_quotas("p1", {"instances": 2}, None, True)
    await env.boot(c, n=2)
    with pytest.raises(Forbidden) as err:
        env.m.create_instances(c, env.spec(), 1, 1)
    assert err.value.message == ("Quota exceeded for instances: Requested 1, but already "
                                 "used 2 of 2 instances")
    assert len(env.m.list_instances(c, {"project_id": "p1"}, [], None, None)) == 2


async def test_affinity_and_anti_affinity_groups(env: Env) -> None:
    c = ctx()
    anti = env.m.create_group(c, "anti", "anti-affinity", {})
    insts = await env.boot(c, n=2, group=anti["id"])
    hosts = {(await env.wait(i["uuid"], states.ACTIVE))["host"] for i in insts}
    assert hosts == {"h0", "h1"}
    aff = env.m.create_group(c, "aff", "affinity", {})
    insts = []
    for _ in range(3):
        insts += await env.boot(c, group=aff["id"])
        await env.wait(insts[-1]["uuid"], states.ACTIVE)
    assert len({env.m.get_instance(None, i["uuid"])["host"] for i in insts}) == 1


async def test_reconcile_stuck_build_deleted_and_power(db: Database, claims: str) -> None:
    e = Env(db, hosts=1, claims=claims)
    await e.start()
    try:
        c = ctx()
        (a,) = await e.boot(c, name="a")
        (b,) = await e.boot(c, name="b")
        await e.wait(a["uuid"], states.ACTIVE)
        await e.wait(b["uuid"], states.ACTIVE)
        driver = e.drivers[0]
        # a: its guest stopped by itself; b: deleted in the DB while the agent was down.
        driver.guests[a["uuid"]].state = driver.guests[a["uuid"]].state.SHUTDOWN
        e.m.begin_delete(c, b["uuid"])
        e.m.finish_delete(b["uuid"])
        # c: stuck in BUILD on this host from before a restart.
        stuck = e.m.create_instances(c, e.spec(name="c"), 1, 1)[0]
        with db.transaction() as s:
            s.execute(update(Instance).where(Instance.uuid == stuck["uuid"]).values(
                host="h0", task_state="spawning",
                updated_at=dt.datetime(2000, 1, 1)))
        counts = await e.agents[0].reconcile(on_start=True)
        assert counts["destroyed"] == 1 and counts["errored"] == 1 and counts["synced"] == 1
        assert b["uuid"] not in driver.guests
        assert e.m.get_instance(None, a["uuid"])["vm_state"] == states.STOPPED
        err = e.m.get_instance(None, stuck["uuid"])
        assert err["vm_state"] == states.ERROR and err["fault"]
    finally:
        await e.stop()


async def test_resize_confirm_and_revert(env: Env) -> None:
    c = ctx()
    (inst,) = await env.boot(c)
    await env.wait(inst["uuid"], states.ACTIVE)
    small = env.m.get_flavor(None, "2")
    for confirm in (True, False):
        i = env.m.get_instance(None, inst["uuid"])
        old = i["flavor"]
        i = env.m.begin_task(c, i["uuid"], "resize", "resize_prep", extra={
            "old_flavor": old, "new_flavor": small,
            "system_metadata": dict(i["system_metadata"], old_vm_state="active")})
        mig = env.m.create_migration(i, None, None, "resize", small["id"])
        dest = await env.scheduler.select_destination(i["uuid"], mig["uuid"], small, {}, [])
        await env.bus.cast(f"compute.{i['host']}", "resize_instance",
                           instance_uuid=i["uuid"], migration_uuid=mig["uuid"],
                           dest_host=dest["host"], dest_node=dest["node"], new_flavor=small)
        resized = await env.wait(i["uuid"], states.RESIZED)
        assert resized["flavor"]["id"] == small["id"]
        if confirm:
            env.m.begin_task(c, i["uuid"], "confirmResize", "resize_confirming")
            await env.bus.cast(f"compute.{resized['host']}", "confirm_resize",
                               instance_uuid=i["uuid"], migration_uuid=mig["uuid"],
                               source_host=i["host"])
            done = await env.wait(i["uuid"], states.ACTIVE)
            assert done["flavor"]["id"] == "2"
            used = sum(n["memory_mb_used"] for n in env.m.list_nodes())
            assert used == 2048
            small = env.m.get_flavor(None, "1")
        else:
            env.m.begin_task(c, i["uuid"], "revertResize", "resize_reverting")
            await env.bus.cast(f"compute.{resized['host']}", "revert_resize",
                               instance_uuid=i["uuid"], migration_uuid=mig["uuid"],
                               source_host=i["host"], source_node=i["node"])
            done = await env.wait(i["uuid"], states.ACTIVE)
            assert done["flavor"]["id"] == "2"
            assert sum(n["memory_mb_used"] for n in env.m.list_nodes()) == 2048
