"""The L3 component's pure parts: the router plan, the NAT table text, reading ``ip -j``."""

from __future__ import annotations

from pathlib import Path

from onestack.drivers.network.linux.driver import LinuxOptions
from onestack.drivers.network.linux.host import Host
from onestack.drivers.network.linux.l3 import (
    L3,
    NAT_TABLE,
    parse_state,
    plan_router,
    render_external_nat,
    render_nat,
    wanted,
)
from onestack.drivers.network.linux.model import Dirty, Model

RID = "r0000000-0000-0000-0000-000000000001"
IF_PORT = "i1111111111-aaaa"
GW_PORT = "g2222222222-bbbb"


def _model(snat: object = True) -> Model:
    m = Model()
    m.networks = {"int": {"id": "int", "provider:network_type": "vxlan", "mtu": 1450},
                  "ext": {"id": "ext", "provider:network_type": "flat",
                          "provider:physical_network": "public", "mtu": 1500}}
    m.subnets = {
        "s4": {"id": "s4", "network_id": "int", "cidr": "10.20.0.0/24", "ip_version": 4},
        "s6": {"id": "s6", "network_id": "int", "cidr": "fd00:1::/64", "ip_version": 6},
        "e4": {"id": "e4", "network_id": "ext", "cidr": "172.24.4.0/24", "ip_version": 4,
               "gateway_ip": "172.24.4.1"}}
    m.ports = {
        IF_PORT: {"id": IF_PORT, "network_id": "int", "mac_address": "FA:16:3E:00:00:01",
                  "device_owner": "network:router_interface", "device_id": RID,
                  "fixed_ips": [{"subnet_id": "s4", "ip_address": "10.20.0.1"},
                                {"subnet_id": "s6", "ip_address": "fd00:1::1"}]},
        GW_PORT: {"id": GW_PORT, "network_id": "ext", "mac_address": "fa:16:3e:00:00:02",
                  "device_owner": "network:router_gateway", "device_id": RID,
                  "fixed_ips": [{"subnet_id": "e4", "ip_address": "172.24.4.10"}]}}
    m.routers = {RID: {"id": RID, "routes": [
        {"destination": "10.99.0.0/24", "nexthop": "10.20.0.7"},
        {"destination": "10.98.0.0/24", "nexthop": "192.0.2.1"}],  # unreachable: skipped
        "external_gateway_info": {"network_id": "ext", "enable_snat": snat}}}
    m.floating_ips = {
        "f1": {"id": "f1", "floating_ip_address": "172.24.4.20",
               "fixed_ip_address": "10.20.0.5", "router_id": RID},
        "f2": {"id": "f2", "floating_ip_address": "172.24.4.21", "fixed_ip_address": None,
               "router_id": RID}}
    return m


def test_plan_devices_addresses_routes() -> None:
    plan = plan_router(_model(), RID, {"public": "br-ex"})
    assert plan.namespace == f"qrouter-{RID}"
    qr, qg = plan.devices["qr-i1111111111"], plan.devices["qg-g2222222222"]
    assert (qr.bridge, qr.mtu, qr.addresses) == ("brqint", 1450,
                                                 ["10.20.0.1/24", "fd00:1::1/64"])
    assert (qg.bridge, qg.gateway) == ("br-ex", True)
    assert qg.addresses == ["172.24.4.10/24", "172.24.4.20/32"]
    assert plan.routes == [("0.0.0.0/0", "172.24.4.1"), ("10.99.0.0/24", "10.20.0.7")]
    assert plan.fips == {"172.24.4.20": "10.20.0.5"}


def test_nat_rules() -> None:
    nat = plan_router(_model(), RID, {}).nat
    assert nat.startswith(f"table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n")
    lines = [line.strip() for line in nat.splitlines()]
    assert ('iifname "qr-*" ip daddr 169.254.169.254 tcp dport 80 redirect to :9697'
            in lines)
    assert lines.count("ip daddr 172.24.4.20 dnat to 10.20.0.5") == 2  # prerouting, output
    fip_snat = lines.index('oifname "qg-g2222222222" ip saddr 10.20.0.5 snat to 172.24.4.20')
    general = lines.index('oifname "qg-g2222222222" ip saddr { 10.20.0.0/24 } '
                          'snat to 172.24.4.10')
    assert fip_snat < general
    assert 'oifname "qr-*" ct status dnat ip saddr { 10.20.0.0/24 } masquerade' in lines
    assert lines[-5:-1] == ['iifname "qr-*" tcp dport 9697 accept',
                            'iifname "lo" tcp dport 9697 accept', "tcp dport 9697 drop", "}"]
    # Rendering is stable (the component reloads only when the text changes).
    assert plan_router(_model(), RID, {}).nat == nat


def test_nat_without_snat_or_gateway() -> None:
    nat = plan_router(_model(snat=False), RID, {}).nat
    assert "snat to 172.24.4.10" not in nat and "snat to 172.24.4.20" in nat
    assert "snat to 172.24.4.10" in plan_router(_model(snat=None), RID, {}).nat
    bare = render_nat(gateway_device=None, gateway_ip=None, snat=True, internal_cidrs=[],
                      fips={"172.24.4.20": "10.20.0.5"})
    assert "dnat" not in bare and "snat" not in bare and "redirect" in bare


