"""Compute tables and manager on every database backend (SQLite, MariaDB, PostgreSQL)."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select, text

from onestack.common.context import RequestContext
from onestack.common.errors import Forbidden, NotFound
from onestack.compute.claims import place_instance
from onestack.compute.manager import ComputeManager
from onestack.console.tokens import ConsoleTokenStore
from onestack.db.console import ConsoleAuthToken
from onestack.db.engine import Database
from onestack.placement.manager import PlacementManager

pytestmark = pytest.mark.db


def _ctx(project: str = "p1") -> RequestContext:
    return RequestContext(request_id="req-db", user_id="u1", project_id=project,
                          roles=["member"])


def _node(m: ComputeManager, host: str, memory_mb: int = 4096) -> dict:
    m.register_host(host, {"vcpus": 64, "memory_mb": memory_mb, "local_gb": 1000,
                           "hypervisor_hostname": host})
    return next(n for n in m.list_nodes() if n["host"] == host)


@pytest.mark.parametrize("claims", ["local", "placement"])
def test_claims_never_oversubscribe_under_concurrency(database: Database, claims: str) -> None:
    m = ComputeManager(database, placement=PlacementManager(database)
                       if claims == "placement" else None)
    node = _node(m, "h1", memory_mb=1024)  # 1536 MB usable with the 1.5 ratio
    results: list[bool] = []
    lock = threading.Lock()

    consumers = [str(uuid.uuid4()) for _ in range(12)]

    def worker(i: int) -> None:
        ok = m.claim(consumers[i], node["id"], 1, 256, 1, "p1", "u1")
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 6
    node = next(n for n in m.list_nodes() if n["host"] == "h1")
    assert node["memory_mb_used"] == 1536 and node["running_vms"] == 6
    for c in consumers:
        m.release(c)
    node = next(n for n in m.list_nodes() if n["host"] == "h1")
    assert node["memory_mb_used"] == 0 and node["running_vms"] == 0


def test_instances_quota_place_and_list(database: Database) -> None:
    m = ComputeManager(database)
    m.ensure_default_flavors()
    node = _node(m, "h1")
    flavor = m.get_flavor(None, "1")
    spec = {"name": "vm", "flavor": flavor, "image_ref": "img", "metadata": {"a": "b"},
            "tags": ["t1", "t2"], "system_metadata": {}}
    insts = m.create_instances(_ctx(), spec, 3, 3)
    assert [i["name"] for i in insts] == ["vm-1", "vm-2", "vm-3"]
    hs = {"node_id": node["id"], "host": "h1", "nodename": "h1", "availability_zone": "nova"}
    assert place_instance(m, insts[0]["uuid"], hs, 1, 512, 1) == "ok"
    assert place_instance(m, insts[0]["uuid"], hs, 1, 512, 1) == "gone"  # not scheduling
    m.set_quotas("p1", {"instances": 3}, None, True)
    with pytest.raises(Forbidden):
        m.create_instances(_ctx(), spec, 1, 1)
    page = m.list_instances(_ctx(), {"project_id": "p1", "tags": ["t1"]},
                            [("display_name", "asc")], 2, None)
    assert [i["name"] for i in page] == ["vm-1", "vm-2"]
    rest = m.list_instances(_ctx(), {"project_id": "p1"}, [("display_name", "asc")], 2,
                            page[-1]["uuid"])
    assert [i["name"] for i in rest] == ["vm-3"]
    assert m.list_instances(_ctx("p2"), {"project_id": "p2"}, [], None, None) == []
    m.begin_delete(_ctx(), insts[0]["uuid"])
    m.finish_delete(insts[0]["uuid"])
    assert next(n for n in m.list_nodes())["memory_mb_used"] == 0
    assert len(m.list_instances(_ctx(), {"project_id": "p1"}, [], None, None)) == 2


def test_concurrent_boots_never_exceed_the_quota(database: Database) -> None:
    """12 threads of one project boot at once against an instances quota of 5: on every
    backend the project ends with at most 5 instances, every success is one of them, every
    refusal is the 403 kind and leaves nothing behind."""
    m = ComputeManager(database)
    m.ensure_default_flavors()
    m.set_quotas("p1", {"instances": 5}, None, True)
    flavor = m.get_flavor(None, "1")
    spec = {"name": "vm", "flavor": flavor, "image_ref": "img", "metadata": {},
            "tags": ["t"], "system_metadata": {}}
    made: list[str] = []
    refused: list[Exception] = []
    barrier = threading.Barrier(12)

    def boot() -> None:
        barrier.wait()
        try:
            made.extend(i["uuid"] for i in m.create_instances(_ctx(), spec, 1, 1))
        except Forbidden as exc:
            refused.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    listed = {i["uuid"] for i in m.list_instances(_ctx(), {"project_id": "p1"}, [], None,
                                                   None)}
    assert len(made) + len(refused) == 12
    assert len(made) <= 5 and listed == set(made)  # (racing boots may all be refused)
    assert all("Quota exceeded for instances" in str(e) for e in refused)
    with database.engine.connect() as conn:  # refused boots left no tags or actions
        assert conn.execute(text("SELECT COUNT(*) FROM compute_instance_tag")).scalar() == len(made)
    # What the race refused fits afterwards, up to the limit.
    for _ in range(5 - len(made)):
        m.create_instances(_ctx(), spec, 1, 1)
    with pytest.raises(Forbidden):
        m.create_instances(_ctx(), spec, 1, 1)


def test_boot_and_delete_cycle_with_placement(database: Database) -> None:
    """The hot path of a boot and a delete (Core statements) on every backend."""
    m = ComputeManager(database, placement=PlacementManager(database))
    m.ensure_default_flavors()
    node = _node(m, "h1", memory_mb=1024)
    # The node's placement provider is created by whoever registers it with placement:
    placement = m.placement
    assert placement is not None
    placement.ensure_provider(node["uuid"], "h1")
    placement.set_inventories(node["uuid"], {"VCPU": {"total": 64}, "MEMORY_MB": 1024,
                                           "DISK_GB": 1000})
    flavor = m.get_flavor(None, "1")
    spec = {"name": "vm", "flavor": flavor, "image_ref": "img", "metadata": {"k": "v"},
            "tags": ["t"], "system_metadata": {}}
    inst = m.create_instances(_ctx(), spec, 1, 1)[0]
    hs = {"node_id": node["id"], "host": "h1", "nodename": "h1", "availability_zone": "az1"}
    assert place_instance(m, inst["uuid"], hs, 1, 512, 1, "p1", "u1") == "ok"
    assert m.finish_task(inst["uuid"], "spawning", event="compute_build_and_run_instance",
                         vm_state="active", task_state=None, power_state=1)
    assert not m.finish_task(inst["uuid"], "spawning", vm_state="error")
    shown, group = m.show_instance(_ctx(), inst["uuid"])
    assert (shown["vm_state"], shown["task_state"], shown["host"], shown["tags"],
            shown["metadata"], shown["availability_zone"], group) == (
        "active", None, "h1", ["t"], {"k": "v"}, "az1", None)
    with pytest.raises(NotFound):  # another project
        m.show_instance(_ctx("p2"), inst["uuid"])
    # A second instance does not fit next to the first (1536 MB usable, 512 + 1024).
    big = dict(spec, flavor=dict(flavor, memory_mb=1100))
    other = m.create_instances(_ctx(), big, 1, 1)[0]
    assert place_instance(m, other["uuid"], hs, 1, 1100, 1, "p1", "u1") == "full"
    tokens = ConsoleTokenStore(database)
    token, _ = tokens.create(inst["uuid"], "novnc", "127.0.0.1", 5900, "h1")
    kept, _ = tokens.create(other["uuid"], "novnc", "127.0.0.1", 5901, "h1")
    doomed, on_host = m.begin_delete(_ctx(), inst["uuid"])
    assert on_host and doomed["task_state"] == "deleting"
    m.finish_delete(inst["uuid"])
    # The deleted server's console tokens are gone from the table, others stay.
    with database.engine.connect() as conn:
        left = conn.execute(select(ConsoleAuthToken.instance_uuid)).scalars().all()
    assert left == [other["uuid"]]
    assert tokens.validate(token) is None and tokens.validate(kept) is not None
    assert set(placement.provider_usages(node["uuid"])[1].values()) == {0}
    assert next(n for n in m.list_nodes())["memory_mb_used"] == 0
    events = [e["event"] for a in m.instance_actions(_ctx(), inst["uuid"]) for e in a["events"]]
    assert "compute_build_and_run_instance" in events and "compute_terminate_instance" in events
    # Never placed: deleted outright.
    gone, on_host = m.begin_delete(_ctx(), other["uuid"])
    assert not on_host
    with pytest.raises(NotFound):
        m.get_instance(_ctx(), other["uuid"])
