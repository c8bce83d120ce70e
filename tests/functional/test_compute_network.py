"""Compute with networking: ports at boot, addresses, floating IPs, interfaces, cleanup.

One ``onestack up`` (fake hypervisor, two hosts) for the module. The CLI flow is the seed's:
``openstack server create --network private``, ``floating ip create public``,
``server add floating ip``, ``server show`` (addresses), ``port list --server``,
``server add/remove port``. The HTTP tests pin Nova's 400/409 rules and the rollback of a
failed create (nothing left behind).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests import image_samples
from tests.conftest import RunningCloud, start_cloud


@pytest.fixture(scope="module")
def nc() -> Iterator[RunningCloud]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-compute-net-"))
    c = start_cloud(tmp / "data", args=["--fake-hosts", "2"])
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class Http:
    """A token-holding client of one service."""

    def __init__(self, base: str, token: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = {"X-Auth-Token": token, **(headers or {})}
        self.http = httpx.Client(timeout=30)

    def __call__(self, method: str, path: str, body: Any = None,
                 **headers: str) -> httpx.Response:
        return self.http.request(method, self.base + path, json=body,
                                 headers={**self.headers, **headers})


@pytest.fixture(scope="module")
def member(nc: RunningCloud) -> dict[str, Any]:
    """A fresh project with its own network ``net1`` (subnet 10.10.0.0/24)."""
    user, pw, project = nc.make_member("cnet")
    token = nc.token(user, pw, project)
    net = Http(nc.url("network") + "/v2.0", token)
    n1 = net("POST", "/networks", {"network": {"name": "net1"}}).json()["network"]
    r = net("POST", "/subnets", {"subnet": {"network_id": n1["id"], "ip_version": 4,
                                            "cidr": "10.10.0.0/24", "name": "sub1"}})
    assert r.status_code == 201, r.text
    compute = Http(nc.url("compute") + "/v2.1", token,
                   {"OpenStack-API-Version": "compute 2.79"})
    return {"net": net, "compute": compute, "net1": n1["id"], "user": user, "pw": pw,
            "project": project, "token": token}


@pytest.fixture(scope="module")
def image_id(nc: RunningCloud) -> str:
    h = {"X-Auth-Token": nc.token()}
    img = httpx.post(nc.url("image") + "/v2/images", headers=h, json={
        "name": "cirros", "disk_format": "qcow2", "container_format": "bare",
        "visibility": "public"}).json()
    r = httpx.put(nc.url("image") + f"/v2/images/{img['id']}/file",
                  content=image_samples.qcow2(length=1024),
                  headers={**h, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return str(img["id"])


def osc_json(cloud: RunningCloud, *args: str) -> Any:
    return json.loads(cloud.openstack(*args, "-f", "json").stdout)


def wait_active(c: Http, sid: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        s = c("GET", f"/servers/{sid}").json()["server"]
        if s["status"] == "ACTIVE" and s["OS-EXT-STS:task_state"] is None:
            return dict(s)
        assert s["status"] != "ERROR", s.get("fault")
        assert time.monotonic() < deadline, s["status"]
        time.sleep(0.05)


def wait_gone(c: Http, sid: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while c("GET", f"/servers/{sid}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def project_ports(m: dict[str, Any]) -> list[dict[str, Any]]:
    return list(m["net"]("GET", "/ports").json()["ports"])


def boot(m: dict[str, Any], image: str, name: str, networks: Any, **extra: Any
         ) -> httpx.Response:
    return m["compute"]("POST", "/servers", {"server": {
        "name": name, "imageRef": image, "flavorRef": "42", "networks": networks, **extra}})


# ---------------------------------------------------------------------------- the CLI flow
def test_cli_server_with_network_floating_ip_and_ports(nc: RunningCloud,
                                                       tmp_path: Path) -> None:
    cloud = nc
    image = tmp_path / "cirros.img"
    image.write_bytes(image_samples.qcow2(length=65536))
    cloud.openstack("image", "create", "cirros-cli", "--file", str(image), "--disk-format",
                    "qcow2", "--container-format", "bare", "--public")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = tmp_path / "id_rsa.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH))
    cloud.openstack("keypair", "create", "--public-key", str(pub), "mykey")

    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "cirros-cli",
                    "--network", "private", "--key-name", "mykey", "vm1", "--wait")
    shown = osc_json(cloud, "server", "show", "vm1")
    assert shown["status"] == "ACTIVE"
    ports = osc_json(cloud, "port", "list", "--server", "vm1")
    assert len(ports) == 1
    fixed = ports[0]["Fixed IP Addresses"][0]["ip_address"]
    assert fixed in json.dumps(shown["addresses"]) and "private" in json.dumps(
        shown["addresses"])
    port = osc_json(cloud, "port", "show", ports[0]["ID"])
    assert port["binding_host_id"] == shown["OS-EXT-SRV-ATTR:host"]
    assert port["device_owner"] == "compute:nova" and port["status"] == "ACTIVE"

    fip = osc_json(cloud, "floating", "ip", "create", "public")["floating_ip_address"]
    cloud.openstack("server", "add", "floating", "ip", "vm1", fip)
    addresses = json.dumps(osc_json(cloud, "server", "show", "vm1")["addresses"])
    assert fixed in addresses and fip in addresses

    # A user's port: attach, detach (it survives, released).
    cloud.openstack("port", "create", "--network", "private", "p-user")
    cloud.openstack("server", "add", "port", "vm1", "p-user")
    assert len(osc_json(cloud, "port", "list", "--server", "vm1")) == 2
    cloud.openstack("server", "remove", "port", "vm1", "p-user")
    assert len(osc_json(cloud, "port", "list", "--server", "vm1")) == 1
    user_port = osc_json(cloud, "port", "show", "p-user")
    assert user_port["device_id"] == "" and user_port["device_owner"] == ""

    # add/remove fixed ip (interface attach with an address; removeFixedIp at 2.1).
    cidr = osc_json(cloud, "subnet", "show", "private-subnet")["cidr"]
    extra = str(ipaddress.ip_network(cidr)[-7])
    cloud.openstack("server", "add", "fixed", "ip", "vm1", "private", "--fixed-ip-address",
                    extra)
    assert extra in json.dumps(osc_json(cloud, "server", "show", "vm1")["addresses"])
    cloud.openstack("server", "remove", "fixed", "ip", "vm1", extra)
    assert extra not in json.dumps(osc_json(cloud, "server", "show", "vm1")["addresses"])

    # A server booted on the user's port: delete keeps that port, drops compute's ports.
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "cirros-cli",
                    "--port", "p-user", "vm2", "--wait")
    assert osc_json(cloud, "port", "show", "p-user")["device_id"] != ""
    vm1_ports = [p["ID"] for p in osc_json(cloud, "port", "list", "--server", "vm1")]
    cloud.openstack("server", "delete", "vm1", "vm2", "--wait")
    remaining = {p["ID"] for p in osc_json(cloud, "port", "list")}
    assert not set(vm1_ports) & remaining
    user_port = osc_json(cloud, "port", "show", "p-user")
    assert user_port["device_id"] == "" and user_port["binding_host_id"] in ("", None)
    fip_doc = osc_json(cloud, "floating", "ip", "show", fip)
    assert not fip_doc["port_id"]


# ---------------------------------------------------------------------------- HTTP rules
def test_boot_on_network_addresses_and_interfaces(member: dict[str, Any],
                                                  image_id: str) -> None:
    c = member["compute"]
    r = boot(member, image_id, "a1", [{"uuid": member["net1"]}])
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    s = wait_active(c, sid)
    entries = s["addresses"]["net1"]
    assert len(entries) == 1 and entries[0]["version"] == 4
    assert entries[0]["OS-EXT-IPS:type"] == "fixed"
    assert entries[0]["addr"].startswith("10.10.0.")
    assert entries[0]["OS-EXT-IPS-MAC:mac_addr"].count(":") == 5
    ips = c("GET", f"/servers/{sid}/ips").json()["addresses"]
    assert ips == {"net1": [{"version": 4, "addr": entries[0]["addr"]}]}
    assert c("GET", f"/servers/{sid}/ips/net1").json() == {"net1": ips["net1"]}
    listed = c("GET", "/servers/detail").json()["servers"]
    assert [x["addresses"] for x in listed if x["id"] == sid] == [s["addresses"]]
    found = c("GET", f"/servers?ip={entries[0]['addr'].replace('.', '[.]')}$").json()
    assert [x["id"] for x in found["servers"]] == [sid]

    ifaces = c("GET", f"/servers/{sid}/os-interface").json()["interfaceAttachments"]
    assert len(ifaces) == 1 and ifaces[0]["net_id"] == member["net1"]
    r = c("POST", f"/servers/{sid}/os-interface",
          {"interfaceAttachment": {"net_id": member["net1"],
                                   "fixed_ips": [{"ip_address": "10.10.0.200"}]}})
    assert r.status_code == 200, r.text
    att = r.json()["interfaceAttachment"]
    assert att["fixed_ips"][0]["ip_address"] == "10.10.0.200"
    shown = c("GET", f"/servers/{sid}/os-interface/{att['port_id']}").json()
    assert shown["interfaceAttachment"]["port_id"] == att["port_id"]
    # The same address again: 409 (interface attach), like Nova.
    r = c("POST", f"/servers/{sid}/os-interface",
          {"interfaceAttachment": {"net_id": member["net1"],
                                   "fixed_ips": [{"ip_address": "10.10.0.200"}]}})
    assert r.status_code == 409, r.text
    # The hypervisor got the NIC (the fake driver logs it on the guest's console).
    console = c("POST", f"/servers/{sid}/action", {"os-getConsoleOutput": {}})
    assert f"nic {att['port_id']} added" in console.json()["output"]
    r = c("DELETE", f"/servers/{sid}/os-interface/{att['port_id']}")
    assert r.status_code == 202
    assert c("DELETE", f"/servers/{sid}/os-interface/{att['port_id']}").status_code == 404
    # Both changes are instance actions with their successful compute event (what
    # Tempest's wait_for_interface_detach reads).
    action = c("GET", f"/servers/{sid}/os-instance-actions/"
                      f"{r.headers['x-openstack-request-id']}").json()["instanceAction"]
    assert action["action"] == "detach_interface"
    assert [(e["event"], e["result"]) for e in action["events"]] == [
        ("compute_detach_interface", "Success")]
    actions = c("GET", f"/servers/{sid}/os-instance-actions").json()["instanceActions"]
    assert "attach_interface" in [a["action"] for a in actions]
    console = c("POST", f"/servers/{sid}/action", {"os-getConsoleOutput": {}})
    assert f"nic {att['port_id']} removed" in console.json()["output"]
    assert len(c("GET", f"/servers/{sid}/os-interface").json()["interfaceAttachments"]) == 1

    before = {p["id"] for p in project_ports(member)}
    assert c("DELETE", f"/servers/{sid}").status_code == 204
    wait_gone(c, sid)
    left = {p["id"] for p in project_ports(member)}
    assert left == before - {ifaces[0]["port_id"]}


def test_create_errors_are_novas_and_leave_nothing(member: dict[str, Any],
                                                   image_id: str) -> None:
    c, net = member["compute"], member["net"]
    before_ports = {p["id"] for p in project_ports(member)}
    before_servers = {s["id"] for s in c("GET", "/servers").json()["servers"]}
    # Unknown network / port: 400.
    r = boot(member, image_id, "bad", [{"uuid": "11111111-1111-1111-1111-111111111111"}])
    assert r.status_code == 400 and "could not be found" in r.json()["badRequest"]["message"]
    r = boot(member, image_id, "bad", [{"port": "11111111-1111-1111-1111-111111111111"}])
    assert r.status_code == 400, r.text
    r = boot(member, image_id, "bad", [{"uuid": "not-a-uuid"}])
    assert r.status_code == 400
    # A port already used by a device: 409.
    used = net("POST", "/ports", {"port": {"network_id": member["net1"],
                                           "device_id": "someone-else"}}).json()["port"]
    r = boot(member, image_id, "bad", [{"port": used["id"]}])
    assert r.status_code == 409 and "still in use" in r.json()["conflictingRequest"]["message"]
    # An address already taken: Nova's FixedIpAlreadyInUse (400 at create).
    taken = used["fixed_ips"][0]["ip_address"]
    r = boot(member, image_id, "bad", [{"uuid": member["net1"], "fixed_ip": taken}])
    assert r.status_code == 400 and "already in use" in r.json()["badRequest"]["message"]
    # A port or a fixed IP with several servers: 400.
    r = boot(member, image_id, "bad", [{"uuid": member["net1"], "fixed_ip": "10.10.0.99"}],
             max_count=2)
    assert r.status_code == 400
    # Unknown security group: 400.
    r = boot(member, image_id, "bad", [{"uuid": member["net1"]}],
             security_groups=[{"name": "nope"}])
    assert r.status_code == 400
    # The first port is made, the second cannot be (address outside the subnet): rolled back.
    r = boot(member, image_id, "bad", [{"uuid": member["net1"]},
                                       {"uuid": member["net1"], "fixed_ip": "10.99.0.5"}])
    assert r.status_code == 400, r.text
    net("DELETE", f"/ports/{used['id']}")
    assert {p["id"] for p in project_ports(member)} == before_ports
    assert {s["id"] for s in c("GET", "/servers").json()["servers"]} == before_servers


def test_auto_none_ambiguous_and_security_groups(nc: RunningCloud, image_id: str) -> None:
    user, pw, project = nc.make_member("cauto")
    token = nc.token(user, pw, project)
    net = Http(nc.url("network") + "/v2.0", token)
    m = {"net": net, "compute": Http(nc.url("compute") + "/v2.1", token,
                                     {"OpenStack-API-Version": "compute 2.79"})}
    c = m["compute"]
    # No network of its own (private belongs to demo): "auto" is 400, "none" boots.
    r = boot(m, image_id, "auto0", "auto")
    assert r.status_code == 400, r.text
    r = boot(m, image_id, "none0", "none")
    assert r.status_code == 202
    none_id = r.json()["server"]["id"]
    assert wait_active(c, none_id)["addresses"] == {}
    nets = []
    for i in (1, 2):
        n = net("POST", "/networks", {"network": {"name": f"n{i}"}}).json()["network"]
        net("POST", "/subnets", {"subnet": {"network_id": n["id"], "ip_version": 4,
                                            "cidr": f"10.2{i}.0.0/24"}})
        nets.append(n["id"])
    sg = net("POST", "/security-groups", {"security_group": {"name": "web"}}).json()[
        "security_group"]
    # One network: "auto" uses it, two of them per request (max_count), each with a port.
    net("DELETE", f"/networks/{nets[1]}")
    r = boot(m, image_id, "auto1", "auto", max_count=2, security_groups=[{"name": "web"}])
    assert r.status_code == 202, r.text
    servers = [s for s in c("GET", "/servers/detail").json()["servers"]
               if s["name"].startswith("auto1")]
    assert len(servers) == 2
    for s in servers:
        wait_active(c, s["id"])
        ports = net("GET", f"/ports?device_id={s['id']}").json()["ports"]
        assert len(ports) == 1 and ports[0]["security_groups"] == [sg["id"]]
        groups = c("GET", f"/servers/{s['id']}/os-security-groups").json()["security_groups"]
        assert [g["name"] for g in groups] == ["web"]
    # Two usable networks: "auto" is ambiguous (409).
    n = net("POST", "/networks", {"network": {"name": "n3"}}).json()["network"]
    net("POST", "/subnets", {"subnet": {"network_id": n["id"], "ip_version": 4,
                                        "cidr": "10.23.0.0/24"}})
    r = boot(m, image_id, "auto2", "auto")
    assert r.status_code == 409, r.text
    for s in [*servers, {"id": none_id}]:
        c("DELETE", f"/servers/{s['id']}")
    for s in servers:
        wait_gone(c, s["id"])
    assert not [p for p in net("GET", "/ports").json()["ports"]
                if p["device_owner"].startswith("compute:")]


def test_port_security_disabled_network(member: dict[str, Any], image_id: str) -> None:
    """On a network with port security off a server gets a port without security groups
    when it asked for none but the default group (Nova's rule); asking for another group
    cannot be honoured there and is refused, leaving nothing behind."""
    c, net = member["compute"], member["net"]
    n = net("POST", "/networks", {"network": {"name": "nosec",
                                              "port_security_enabled": False}}).json()["network"]
    r = net("POST", "/subnets", {"subnet": {"network_id": n["id"], "ip_version": 4,
                                            "cidr": "10.11.0.0/24"}})
    assert r.status_code == 201, r.text
    r = boot(member, image_id, "nosec1", [{"uuid": n["id"]}])
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    wait_active(c, sid)
    ports = net("GET", f"/ports?device_id={sid}").json()["ports"]
    assert len(ports) == 1 and ports[0]["security_groups"] == []
    assert ports[0]["port_security_enabled"] is False
    sg = net("POST", "/security-groups", {"security_group": {"name": "web"}}).json()
    before = {p["id"] for p in project_ports(member)}
    r = boot(member, image_id, "nosec2", [{"uuid": n["id"]}],
             security_groups=[{"name": sg["security_group"]["name"]}])
    if r.status_code == 202:  # refused while building instead: the server ends in ERROR
        sid2 = r.json()["server"]["id"]
        deadline = time.monotonic() + 20
        while c("GET", f"/servers/{sid2}").json()["server"]["status"] != "ERROR":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    else:
        assert r.status_code == 400, r.text
    assert {p["id"] for p in project_ports(member)} == before
    assert c("DELETE", f"/servers/{sid}").status_code == 204


# ---------------------------------------------------------------------------- Nova's proxies
def test_nova_network_proxies(nc: RunningCloud, member: dict[str, Any], image_id: str) -> None:
    """os-security-groups(-rules), os-floating-ips(-pools), add/removeFloatingIp and
    os-(tenant-)networks at 2.35, Nova's shapes and codes; 404 from 2.36."""
    old = Http(nc.url("compute") + "/v2.1", member["token"],
               {"OpenStack-API-Version": "compute 2.35"})
    new = member["compute"]  # 2.79
    assert new("GET", "/os-security-groups").status_code == 404
    assert new("GET", "/os-floating-ips").status_code == 404

    # ---- security groups and rules
    for bad in ({"name": "", "description": "d"}, {"name": "x", "description": " "},
                {"name": "x" * 256, "description": "d"}, {"description": "d"}):
        r = old("POST", "/os-security-groups", {"security_group": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["badRequest"]["code"] == 400
    r = old("POST", "/os-security-groups", {"security_group": {"name": "web",
                                                               "description": "web tier"}})
    assert r.status_code == 200, r.text
    sg = r.json()["security_group"]
    assert sg["rules"] == [] and len(sg["tenant_id"]) == 32
    names = [g["name"] for g in old("GET", "/os-security-groups").json()["security_groups"]]
    assert "web" in names and "default" in names
    rule = {"parent_group_id": sg["id"], "ip_protocol": "tcp", "from_port": 22,
            "to_port": 22}
    r = old("POST", "/os-security-group-rules", {"security_group_rule": rule})
    assert r.status_code == 200, r.text
    made = r.json()["security_group_rule"]
    assert made["ip_range"] == {"cidr": "0.0.0.0/0"} and made["from_port"] == 22
    assert old("POST", "/os-security-group-rules",
               {"security_group_rule": rule}).status_code == 400  # duplicate
    for bad in ({**rule, "from_port": 30, "to_port": 20}, {**rule, "ip_protocol": "gre"},
                {**rule, "cidr": "10.0.0.0/0"}, {"parent_group_id": sg["id"]},
                {**rule, "from_port": "x"}):
        r = old("POST", "/os-security-group-rules", {"security_group_rule": bad})
        assert r.status_code == 400, (bad, r.text)
    r = old("POST", "/os-security-group-rules", {"security_group_rule": {
        **rule, "parent_group_id": str(uuid.uuid4())}})
    assert r.status_code == 404
    shown = old("GET", f"/os-security-groups/{sg['id']}").json()["security_group"]
    assert [x["id"] for x in shown["rules"]] == [made["id"]]  # ingress only
    r = old("PUT", f"/os-security-groups/{sg['id']}",
            {"security_group": {"name": "web2", "description": "renamed"}})
    assert r.status_code == 200 and r.json()["security_group"]["name"] == "web2"
    assert old("GET", f"/os-security-groups/{uuid.uuid4()}").status_code == 404
    assert old("GET", "/os-security-groups/not-a-uuid").status_code == 400
    assert old("DELETE", f"/os-security-group-rules/{made['id']}").status_code == 202
    assert old("DELETE", f"/os-security-group-rules/{made['id']}").status_code == 404

    # ---- a reader sees but does not write; another project sees nothing of ours
    reader, rpw, _ = nc.make_member("cnet-reader")
    nc.openstack("role", "add", "--user", reader, "--project", member["project"], "reader")
    nc.openstack("role", "remove", "--user", reader, "--project", _, "member")
    ro = Http(nc.url("compute") + "/v2.1", nc.token(reader, rpw, member["project"]),
              {"OpenStack-API-Version": "compute 2.35"})
    assert ro("GET", f"/os-security-groups/{sg['id']}").status_code == 200
    assert ro("POST", "/os-security-groups", {"security_group": {
        "name": "x", "description": "y"}}).status_code == 403
    assert ro("DELETE", f"/os-security-groups/{sg['id']}").status_code == 403
    other, opw, oproject = nc.make_member("cnet-other")
    oc = Http(nc.url("compute") + "/v2.1", nc.token(other, opw, oproject),
              {"OpenStack-API-Version": "compute 2.35"})
    assert oc("GET", f"/os-security-groups/{sg['id']}").status_code == 404
    assert oc("DELETE", f"/os-security-groups/{sg['id']}").status_code == 404
    assert old("DELETE", f"/os-security-groups/{sg['id']}").status_code == 202

    # ---- floating IPs through Nova
    pools = old("GET", "/os-floating-ip-pools").json()["floating_ip_pools"]
    assert {"name": "public"} in pools
    assert old("POST", "/os-floating-ips", {"pool": "nope"}).status_code == 404
    r = old("POST", "/os-floating-ips", {"pool": "public"})
    assert r.status_code == 200, r.text
    fip = r.json()["floating_ip"]
    assert fip["pool"] == "public" and fip["instance_id"] is None and fip["fixed_ip"] is None
    assert old("GET", f"/os-floating-ips/{fip['id']}").json()["floating_ip"] == fip
    assert old("GET", f"/os-floating-ips/{uuid.uuid4()}").status_code == 404
    assert oc("GET", f"/os-floating-ips/{fip['id']}").status_code == 404
    net = member["net"]
    router = net("POST", "/routers", {"router": {"name": "proxy-r"}}).json()["router"]
    public = net("GET", "/networks?name=public").json()["networks"][0]["id"]
    net("PUT", f"/routers/{router['id']}", {"router": {
        "external_gateway_info": {"network_id": public}}})
    sub = net("GET", f"/subnets?network_id={member['net1']}").json()["subnets"][0]["id"]
    assert net("PUT", f"/routers/{router['id']}/add_router_interface",
               {"subnet_id": sub}).status_code == 200
    sid = boot(member, image_id, "fipvm", [{"uuid": member["net1"]}]).json()["server"]["id"]
    wait_active(new, sid)
    act = f"/servers/{sid}/action"
    assert old("POST", act, {"addFloatingIp": {"address": "bogus"}}).status_code == 400
    assert old("POST", act, {"addFloatingIp": {"address": "203.0.113.9"}}).status_code == 404
    assert old("POST", act, {"addFloatingIp": {"address": fip["ip"],
                                               "fixed_address": "10.99.0.1"}}
               ).status_code == 400
    assert old("POST", act, {"addFloatingIp": {"address": fip["ip"]}}).status_code == 202
    listed = old("GET", "/os-floating-ips").json()["floating_ips"]
    mine = next(f for f in listed if f["id"] == fip["id"])
    assert mine["instance_id"] == sid and mine["fixed_ip"].startswith("10.10.0.")
    addrs = new("GET", f"/servers/{sid}").json()["server"]["addresses"]["net1"]
    assert [a["addr"] for a in addrs if a["OS-EXT-IPS:type"] == "floating"] == [fip["ip"]]
    assert old("POST", act, {"removeFloatingIp": {"address": fip["ip"]}}).status_code == 202
    assert old("POST", act, {"removeFloatingIp": {"address": fip["ip"]}}).status_code == 409
    assert old("DELETE", f"/os-floating-ips/{fip['id']}").status_code == 202
    assert old("GET", f"/os-floating-ips/{fip['id']}").status_code == 404
    assert new("DELETE", f"/servers/{sid}").status_code == 204
    wait_gone(new, sid)
    net("PUT", f"/routers/{router['id']}/remove_router_interface", {"subnet_id": sub})
    net("DELETE", f"/routers/{router['id']}")

    # ---- networks as Nova lists them
    nets = old("GET", "/os-networks").json()["networks"]
    entry = next(x for x in nets if x["id"] == member["net1"])
    assert entry["label"] == "net1" and entry["cidr"] is None
    assert old("GET", f"/os-networks/{member['net1']}").json()["network"]["label"] == "net1"
    assert old("GET", f"/os-networks/{uuid.uuid4()}").status_code == 404
    assert old("POST", "/os-networks", {"network": {"label": "x"}}).status_code == 410
    tn = old("GET", "/os-tenant-networks").json()["networks"]
    assert {"id": member["net1"], "label": "net1", "cidr": "10.10.0.0/24"} in tn
    assert oc("GET", f"/os-tenant-networks/{member['net1']}").status_code == 404


def test_nics_keep_the_order_of_the_request(member: dict[str, Any], image_id: str) -> None:
    """The guest's NICs (and the port cache the server list shows) follow ``networks`` as
    listed, as in Nova: a user's port created before the boot does not jump ahead of the
    network listed first."""
    net, c = member["net"], member["compute"]
    n2 = net("POST", "/networks", {"network": {"name": "net-order-2"}}).json()["network"]
    r = net("POST", "/subnets", {"subnet": {"network_id": n2["id"], "ip_version": 4,
                                            "cidr": "10.12.0.0/24"}})
    assert r.status_code == 201, r.text
    port = net("POST", "/ports", {"port": {"network_id": n2["id"]}}).json()["port"]
    r = boot(member, image_id, "ordered", [{"uuid": member["net1"]}, {"port": port["id"]},
                                            {"uuid": n2["id"]}])
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    wait_active(c, sid)
    # The list reads the port cache the build recorded, in the guest's NIC order.
    (s,) = [x for x in c("GET", "/servers/detail").json()["servers"] if x["id"] == sid]
    assert list(s["addresses"]) == ["net1", "net-order-2"]
    second = [a["addr"] for a in s["addresses"]["net-order-2"]]
    assert second[0] == port["fixed_ips"][0]["ip_address"] and len(second) == 2
    assert c("DELETE", f"/servers/{sid}").status_code == 204
    wait_gone(c, sid)
    net("DELETE", f"/ports/{port['id']}")