def test_address_scopes() -> None:
    """Neutron's rules: a subnet in the external network's address scope is routed, not
    SNATed; traffic between interfaces of different scopes is dropped unless NATed."""
    m = _model()
    m.networks["ext"]["ipv4_address_scope"] = "scope-a"
    m.networks["int"]["ipv4_address_scope"] = "scope-a"
    m.networks["other"] = {"id": "other", "provider:network_type": "vxlan", "mtu": 1450}
    m.subnets["o4"] = {"id": "o4", "network_id": "other", "cidr": "10.30.0.0/24",
                       "ip_version": 4}
    m.ports["i3333333333-cccc"] = {
        "id": "i3333333333-cccc", "network_id": "other", "mac_address": "fa:16:3e:00:00:03",
        "device_owner": "network:router_interface", "device_id": RID,
        "fixed_ips": [{"subnet_id": "o4", "ip_address": "10.30.0.1"}]}
    lines = [line.strip() for line in plan_router(m, RID, {}).nat.splitlines()]
    # Only the unscoped subnet is SNATed to the gateway.
    assert ('oifname "qg-g2222222222" ip saddr { 10.30.0.0/24 } snat to 172.24.4.10'
            in lines)
    assert not any("10.20.0.0/24 } snat" in line for line in lines)
    forward = lines[lines.index("type filter hook forward priority filter; policy accept;") + 1:]
    assert forward[:2] == ["ct status dnat accept", "ct status snat accept"]
    assert 'oifname "qg-g2222222222" ip saddr { 10.30.0.0/24 } accept' in forward
    assert 'oifname "qg-g2222222222" ip saddr { 10.20.0.5 } accept' in forward
    for a, b in (("qr-i1111111111", "qr-i3333333333"), ("qr-i3333333333", "qr-i1111111111"),
                 ("qr-i3333333333", "qg-g2222222222"), ("qg-g2222222222", "qr-i3333333333")):
        assert f'iifname "{a}" oifname "{b}" drop' in forward
    assert 'iifname "qr-i1111111111" oifname "qg-g2222222222" drop' not in forward
    # One scope everywhere (or none): no forward rules at all.
    assert "hook forward" not in plan_router(_model(), RID, {}).nat


def test_wanted_and_plan_without_gateway() -> None:
    m = _model()
    assert wanted(m, RID) and not wanted(m, "nope")
    m.routers[RID]["admin_state_up"] = False
    assert not wanted(m, RID)
    del m.ports[GW_PORT]
    plan = plan_router(m, RID, {})
    assert list(plan.devices) == ["qr-i1111111111"] and plan.fips == {}
    assert plan.routes == [("10.99.0.0/24", "10.20.0.7")]


def test_parse_state_keeps_only_router_devices_and_static_routes() -> None:
    addrs = [
        {"ifname": "lo", "address": "00:00:00:00:00:00", "flags": ["UP"],
         "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "qg-abc", "address": "FA:16:3E:00:00:02", "flags": ["UP", "LOWER_UP"],
         "addr_info": [{"family": "inet", "local": "172.24.4.10", "prefixlen": 24},
                       {"family": "inet6", "local": "fe80::1", "prefixlen": 64,
                        "scope": "link"}]},
        {"ifname": "qr-def", "address": "fa:16:3e:00:00:01", "flags": ["BROADCAST"],
         "addr_info": []}]
    routes = [
        {"dst": "default", "gateway": "172.24.4.1", "dev": "qg-abc"},
        {"dst": "172.24.4.0/24", "dev": "qg-abc", "protocol": "kernel"},
        {"dst": "10.9.9.9", "gateway": "172.24.4.3", "dev": "qg-abc"},
        {"dst": "default", "gateway": "fd00::3", "dev": "qg-abc"},
        {"dst": "default", "gateway": "10.0.0.1", "dev": "eth0"},
        {"type": "local", "dst": "172.24.4.10", "dev": "qg-abc", "table": "local"}]
    state = parse_state(addrs, routes)
    assert state.links == {"qg-abc": ("fa:16:3e:00:00:02", True),
                           "qr-def": ("fa:16:3e:00:00:01", False)}
    assert state.addresses == {"qg-abc": {"172.24.4.10/24"}, "qr-def": set()}
    assert state.routes == {("0.0.0.0/0", "172.24.4.1", "qg-abc"),
                            ("10.9.9.9/32", "172.24.4.3", "qg-abc"),
                            ("::/0", "fd00::3", "qg-abc")}


def test_external_nat_table() -> None:
    text = render_external_nat(["172.24.4.0/24"], ["br-ex"])
    assert ('ip saddr 172.24.4.0/24 oifname != "brq*" oifname != "tap*" oifname != "br-ex" '
            "masquerade") in text


def test_affected_routers(tmp_path: Path) -> None:
    m = _model()
    l3 = L3(Host(), LinuxOptions(state_dir=tmp_path))
    assert l3._affected(m, Dirty(all=True)) == {RID}
    assert l3._affected(m, Dirty(ports={IF_PORT})) == {RID}
    assert l3._affected(m, Dirty(networks={"ext"})) == {RID}
    assert l3._affected(m, Dirty(ports={"other"})) == set()
    # A deleted interface port is traced through what the component wired.
    l3._wired[RID] = {IF_PORT}
    del m.ports[IF_PORT]
    assert l3._affected(m, Dirty(ports={IF_PORT})) == {RID}
    # A guest port with a floating IP (its fixed address may have moved).
    m.floating_ips["f1"]["port_id"] = "vm"
    assert l3._affected(m, Dirty(ports={"vm"})) == {RID}
