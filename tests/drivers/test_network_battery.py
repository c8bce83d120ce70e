"""One battery for every network data plane (``NoopDriver``, ``LinuxDriver``), driven through
the real network manager on SQLite: the DevStack defaults, a tenant network, a router with an
interface and a gateway, a security group, a bound compute port, a floating IP; then
everything deleted again. What every driver must do: never raise, bind ports as a ``bridge``
VIF named after the network, list only agents it runs and report them alive only after a
heartbeat. The Linux driver must also have made (and afterwards removed) the host state:
bridges, a DHCP namespace with its dnsmasq, a router namespace, the firewall's tables.

The Linux variant needs root and the data-plane tools; its root side is a namespace made here.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from onestack.common.context import RequestContext
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.migrate import upgrade
from onestack.drivers.network.base import DesiredState, NetworkDriver
from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.host import Host, missing_requirements
from onestack.drivers.network.noop import NoopDriver
from onestack.network.api import build_policy
from onestack.network.manager import NetworkManager
from tests.netns import namespace

HOST = "battery-host"


@dataclass
class Plane:
    kind: str
    driver: NetworkDriver
    manager: NetworkManager
    root: str | None


def _linux(tmp: Path, root: str) -> NetworkDriver:
    from onestack.drivers.network.linux.driver import LinuxDriver, LinuxOptions

    opts = LinuxOptions(state_dir=tmp / "dataplane", host=HOST,
                        public_gateway_cidr="172.24.4.1/24", metadata_port=1,
                        metadata_secret="s", heartbeat_interval=0.5)
    return LinuxDriver(opts, host=Host(netns=root))


@pytest.fixture(params=["noop", "linux"])
def plane(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Plane]:
    if request.param == "linux" and missing_requirements():
        pytest.skip("the Linux data plane needs " + ", ".join(missing_requirements()))
    db = Database(f"sqlite:///{tmp_path / 'battery.db'}", pool_size=5)
    upgrade(db.engine)
    settings = Settings(data_dir=tmp_path, bcrypt_rounds=4, network_host=HOST)
    with namespace("bat") as root:
        driver = NoopDriver() if request.param == "noop" else _linux(tmp_path, root)
        manager = NetworkManager(db, settings, build_policy(None), driver=driver)
        manager.ensure_defaults("admin-project", None)
        manager.start_dataplane()
        try:
            yield Plane(request.param, driver, manager,
                        root if request.param == "linux" else None)
        finally:
            if request.param == "linux":
                # An empty model: the driver removes every namespace and dnsmasq it made.
                driver.sync(DesiredState())
                cast(Any, driver).wait_idle(30)
            manager.stop_dataplane()
            db.dispose()


def _idle(plane: Plane) -> None:
    wait = getattr(plane.driver, "wait_idle", None)
    if wait is not None:
        assert wait(30), "the data plane did not converge in 30 s"


def _ctx(project: str = "p1") -> RequestContext:
    return RequestContext(user_id="u", project_id=project, roles=["member", "reader"])


def _links(root: str) -> dict[str, Any]:
    out = subprocess.run(["ip", "-n", root, "-j", "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def _netns() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def test_battery(plane: Plane) -> None:
    m, ctx, admin = plane.manager, _ctx(), RequestContext.admin()
    public = next(n for n in m.list_networks(admin) if n["name"] == "public")
    net = m.create_networks(ctx, [{"name": "bat-net"}])[0]
    sub = m.create_subnets(ctx, [{"network_id": net["id"], "cidr": "10.77.0.0/24",
                                  "ip_version": 4}])[0]
    router = m.create_routers(ctx, [{"name": "bat-r", "external_gateway_info": {
        "network_id": public["id"]}}])[0]
    m.add_router_interface(ctx, router["id"], {"subnet_id": sub["id"]})
    group = m.create_security_groups(ctx, [{"name": "bat-sg"}])[0]
    port = m.create_port_for_device(ctx, net["id"], "server-1",
                                    security_groups=[group["id"]], host=HOST)
    assert port["binding:vif_type"] == "bridge"
    assert port["binding:vif_details"]["bridge_name"] == names.bridge(net["id"])
    fip = m.create_floatingips(ctx, [{"floating_network_id": public["id"],
                                      "port_id": port["id"]}])[0]
    _idle(plane)

    agents = m.list_agents(admin)
    if plane.kind == "noop":
        assert agents == []
    else:
        assert {a["agent_type"] for a in agents} == {
            "Linux bridge agent", "DHCP agent", "L3 agent", "Metadata agent"}
        assert all(a["alive"] for a in agents), agents
        root = plane.root
        assert root is not None
        links = _links(root)
        assert names.bridge(net["id"]) in links and names.bridge(public["id"]) in links
        assert f"qdhcp-{net['id']}" in _netns() and f"qrouter-{router['id']}" in _netns()
        pids = subprocess.run(["ip", "netns", "pids", f"qdhcp-{net['id']}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert len(pids) == 1, pids  # one dnsmasq
        nat = subprocess.run(["ip", "netns", "exec", f"qrouter-{router['id']}", "nft",
                              "list", "ruleset"], capture_output=True, text=True,
                             check=True).stdout
        assert fip["floating_ip_address"] in nat
        dhcp = [p for p in m.list_ports(admin, network_id=net["id"])
                if p["device_owner"] == "network:dhcp"]
        assert len(dhcp) == 1 and dhcp[0]["status"] == "ACTIVE"
        # no tap yet: the compute port is bound but not wired
        assert m.get_port(admin, port["id"])["status"] == "DOWN"

    # disassociated: the router forgets it at once (no full sync needed)
    m.update_floatingip(ctx, fip["id"], {"port_id": None})
    _idle(plane)
    if plane.kind == "linux":
        nat = subprocess.run(["ip", "netns", "exec", f"qrouter-{router['id']}", "nft",
                              "list", "ruleset"], capture_output=True, text=True,
                             check=True).stdout
        assert fip["floating_ip_address"] not in nat

    # everything goes away again
    m.delete_floatingip(ctx, fip["id"])
    m.delete_port(admin, port["id"])
    m.remove_router_interface(ctx, router["id"], {"subnet_id": sub["id"]})
    m.delete_router(ctx, router["id"])
    m.delete_security_group(ctx, group["id"])
    m.delete_network(ctx, net["id"])
    _idle(plane)
    if plane.kind == "linux":
        plane.driver.sync(m.desired_state())  # a full reconcile removes what is left
        _idle(plane)
        assert f"qdhcp-{net['id']}" not in _netns()
        assert f"qrouter-{router['id']}" not in _netns()
        assert plane.root is not None and names.bridge(net["id"]) not in _links(plane.root)
