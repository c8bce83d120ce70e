"""After a crash: pending deletes win over failing builds, lost boots are scheduled again,
allocations of deleted servers are given back (agents' reconcile + compute/recovery.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from onestack.compute import states
from onestack.compute.recovery import BootRecovery
from onestack.db.compute import Instance
from onestack.db.engine import Database
from tests.unit.compute.test_manager import Env, ctx

LONG_AGO = dt.datetime(2000, 1, 1)


def _used(e: Env) -> tuple[int, dict[str, int]]:
    """Memory the compute nodes account, and placement's usages of project p1."""
    mem = sum(n["memory_mb_used"] for n in e.m.list_nodes())
    usages = e.m.placement.usages("p1", consumer_type="all") if e.m.placement else {}
    return mem, dict(usages.get("all", {}))


@pytest.mark.parametrize("claims", ["local", "placement"])
async def test_delete_answered_while_building_is_finished_not_failed(db: Database,
                                                                     claims: str) -> None:
    e = Env(db, hosts=1, claims=claims)
    await e.start()
    try:
        c = ctx()
        (inst,) = e.m.create_instances(c, e.spec(), 1, 1)
        node = e.m.list_nodes()[0]
        from onestack.compute.claims import place_instance

        assert place_instance(e.m, inst["uuid"], {"node_id": node["id"], "host": "h0",
                                                  "nodename": node["hypervisor_hostname"]},
                              1, 512, 1, "p1", "u1") == "ok"
        # DELETE answered (task_state deleting) while building; then the process died.
        _, on_host = e.m.begin_delete(c, inst["uuid"])
        assert on_host
        with db.transaction() as s:
            s.execute(update(Instance).where(Instance.uuid == inst["uuid"]).values(
                updated_at=LONG_AGO))
        counts = await e.agents[0].reconcile(on_start=True)
        assert counts["deleted"] == 1 and counts["errored"] == 0
        gone = e.m.get_instance(None, inst["uuid"], True)
        assert gone["deleted"] and gone["vm_state"] == states.DELETED
        assert _used(e)[0] == 0
        assert not _used(e)[1].get("MEMORY_MB")
        assert e.m.quota_usage("p1")["instances"] == 0
    finally:
        await e.stop()


@pytest.mark.parametrize("claims", ["local", "placement"])
async def test_boot_whose_scheduling_was_lost_is_scheduled_on_start(db: Database,
                                                                    claims: str) -> None:
    e = Env(db, hosts=2, claims=claims)
    await e.start()
    try:
        c = ctx()
        # Accepted before the crash, its cast to the scheduler lost; with placement, the
        # crash also cut a claim short (placement allocation made, the instance not placed).
        lost = e.m.create_instances(c, e.spec(name="lost"), 2, 2)
        node = e.m.list_nodes()[0]
        if e.m.placement is not None:
            assert e.m.placement_claim(lost[0]["uuid"], node["id"], 1, 512, 1, "p1", "u1")
        # A server deleted before the crash whose placement allocation was never released.
        (dead,) = e.m.create_instances(c, e.spec(name="dead"), 1, 1)
        e.m.begin_delete(c, dead["uuid"])
        if e.m.placement is not None:
            assert e.m.placement_claim(dead["uuid"], node["id"], 1, 512, 1, "p1", "u1")
        with db.transaction() as s:
            s.execute(update(Instance).values(updated_at=LONG_AGO))
        e.scheduler.recovery = BootRecovery(e.m, e.bus, None, stale_after=3600)
        counts = await e.scheduler.recover()
        assert counts["rescheduled"] == 2
        for inst in lost:
            await e.wait(inst["uuid"], states.ACTIVE)
        mem, usages = _used(e)
        assert mem == 1024
        if e.m.placement is not None:
            assert usages["MEMORY_MB"] == 1024 and usages["VCPU"] == 2
        # A second pass finds nothing left to do.
        assert not any((await e.scheduler.recover()).values())
    finally:
        await e.stop()



@pytest.mark.parametrize("claims", ["local", "placement"])
async def test_build_delivered_twice_runs_once(db: Database, claims: str) -> None:
    e = Env(db, hosts=1, claims=claims)
    await e.start()
    try:
        c = ctx()
        (inst,) = await e.boot(c)
        active = await e.wait(inst["uuid"], states.ACTIVE)
        before = _used(e)
        spawns = []
        orig = e.drivers[0].spawn

        async def counting(spec: dict[str, object]) -> None:
            spawns.append(spec["uuid"])
            await orig(spec)  # type: ignore[arg-type]

        e.drivers[0].spawn = counting  # type: ignore[method-assign]
        # The broker hands the (already done) build to the agent again after a restart.
        await e.agents[0].build_and_run_instance(
            inst["uuid"], {"instance": dict(active)}, ["h0"], 1)
        assert spawns == []
        assert e.m.get_instance(None, inst["uuid"])["vm_state"] == states.ACTIVE
        assert _used(e) == before
    finally:
        await e.stop()


@pytest.mark.parametrize("claims", ["local", "placement"])
async def test_failed_builds_end_unplaced_with_nothing_held(db: Database,
                                                            claims: str) -> None:
    e = Env(db, hosts=2, claims=claims, fail={"spawn"})
    await e.start()
    try:
        (inst,) = await e.boot(ctx())
        err = await e.wait(inst["uuid"], states.ERROR)
        assert err["host"] is None and "Exceeded maximum number of retries" in str(
            err["fault"])
        assert _used(e) == (0, {})
    finally:
        await e.stop()
