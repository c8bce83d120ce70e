"""Network IPAM and segment allocation on every database backend."""

from __future__ import annotations

import ipaddress
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from onestack.common.context import RequestContext
from onestack.common.errors import APIError
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.drivers.network.noop import AGENTS, NoopDriver
from onestack.network.api import build_policy
from onestack.network.manager import NetworkManager


def _ctx(project: str = "proj-a", admin: bool = False) -> RequestContext:
    return RequestContext(user_id="u-" + project, project_id=project,
                          roles=["admin", "member", "reader"] if admin else ["member", "reader"])


@pytest.fixture
def manager(database: Database, settings: Settings) -> NetworkManager:
    return NetworkManager(database, settings, build_policy(None))


def _net_subnet(m: NetworkManager, cidr: str = "10.1.0.0/24") -> tuple[str, str]:
    ctx = _ctx()
    net = m.create_networks(ctx, [{"name": "n"}])[0]
    sub = m.create_subnets(ctx, [{"network_id": net["id"], "cidr": cidr,
                                  "ip_version": 4}])[0]
    return net["id"], sub["id"]


def test_parallel_port_creates_never_duplicate(manager: NetworkManager) -> None:
    net_id, sub_id = _net_subnet(manager)
    ctx = _ctx()

    def create(_i: int) -> str:
        port = manager.create_ports(ctx, [{"network_id": net_id}])[0]
        return str(port["fixed_ips"][0]["ip_address"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ips = list(pool.map(create, range(50)))
    assert len(ips) == 50
    assert len(set(ips)) == 50
    net = ipaddress.ip_network("10.1.0.0/24")
    assert all(ipaddress.ip_address(ip) in net for ip in ips)
    assert "10.1.0.1" not in ips  # the gateway is never handed out


def test_addresses_return_to_pool(manager: NetworkManager) -> None:
    ctx = _ctx()
    net_id, sub_id = _net_subnet(manager, "10.2.0.0/29")  # pool .2-.6: 5 addresses
    ports = [manager.create_ports(ctx, [{"network_id": net_id}])[0] for _ in range(5)]
    with pytest.raises(APIError) as exc:
        manager.create_ports(ctx, [{"network_id": net_id}])
    assert exc.value.status == 409 and exc.value.kind == "IpAddressGenerationFailure"
    freed = ports[2]["fixed_ips"][0]["ip_address"]
    manager.delete_port(ctx, ports[2]["id"])
    again = manager.create_ports(ctx, [{"network_id": net_id}])[0]
    assert again["fixed_ips"][0]["ip_address"] == freed


def test_explicit_ip_conflict_and_bulk_rollback(manager: NetworkManager) -> None:
    ctx = _ctx()
    net_id, sub_id = _net_subnet(manager, "10.3.0.0/24")
    manager.create_ports(ctx, [{"network_id": net_id,
                                "fixed_ips": [{"ip_address": "10.3.0.50"}]}])
    with pytest.raises(APIError) as exc:
        manager.create_ports(ctx, [{"network_id": net_id,
                                    "fixed_ips": [{"ip_address": "10.3.0.50"}]}])
    assert exc.value.kind == "IpAddressAlreadyAllocated"
    before = len(manager.list_ports(ctx))
    with pytest.raises(APIError):
        manager.create_ports(ctx, [{"network_id": net_id},
                                   {"network_id": net_id,
                                    "fixed_ips": [{"ip_address": "10.3.0.50"}]}])
    assert len(manager.list_ports(ctx)) == before  # all or nothing


def test_segments_are_unique(manager: NetworkManager) -> None:
    admin = _ctx("admin-p", admin=True)
    vlan = manager.create_networks(admin, [{
        "provider:network_type": "vlan", "provider:physical_network": "physnet1"}])[0]
    assert vlan["provider:segmentation_id"] == 100
    with pytest.raises(APIError) as exc:
        manager.create_networks(admin, [{
            "provider:network_type": "vlan", "provider:physical_network": "physnet1",
            "provider:segmentation_id": 100}])
    assert exc.value.status == 409
    manager.create_networks(admin, [{"provider:network_type": "flat",
                                     "provider:physical_network": "physnet1"}])
    with pytest.raises(APIError) as exc:
        manager.create_networks(admin, [{"provider:network_type": "flat",
                                         "provider:physical_network": "physnet1"}])
    assert exc.value.kind == "FlatNetworkInUse"
    tenant = [manager.create_networks(_ctx(), [{}])[0] for _ in range(3)]
    admin_view = [manager.get_network(admin, n["id"]) for n in tenant]
    segs = [n["provider:segmentation_id"] for n in admin_view]
    assert all(n["provider:network_type"] == "vxlan" for n in admin_view)
    assert len(set(segs)) == 3
    assert all(n["mtu"] == 1450 for n in tenant)
    manager.delete_network(admin, vlan["id"])
    again = manager.create_networks(admin, [{
        "provider:network_type": "vlan", "provider:physical_network": "physnet1"}])[0]
    assert again["provider:segmentation_id"] == 100


def test_defaults_idempotent(manager: NetworkManager) -> None:
    manager.ensure_defaults("admin-project", "demo-project")
    manager.ensure_defaults("admin-project", "demo-project")
    admin = _ctx("admin-project", admin=True)
    names = sorted(n["name"] for n in manager.list_networks(admin))
    assert names == ["private", "public"]
    routers = manager.list_routers(admin)
    assert [r["name"] for r in routers] == ["router1"]
    assert routers[0]["external_gateway_info"]["external_fixed_ips"]
    assert manager.list_agents(admin) == []  # the noop data plane runs no agent


class _AgentsDriver(NoopDriver):
    """The noop twin claiming the Linux data plane's agents (what runs is the test's word)."""

    def agents(self) -> list[dict[str, Any]]:
        return [dict(a) for a in AGENTS]


def test_control_plane_for_the_data_plane(database: Database, settings: Settings) -> None:
    """What a data plane asks of the manager: agents alive only while they beat, the whole
    model, the network's one DHCP port, port status."""
    m = NetworkManager(database, settings, build_policy(None), driver=_AgentsDriver())
    m.ensure_agents()
    admin = _ctx("p", admin=True)
    agents = m.list_agents(admin)
    assert len(agents) == 4 and not any(a["alive"] for a in agents)
    m.agent_heartbeat(["DHCP agent", "L3 agent"])
    alive = {a["agent_type"]: a["alive"] for a in m.list_agents(admin)}
    assert alive == {"DHCP agent": True, "L3 agent": True, "Metadata agent": False,
                     "Linux bridge agent": False}
    assert all(a["heartbeat_timestamp"] for a in m.list_agents(admin) if a["alive"])

    net_id, sub_id = _net_subnet(m)
    dhcp = m.ensure_dhcp_port(net_id)
    assert dhcp is not None and dhcp["device_owner"] == "network:dhcp"
    assert dhcp["fixed_ips"][0]["subnet_id"] == sub_id
    assert m.ensure_dhcp_port(net_id)["id"] == dhcp["id"]  # type: ignore[index]
    no_dhcp = m.create_networks(_ctx(), [{"name": "nd"}])[0]
    m.create_subnets(_ctx(), [{"network_id": no_dhcp["id"], "cidr": "10.2.0.0/24",
                               "ip_version": 4, "enable_dhcp": False}])
    assert m.ensure_dhcp_port(no_dhcp["id"]) is None

    m.set_port_status(dhcp["id"], "ACTIVE")
    assert m.get_port(admin, dhcp["id"])["status"] == "ACTIVE"
    with pytest.raises(ValueError):
        m.set_port_status(dhcp["id"], "HAPPY")
    state = m.desired_state()
    assert {n["id"] for n in state.networks} >= {net_id, no_dhcp["id"]}
    assert dhcp["id"] in {p["id"] for p in state.ports}
    assert sub_id in {s["id"] for s in state.subnets}


def test_device_api_for_compute(manager: NetworkManager) -> None:
    manager.ensure_defaults("admin-project", "demo-project")
    demo = _ctx("demo-project")
    private = next(n for n in manager.list_networks(demo) if n["name"] == "private")
    port = manager.create_port_for_device(demo, private["id"], "server-1", host="host-a")
    assert port["device_id"] == "server-1" and port["status"] == "ACTIVE"
    assert port["binding:vif_type"] == "bridge"
    public = next(n for n in manager.list_networks(demo) if n["name"] == "public")
    fip = manager.create_floatingips(demo, [{"floating_network_id": public["id"],
                                             "port_id": port["id"]}])[0]
    ports = manager.device_ports("server-1")
    assert ports[0]["floating_ips"][0]["floating_ip_address"] == fip["floating_ip_address"]
    assert ports[0]["fixed_ips"][0]["ip_address"].startswith("10.0.0.")
    assert ports[0]["mtu"] == 1450 and ports[0]["subnets"]
    assert manager.unbind_port(port["id"])["status"] == "DOWN"
    assert manager.bind_port(port["id"], "host-b")["binding:host_id"] == "host-b"
    assert manager.delete_ports_for_device("server-1") == [port["id"]]
    assert manager.device_ports("server-1") == []
    assert manager.get_floatingip(demo, fip["id"])["port_id"] is None
    with pytest.raises(APIError) as exc:
        manager.create_port_for_device(_ctx("other"), private["id"], "server-2")
    assert exc.value.status == 404


def test_bulk_create_distinct_addresses_and_quota(manager: NetworkManager) -> None:
    ctx = _ctx("proj-q")
    admin = _ctx("admin-p", admin=True)
    net = manager.create_networks(ctx, [{"name": "q"}])[0]
    manager.create_subnets(ctx, [{"network_id": net["id"], "cidr": "10.4.0.0/24",
                                  "ip_version": 4}])
    manager.update_quota(admin, "proj-q", {"port": 4})
    ports = manager.create_ports(ctx, [{"network_id": net["id"]}] * 3)
    ips = [p["fixed_ips"][0]["ip_address"] for p in ports]
    assert len(set(ips)) == 3
    assert len({p["mac_address"] for p in ports}) == 3
    with pytest.raises(APIError) as exc:  # 3 + 2 > 4: all or nothing
        manager.create_ports(ctx, [{"network_id": net["id"]}] * 2)
    assert exc.value.status == 409 and exc.value.kind == "OverQuota"
    assert len(manager.list_ports(ctx)) == 3
    manager.create_ports(ctx, [{"network_id": net["id"]}])
    with pytest.raises(APIError) as exc:
        manager.create_ports(ctx, [{"network_id": net["id"]}])
    assert exc.value.kind == "OverQuota"
    # Two ports of one request asking for the same address: the second is refused.
    manager.update_quota(admin, "proj-q", {"port": -1})
    with pytest.raises(APIError) as exc:
        manager.create_ports(ctx, [{"network_id": net["id"],
                                    "fixed_ips": [{"ip_address": "10.4.0.99"}]}] * 2)
    assert exc.value.kind == "IpAddressAlreadyAllocated"
    assert len(manager.list_ports(ctx)) == 4


def test_allocators_in_two_processes_share_nothing_but_the_database(
        database: Database, settings: Settings) -> None:
    """Each process keeps its own allocation cursor; the database keeps them honest:
    addresses taken elsewhere (or explicitly, ahead of the cursor) are skipped and
    freed addresses are found again after a wrap-around."""
    one = NetworkManager(database, settings, build_policy(None))
    two = NetworkManager(database, settings, build_policy(None))
    ctx = _ctx()
    net_id, _sub = _net_subnet(one, "10.5.0.0/28")  # pool .2-.14: 13 addresses
    one.create_ports(ctx, [{"network_id": net_id, "fixed_ips": [{"ip_address": "10.5.0.4"}]}])
    got = []
    for i in range(12):
        m = one if i % 2 == 0 else two
        got.append(m.create_ports(ctx, [{"network_id": net_id}])[0]["fixed_ips"][0]
                   ["ip_address"])
    assert len(set(got)) == 12 and "10.5.0.4" not in got and "10.5.0.1" not in got
    with pytest.raises(APIError) as exc:
        two.create_ports(ctx, [{"network_id": net_id}])
    assert exc.value.kind == "IpAddressGenerationFailure"
    victim = next(p for p in one.list_ports(ctx)
                  if p["fixed_ips"][0]["ip_address"] == "10.5.0.3")
    one.delete_port(ctx, victim["id"])
    again = two.create_ports(ctx, [{"network_id": net_id}])[0]
    assert again["fixed_ips"][0]["ip_address"] == "10.5.0.3"


def test_create_without_waiting(manager: NetworkManager, database: Database) -> None:
    """``create_ports_nowait`` (the API's in-place path) creates like ``create_ports`` on
    SQLite and declines (None) whenever it would have to wait for the write lock."""
    ctx = _ctx()
    net_id, sub_id = _net_subnet(manager, "10.6.0.0/24")
    if database.backend != "sqlite":
        assert manager.create_ports_nowait(ctx, [{"network_id": net_id}]) is None
        return
    docs = manager.create_ports_nowait(ctx, [{"network_id": net_id, "name": "a",
                                              "tags": ["x", "x", "b"]}])
    assert docs is not None
    assert docs[0] == manager.get_port(ctx, docs[0]["id"])
    assert docs[0]["tags"] == ["b", "x"] and docs[0]["security_groups"]
    with database.engine.connect() as other:
        other.exec_driver_sql("SELECT 1")  # BEGIN IMMEDIATE: the write lock is taken
        started = time.monotonic()
        assert manager.create_ports_nowait(ctx, [{"network_id": net_id}]) is None
        assert time.monotonic() - started < 1
        other.rollback()
    with pytest.raises(APIError) as exc:  # API errors are raised as usual, nothing written
        manager.create_ports_nowait(ctx, [{"network_id": net_id},
                                          {"network_id": str(uuid.uuid4())}])
    assert exc.value.status == 404
    assert len(manager.list_ports(ctx)) == 1
    started = time.monotonic()  # and it never keeps the write lock
    manager.create_ports(ctx, [{"network_id": net_id}])
    assert time.monotonic() - started < 5
    conns = [database.engine.raw_connection() for _ in range(database.engine.pool.size())]
    try:  # every pooled connection has its busy timeout back
        assert {c.driver_connection.execute("PRAGMA busy_timeout").fetchone()[0]
                for c in conns} == {30000}
    finally:
        for c in conns:
            c.close()


def test_create_without_waiting_on_the_driver(manager: NetworkManager,
                                              database: Database) -> None:
    """The in-place path writes on the sqlite3 connection itself: what it writes reads back
    through the ORM exactly as its answer says (JSON, booleans, timestamps, addresses),
    requests that need the ORM still work, and errors, quota and clashes behave as in
    ``create_ports``."""
    if database.backend != "sqlite":
        return
    ctx = _ctx("proj-d")
    admin = _ctx("admin-p", admin=True)
    net_id, sub_id = _net_subnet(manager, "10.7.0.0/24")
    net = manager.create_networks(ctx, [{"name": "d"}])[0]
    manager.create_subnets(ctx, [{"network_id": net["id"], "cidr": "10.8.0.0/24",
                                  "ip_version": 4}])
    manager.create_subnets(ctx, [{"network_id": net["id"], "cidr": "fd00:8::/64",
                                  "ip_version": 6, "ipv6_address_mode": "slaac",
                                  "ipv6_ra_mode": "slaac"}])
    # The project's first port creates its default group (through the ORM).
    first = manager.create_ports_nowait(ctx, [{"network_id": net["id"]}])
    assert first is not None and len(first[0]["security_groups"]) == 1
    group = first[0]["security_groups"][0]
    body = {"network_id": net["id"], "name": "p", "admin_state_up": False,
            "tags": ["t2", "t1"], "allowed_address_pairs": [{"ip_address": "10.9.0.0/24"}],
            "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400"}],
            "binding:profile": {"k": [1, None, "x"]}, "security_groups": [group],
            "fixed_ips": [{"subnet_id": [s for s in first[0]["fixed_ips"]
                                         if ":" not in s["ip_address"]][0]["subnet_id"],
                           "ip_address": "10.8.0.77"}],
            "mac_address": "FA:16:3E:00:00:77", "project_id": "proj-d"}
    # binding:profile is a service-only attribute in Neutron's defaults (what Nova sets).
    service = RequestContext(user_id="u-nova", project_id="service",
                             roles=["service", "admin", "member", "reader"])
    docs = manager.create_ports_nowait(service, [body])
    assert docs is not None
    port = docs[0]
    assert port == manager.get_port(admin, port["id"])
    assert port["admin_state_up"] is False and port["mac_address"] == "fa:16:3e:00:00:77"
    assert port["binding:profile"] == {"k": [1, None, "x"]} and port["tags"] == ["t1", "t2"]
    assert [ip["ip_address"] for ip in port["fixed_ips"]] == ["10.8.0.77"]
    again = manager.create_ports_nowait(ctx, [{"network_id": net["id"]}] * 2)
    assert again is not None
    assert all(len(p["fixed_ips"]) == 2 for p in again)  # IPv4 and SLAAC
    assert all(p == manager.get_port(ctx, p["id"]) for p in again)
    count = len(manager.list_ports(ctx))
    for bad, status, kind in (
            ({"fixed_ips": [{"ip_address": "10.8.0.77"}]}, 409, "IpAddressAlreadyAllocated"),
            ({"mac_address": "fa:16:3e:00:00:77"}, 409, "MacAddressInUse"),
            ({"security_groups": [str(uuid.uuid4())]}, 404, "SecurityGroupNotFound"),
            ({"fixed_ips": [{"subnet_id": sub_id}]}, 400, "InvalidInput"),
            ({"fixed_ips": [{"subnet_id": str(uuid.uuid4())}]}, 404, "SubnetNotFound")):
        with pytest.raises(APIError) as exc:
            manager.create_ports_nowait(ctx, [{"network_id": net["id"]}, {
                "network_id": net["id"], **bad}])
        assert (exc.value.status, exc.value.kind) == (status, kind)
    manager.update_quota(admin, "proj-d", {"port": count + 1})
    with pytest.raises(APIError) as exc:
        manager.create_ports_nowait(ctx, [{"network_id": net["id"]}] * 2)
    assert exc.value.kind == "OverQuota"
    assert len(manager.list_ports(ctx)) == count  # nothing of a failed request stays
    assert manager.create_ports_nowait(ctx, [{"network_id": net["id"]}]) is not None
    manager.update_quota(admin, "proj-d", {"port": -1})
    with database.engine.connect() as other:  # the write lock is taken: declined at once
        other.exec_driver_sql("SELECT 1")
        assert manager.create_ports_nowait(ctx, [{"network_id": net["id"]}]) is None
        other.rollback()
    started = time.monotonic()  # and it never keeps the write lock
    manager.create_ports(ctx, [{"network_id": net["id"]}])
    assert time.monotonic() - started < 5


