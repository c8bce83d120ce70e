"""Network API over HTTP: bad input gets Neutron's 4xx faults (never a 500), tenancy,
pagination, tags, revisions, quotas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCloud


class Client:
    def __init__(self, cloud: RunningCloud, token: str) -> None:
        self.http = httpx.Client(base_url=cloud.url("network") + "/v2.0",
                                 headers={"X-Auth-Token": token}, timeout=30)

    def req(self, method: str, path: str, body: Any = None, status: int | None = None,
            **kw: Any) -> Any:
        r = self.http.request(method, path, json=body, **kw)
        assert r.status_code < 500, r.text
        if status is not None:
            assert r.status_code == status, r.text
        return r.json() if r.content else None

    def create(self, coll: str, member: str, **body: Any) -> dict[str, Any]:
        return self.req("POST", f"/{coll}", {member: body}, 201)[member]


def fault(data: dict[str, Any]) -> str:
    return str(data["NeutronError"]["type"])


@pytest.fixture(scope="module")
def admin(cloud: RunningCloud) -> Client:
    return Client(cloud, cloud.token())


@pytest.fixture(scope="module")
def users(cloud: RunningCloud, admin: Client) -> Iterator[tuple[Client, Client]]:
    """Two member users in two fresh projects."""
    ident = httpx.Client(base_url=cloud.auth_url, headers={"X-Auth-Token": cloud.token()})
    roles = ident.get("/roles", params={"name": "member"}).json()["roles"]
    clients = []
    for _ in range(2):
        name = "np-" + uuid.uuid4().hex[:8]
        proj = ident.post("/projects", json={"project": {"name": name,
                                                         "domain_id": "default"}}).json()
        user = ident.post("/users", json={"user": {"name": name, "password": "Pw-12345678",
                                                   "domain_id": "default"}}).json()
        ident.put(f"/projects/{proj['project']['id']}/users/{user['user']['id']}/roles/"
                  f"{roles[0]['id']}")
        clients.append(Client(cloud, cloud.token(name, "Pw-12345678", name)))
    yield clients[0], clients[1]


def _net(c: Client, cidr: str = "10.50.0.0/24", **kw: Any) -> tuple[dict, dict]:
    net = c.create("networks", "network", name="n-" + uuid.uuid4().hex[:6], **kw)
    sub = c.create("subnets", "subnet", network_id=net["id"], cidr=cidr, ip_version=4)
    return net, sub


def test_version_and_extensions(cloud: RunningCloud, admin: Client) -> None:
    doc = httpx.get(cloud.url("network") + "/").json()
    assert doc["versions"][0]["id"] == "v2.0"
    aliases = {e["alias"] for e in admin.req("GET", "/extensions", status=200)["extensions"]}
    assert {"router", "external-net", "security-group", "quotas", "provider", "binding",
            "port-security", "allowed-address-pairs", "extraroute"} <= aliases
    assert fault(admin.req("GET", f"/networks/{uuid.uuid4()}", status=404)) == \
        "NetworkNotFound"


def test_bad_subnets(users: tuple[Client, Client]) -> None:
    a, _ = users
    net, sub = _net(a)
    for cidr in ("10.50.0.128/25", "10.50.0.0/16"):
        assert fault(a.req("POST", "/subnets", {"subnet": {
            "network_id": net["id"], "cidr": cidr, "ip_version": 4}}, 400)) == "InvalidInput"
    for cidr in ("10.60.0.5/24", "not-a-cidr", "10.60.0.0/33", "2001:db8::/64"):
        a.req("POST", "/subnets", {"subnet": {"network_id": net["id"], "cidr": cidr,
                                              "ip_version": 4}}, 400)
    a.req("POST", "/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.61.0.0/24",
                                          "ip_version": 4, "gateway_ip": "10.62.0.1"}}, 400)
    a.req("POST", "/subnets", {"subnet": {
        "network_id": net["id"], "cidr": "10.63.0.0/24", "ip_version": 4,
        "allocation_pools": [{"start": "10.64.0.2", "end": "10.64.0.9"}]}}, 400)
    nogw = a.create("subnets", "subnet", network_id=net["id"], cidr="10.65.0.0/24",
                    ip_version=4, gateway_ip=None)
    assert nogw["gateway_ip"] is None
    a.req("POST", "/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.66.0.0/24",
                                          "ip_version": 4, "bogus": 1}}, 400)
    a.req("POST", "/subnets", "not json", 400)


def test_ports_and_ipam_errors(users: tuple[Client, Client]) -> None:
    a, _ = users
    net, sub = _net(a, "10.51.0.0/24")
    p1 = a.create("ports", "port", network_id=net["id"],
                  fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.51.0.20"}])
    assert p1["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.51.0.20"}]
    assert p1["mac_address"].startswith("fa:16:3e:")
    assert len(p1["security_groups"]) == 1
    dup = a.req("POST", "/ports", {"port": {"network_id": net["id"], "fixed_ips": [
        {"ip_address": "10.51.0.20"}]}}, 409)
    assert fault(dup) == "IpAddressAlreadyAllocated"
    outside = a.req("POST", "/ports", {"port": {"network_id": net["id"], "fixed_ips": [
        {"subnet_id": sub["id"], "ip_address": "10.99.0.5"}]}}, 400)
    assert fault(outside) in ("InvalidIpForSubnet", "InvalidIpForNetwork")
    a.req("POST", "/ports", {"port": {"network_id": net["id"],
                                      "fixed_ips": [{"ip_address": "garbage"}]}}, 400)
    a.req("POST", "/ports", {"port": {"network_id": net["id"],
                                      "mac_address": "not-a-mac"}}, 400)
    a.req("POST", "/ports", {"port": {"network_id": str(uuid.uuid4())}}, 404)
    in_use = a.req("DELETE", f"/networks/{net['id']}", status=409)
    assert fault(in_use) == "NetworkInUse"
    assert fault(a.req("DELETE", f"/subnets/{sub['id']}", status=409)) == "SubnetInUse"
    # revision_number and If-Match
    rev = p1["revision_number"]
    a.req("PUT", f"/ports/{p1['id']}", {"port": {"name": "x"}}, 412,
          headers={"If-Match": f"revision_number={rev + 5}"})
    upd = a.req("PUT", f"/ports/{p1['id']}", {"port": {"name": "x"}}, 200,
                headers={"If-Match": f"revision_number={rev}"})["port"]
    assert upd["revision_number"] == rev + 1
    a.req("DELETE", f"/ports/{p1['id']}", status=204)
    again = a.create("ports", "port", network_id=net["id"],
                     fixed_ips=[{"ip_address": "10.51.0.20"}])
    a.req("DELETE", f"/ports/{again['id']}", status=204)
    a.req("DELETE", f"/networks/{net['id']}", status=204)


def test_bulk_create_is_all_or_nothing(users: tuple[Client, Client]) -> None:
    a, _ = users
    before = len(a.req("GET", "/networks", status=200)["networks"])
    a.req("POST", "/networks", {"networks": [{"name": "ok"}, {"name": "bad",
                                                              "admin_state_up": "maybe"}]}, 400)
    assert len(a.req("GET", "/networks", status=200)["networks"]) == before
    made = a.req("POST", "/networks", {"networks": [{"name": "b1"}, {"name": "b2"}]},
                 201)["networks"]
    assert [n["name"] for n in made] == ["b1", "b2"]
    for n in made:
        a.req("DELETE", f"/networks/{n['id']}", status=204)


def test_tenancy(users: tuple[Client, Client], admin: Client) -> None:
    a, b = users
    net, sub = _net(a, "10.52.0.0/24")
    assert fault(b.req("GET", f"/networks/{net['id']}", status=404)) == "NetworkNotFound"
    b.req("GET", f"/subnets/{sub['id']}", status=404)
    b.req("POST", "/ports", {"port": {"network_id": net["id"]}}, 404)
    b.req("DELETE", f"/networks/{net['id']}", status=404)
    assert net["id"] not in {n["id"] for n in b.req("GET", "/networks")["networks"]}
    assert net["id"] in {n["id"] for n in admin.req("GET", "/networks")["networks"]}
    # shared: visible, usable for ports, not deletable by others
    admin.req("PUT", f"/networks/{net['id']}", {"network": {"shared": True}}, 200)
    assert b.req("GET", f"/networks/{net['id']}", status=200)["network"]["shared"]
    port = b.create("ports", "port", network_id=net["id"])
    b.req("DELETE", f"/networks/{net['id']}", status=403)
    a.req("PUT", f"/networks/{net['id']}", {"network": {"shared": False}}, 403)
    # non-admins may not create shared/provider networks
    b.req("POST", "/networks", {"network": {"shared": True}}, 403)
    b.req("POST", "/networks", {"network": {"provider:network_type": "vxlan"}}, 403)
    b.req("DELETE", f"/ports/{port['id']}", status=204)
    a.req("DELETE", f"/networks/{net['id']}", status=204)
    # the external public network is visible to everyone, its subnets are not listed
    public = [n for n in b.req("GET", "/networks", params={"name": "public"})["networks"]]
    assert public and public[0]["router:external"]


def test_routers_and_floating_ips(users: tuple[Client, Client], admin: Client) -> None:
    a, _ = users
    public = a.req("GET", "/networks", params={"name": "public"})["networks"][0]
    net, sub = _net(a, "10.53.0.0/24")
    port = a.create("ports", "port", network_id=net["id"])
    fip = a.create("floatingips", "floatingip", floating_network_id=public["id"])
    assert fip["status"] == "DOWN"
    # no router joins the port's subnet to public yet
    err = a.req("PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}},
                404)
    assert fault(err) == "ExternalGatewayForFloatingIPNotFound"
    router = a.create("routers", "router", name="r")
    a.req("PUT", f"/routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": net["id"]}}}, 400)
    a.req("PUT", f"/routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": str(uuid.uuid4())}}}, 404)
    gw = a.req("PUT", f"/routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": public["id"]}}}, 200)["router"]["external_gateway_info"]
    assert gw["external_fixed_ips"][0]["ip_address"].startswith("172.24.4.")
    itf = a.req("PUT", f"/routers/{router['id']}/add_router_interface",
                {"subnet_id": sub["id"]}, 200)
    assert itf["subnet_id"] == sub["id"]
    a.req("PUT", f"/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]},
          400)
    assoc = a.req("PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}},
                  200)["floatingip"]
    assert assoc["router_id"] == router["id"] and assoc["status"] == "ACTIVE"
    assert fault(a.req("DELETE", f"/routers/{router['id']}", status=409)) == "RouterInUse"
    a.req("PUT", f"/routers/{router['id']}/remove_router_interface",
          {"subnet_id": sub["id"]}, 409)
    # extra routes must use a connected next hop
    a.req("PUT", f"/routers/{router['id']}", {"router": {"routes": [
        {"destination": "192.0.2.0/24", "nexthop": "10.99.0.1"}]}}, 400)
    routed = a.req("PUT", f"/routers/{router['id']}", {"router": {"routes": [
        {"destination": "192.0.2.0/24", "nexthop": "10.53.0.9"}]}}, 200)["router"]
    assert routed["routes"] == [{"destination": "192.0.2.0/24", "nexthop": "10.53.0.9"}]
    a.req("PUT", f"/routers/{router['id']}", {"router": {"routes": []}}, 200)
    a.req("PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": None}}, 200)
    a.req("DELETE", f"/ports/{port['id']}", status=204)
    a.req("PUT", f"/routers/{router['id']}/remove_router_interface",
          {"subnet_id": sub["id"]}, 200)
    a.req("DELETE", f"/floatingips/{fip['id']}", status=204)
    a.req("DELETE", f"/routers/{router['id']}", status=204)
    a.req("DELETE", f"/networks/{net['id']}", status=204)


def test_security_groups(users: tuple[Client, Client]) -> None:
    a, b = users
    groups = a.req("GET", "/security-groups")["security_groups"]
    default = [g for g in groups if g["name"] == "default"]
    assert len(default) == 1
    rules = default[0]["security_group_rules"]
    assert {(r["direction"], r["ethertype"], r["remote_group_id"]) for r in rules} == {
        ("egress", "IPv4", None), ("egress", "IPv6", None),
        ("ingress", "IPv4", default[0]["id"]), ("ingress", "IPv6", default[0]["id"])}
    a.req("POST", "/security-groups", {"security_group": {"name": "default"}}, 409)
    sg = a.create("security-groups", "security_group", name="web")
    rule = a.create("security-group-rules", "security_group_rule", security_group_id=sg["id"],
                    direction="ingress", protocol="tcp", port_range_min=80, port_range_max=80)
    assert fault(a.req("POST", "/security-group-rules", {"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp",
        "port_range_min": 80, "port_range_max": 80}}, 409)) == "SecurityGroupRuleExists"
    for bad in ({"protocol": "nope"}, {"ethertype": "IPv5"}, {"protocol": "tcp",
                "port_range_min": 90, "port_range_max": 80},
                {"remote_ip_prefix": "10.0.0.0/99"}, {"direction": "sideways"}):
        body = {"security_group_id": sg["id"], "direction": "ingress", **bad}
        a.req("POST", "/security-group-rules", {"security_group_rule": body}, 400)
    proto = a.create("security-group-rules", "security_group_rule", security_group_id=sg["id"],
                     direction="ingress", protocol="17", remote_ip_prefix="10.0.0.0/8")
    assert proto["protocol"] == "17"
    b.req("GET", f"/security-groups/{sg['id']}", status=404)
    a.req("DELETE", f"/security-group-rules/{rule['id']}", status=204)
    a.req("DELETE", f"/security-groups/{sg['id']}", status=204)


def test_filters_sort_pagination_fields_tags(users: tuple[Client, Client]) -> None:
    a, _ = users
    made = [a.create("networks", "network", name=f"pg-{i}") for i in range(5)]
    names = a.req("GET", "/networks", params={"sort_key": "name", "sort_dir": "desc",
                                              "fields": ["id", "name"]})["networks"]
    ours = [n["name"] for n in names if n["name"].startswith("pg-")]
    assert ours == sorted(ours, reverse=True)
    assert set(names[0]) == {"id", "name"}
    page = a.req("GET", "/networks", params={"limit": 2, "sort_key": "name"})
    assert len(page["networks"]) == 2 and page["networks_links"][0]["rel"] == "next"
    seen = []
    url: str | None = "/networks?limit=2&sort_key=name"
    while url:
        doc = a.req("GET", url.replace(str(a.http.base_url), ""))
        seen += [n["id"] for n in doc["networks"]]
        url = next((lnk["href"] for lnk in doc["networks_links"] if lnk["rel"] == "next"),
                   None)
    assert len(seen) == len(set(seen)) and {n["id"] for n in made} <= set(seen)
    a.req("GET", "/networks", params={"nonsense": "1"}, status=400)
    a.req("PUT", f"/networks/{made[0]['id']}/tags/red", status=201)
    a.req("PUT", f"/networks/{made[1]['id']}/tags", {"tags": ["red", "blue"]}, 200)
    red = a.req("GET", "/networks", params={"tags": "red"})["networks"]
    assert {n["id"] for n in red} == {made[0]["id"], made[1]["id"]}
    both = a.req("GET", "/networks", params={"tags": "red,blue"})["networks"]
    assert [n["id"] for n in both] == [made[1]["id"]]
    a.req("GET", f"/networks/{made[0]['id']}/tags/red", status=204)
    a.req("DELETE", f"/networks/{made[0]['id']}/tags/red", status=204)
    a.req("GET", f"/networks/{made[0]['id']}/tags/red", status=404)
    assert a.req("GET", "/networks", params={"name": "pg-3"})["networks"][0]["name"] == "pg-3"
    for n in made:
        a.req("DELETE", f"/networks/{n['id']}", status=204)


def test_quotas(cloud: RunningCloud, users: tuple[Client, Client], admin: Client) -> None:
    a, b = users
    project = a.req("GET", "/quotas/tenant")["tenant"]["tenant_id"]
    assert a.req("GET", f"/quotas/{project}/default")["quota"]["router"] == 10
    b.req("GET", f"/quotas/{project}/default", status=403)  # another project's
    assert admin.req("GET", f"/quotas/{project}/default")["quota"]["router"] == 10
    admin.req("PUT", f"/quotas/{project}", {"quota": {"router": 1}}, 200)
    r = a.create("routers", "router", name="q1")
    over = a.req("POST", "/routers", {"router": {"name": "q2"}}, 409)
    assert fault(over) == "OverQuota"
    details = a.req("GET", f"/quotas/{project}/details")["quota"]
    assert details["router"] == {"limit": 1, "used": 1, "reserved": 0}
    a.req("PUT", f"/quotas/{project}", {"quota": {"router": 5}}, 403)
    admin.req("PUT", f"/quotas/{project}", {"quota": {"router": "lots"}}, 400)
    admin.req("DELETE", f"/quotas/{project}", status=204)
    assert a.req("GET", f"/quotas/{project}")["quota"]["router"] == 10
    a.req("DELETE", f"/routers/{r['id']}", status=204)


def test_agents_and_availability(admin: Client, users: tuple[Client, Client]) -> None:
    assert admin.req("GET", "/agents")["agents"] == []  # the noop data plane runs none
    assert users[0].req("GET", "/agents")["agents"] == []
    zones = admin.req("GET", "/availability_zones")["availability_zones"]
    assert {"name": "nova", "resource": "network", "state": "available"} in zones
    avail = admin.req("GET", "/network-ip-availabilities")["network_ip_availabilities"]
    public = next(x for x in avail if x["network_name"] == "public")
    assert public["total_ips"] == 253 and public["used_ips"] >= 1