def test_create_without_waiting_checkpoints_in_the_background(
        manager: NetworkManager, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-place path never checkpoints the WAL on its own commits (SQLite would, on the
    event loop): a thread checkpoints it every few commits without stopping writers, and
    when that leaves too many pages the path restarts the WAL after a commit."""
    if database.backend != "sqlite":
        return
    from onestack.db import sqlite_writer as module

    monkeypatch.setattr(module, "CHECKPOINT_EVERY", 5)
    monkeypatch.setattr(module, "WAL_RESTART_PAGES", 20)
    ctx = _ctx()
    net_id, _sub = _net_subnet(manager, "10.9.0.0/24")

    def wal_frames() -> int:  # pages in the WAL (a passive checkpoint also reports them)
        raw = database.engine.raw_connection()
        try:
            return int(raw.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
        finally:
            raw.close()

    def settle() -> None:  # wait for a running background checkpoint
        assert manager._inplace.checkpoint_lock.acquire(timeout=30)
        manager._inplace.checkpoint_lock.release()

    for _ in range(5):
        assert manager.create_ports_nowait(ctx, [{"network_id": net_id}]) is not None
    own = manager._inplace.conn
    assert own is not None
    raw = own.connection.driver_connection
    assert raw is not None
    assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    settle()  # the fifth commit started one; it saw the pages of everything so far
    assert manager._inplace.wal_pages > 20
    before = wal_frames()
    for _ in range(5):  # the tenth commit restarts the WAL
        assert manager.create_ports_nowait(ctx, [{"network_id": net_id}]) is not None
    assert manager._inplace.wal_pages == 0
    assert manager.create_ports_nowait(ctx, [{"network_id": net_id}]) is not None
    assert wal_frames() < before  # written again from its start
    assert len(manager.list_ports(ctx)) == 11
