"""Rendering of the Linux data plane's firewall (pure: no host, no nft)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from onestack.drivers.network.linux.driver import LinuxOptions
from onestack.drivers.network.linux.firewall import (
    MARK_FLAG,
    OUT_SHIFT,
    _removed_flows,
    filtered,
    group_set_name,
    protocol_number,
    render,
    render_rule,
    spoof_elements,
)
from onestack.drivers.network.linux.model import Model

#: Everything a rendered rule line may contain: nft keywords, numbers, addresses, set names.
SAFE_LINE = re.compile(r"^[a-z0-9 .:/@\-]+ return$")


def rule(direction: str = "ingress", protocol: Any = None, low: Any = None, high: Any = None,
         ethertype: str = "IPv4", **extra: Any) -> dict[str, Any]:
    return {"id": "r", "direction": direction, "ethertype": ethertype, "protocol": protocol,
            "port_range_min": low, "port_range_max": high, "remote_ip_prefix": None,
            "remote_group_id": None, "remote_address_group_id": None, **extra}


def line(**kw: Any) -> str | None:
    match = render_rule(rule(**kw))
    return None if match is None else match.line


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, "meta nfproto ipv4 return"),
    ({"ethertype": "IPv6", "direction": "egress"}, "meta nfproto ipv6 return"),
    ({"protocol": "tcp", "low": 22, "high": 22},
     "meta nfproto ipv4 meta l4proto 6 th dport 22 return"),
    ({"protocol": "udp", "low": 1000, "high": 2000},
     "meta nfproto ipv4 meta l4proto 17 th dport 1000-2000 return"),
    ({"protocol": "tcp", "low": 80}, "meta nfproto ipv4 meta l4proto 6 th dport 80 return"),
    ({"protocol": "sctp", "low": "5000", "high": "5001"},
     "meta nfproto ipv4 meta l4proto 132 th dport 5000-5001 return"),
    ({"protocol": "tcp"}, "meta nfproto ipv4 meta l4proto 6 return"),
    ({"protocol": "icmp"}, "meta nfproto ipv4 meta l4proto 1 return"),
    ({"protocol": "icmp", "low": 8}, "meta nfproto ipv4 meta l4proto 1 icmp type 8 return"),
    ({"protocol": "icmp", "low": 3, "high": 4},
     "meta nfproto ipv4 meta l4proto 1 icmp type 3 icmp code 4 return"),
    ({"protocol": "ipv6-icmp", "low": 128, "ethertype": "IPv6"},
     "meta nfproto ipv6 meta l4proto 58 icmpv6 type 128 return"),
    ({"protocol": "icmp", "ethertype": "IPv6"}, "meta nfproto ipv6 meta l4proto 58 return"),
    ({"protocol": "icmpv6", "ethertype": "IPv6", "low": 135, "high": 0},
     "meta nfproto ipv6 meta l4proto 58 icmpv6 type 135 icmpv6 code 0 return"),
    ({"protocol": "112"}, "meta nfproto ipv4 meta l4proto 112 return"),
    ({"protocol": 47, "low": 1, "high": 2}, "meta nfproto ipv4 meta l4proto 47 return"),
    ({"protocol": "vrrp"}, "meta nfproto ipv4 meta l4proto 112 return"),
    ({"protocol": "any"}, "meta nfproto ipv4 return"),
    ({"remote_ip_prefix": "10.1.2.0/24", "protocol": "tcp", "low": 443, "high": 443},
     "meta nfproto ipv4 ip saddr 10.1.2.0/24 meta l4proto 6 th dport 443 return"),
    ({"remote_ip_prefix": "10.1.2.3/24", "direction": "egress"},
     "meta nfproto ipv4 ip daddr 10.1.2.0/24 return"),
    ({"remote_ip_prefix": "10.1.2.3"}, "meta nfproto ipv4 ip saddr 10.1.2.3 return"),
    ({"remote_ip_prefix": "0.0.0.0/0"}, "meta nfproto ipv4 return"),
    ({"remote_ip_prefix": "2001:db8::/64", "ethertype": "IPv6"},
     "meta nfproto ipv6 ip6 saddr 2001:db8::/64 return"),
    ({"remote_group_id": "g1", "protocol": "tcp", "low": 22, "high": 22},
     f"meta nfproto ipv4 ip saddr @{group_set_name('g1', 4)} meta l4proto 6 th dport 22 "
     "return"),
    ({"remote_group_id": "g1", "ethertype": "IPv6", "direction": "egress"},
     f"meta nfproto ipv6 ip6 daddr @{group_set_name('g1', 6)} return"),
])
def test_rule_rendering(kw: dict[str, Any], expected: str) -> None:
    assert line(**kw) == expected


@pytest.mark.parametrize("kw", [
    {"direction": "sideways"},
    {"ethertype": "IPv5"},
    {"protocol": "tcp; flush ruleset"},
    {"protocol": "256"},
    {"protocol": "-1"},
    {"protocol": "icmpv6"},  # with IPv4
    {"protocol": "tcp", "low": 70000},
    {"protocol": "tcp", "low": -1},
    {"protocol": "tcp", "low": 30, "high": 20},
    {"protocol": "tcp", "high": 20},
    {"protocol": "udp", "low": "22; drop", "high": 22},
    {"protocol": "tcp", "low": True},
    {"protocol": "icmp", "low": 300},
    {"protocol": "icmp", "low": 8, "high": 256},
    {"remote_ip_prefix": "10.0.0.0/33"},
    {"remote_ip_prefix": "2001:db8::/64"},  # IPv6 prefix on an IPv4 rule
    {"remote_ip_prefix": "10.0.0.0/8 } ; flush ruleset"},
    {"remote_address_group_id": "ag"},
])
def test_hostile_rules_render_nothing(kw: dict[str, Any]) -> None:
    assert render_rule(rule(**kw)) is None


@pytest.mark.parametrize("protocol", ["tcp", "udp", "icmp", "6", "255", 0, None, "sctp",
                                      "ipv6-icmp", "x" * 300, "\n", "6\n"])
@pytest.mark.parametrize("ports", [(None, None), (0, 65535), (65535, 65535), ("8", "9"),
                                   (1, 0), (None, 5), ("a", "b"), (1.5, 2)])
@pytest.mark.parametrize("ethertype", ["IPv4", "IPv6", None, ""])
def test_any_combination_is_valid_or_nothing(protocol: Any, ports: tuple[Any, Any],
                                             ethertype: Any) -> None:
    match = render_rule(rule(protocol=protocol, low=ports[0], high=ports[1],
                             ethertype=ethertype, remote_ip_prefix="192.0.2.0/24"))
    assert match is None or SAFE_LINE.match(match.line), match


def test_protocol_numbers() -> None:
    assert protocol_number("TCP", 4) == 6
    assert protocol_number(None, 4) is None
    assert protocol_number("icmp", 6) == 58
    with pytest.raises(ValueError):
        protocol_number("icmpv6", 4)
    with pytest.raises(ValueError):
        protocol_number("bogus", 4)


def port(pid: str, **extra: Any) -> dict[str, Any]:
    base = {"id": pid, "network_id": "net", "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [{"ip_address": "10.0.0.5"}, {"ip_address": "2001:db8::5"}],
            "security_groups": ["sg"], "binding:host_id": "h", "device_owner": "compute:x",
            "allowed_address_pairs": []}
    return {**base, **extra}


def model(*ports: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> Model:
    m = Model()
    m.networks = {"net": {"id": "net", "provider:network_type": "vxlan"},
                  "pub": {"id": "pub", "router:external": True}}
    m.security_groups = {"sg": {"id": "sg", "security_group_rules": rules or [
        rule(protocol="tcp", low=22, high=22), rule(direction="egress")]}}
    m.ports = {p["id"]: p for p in ports}
    return m


OPTIONS = LinuxOptions(state_dir=Path("/nonexistent"))


def test_who_is_filtered() -> None:
    m = model()
    assert filtered(port("a"), m)
    assert not filtered(port("a", port_security_enabled=False), m)
    assert not filtered(port("a", device_owner="network:router_interface"), m)
    assert not filtered(port("a", device_owner="network:dhcp"), m)
    assert not filtered(port("a", **{"binding:host_id": ""}), m)
    assert not filtered(port("a", network_id="unknown"), m)


def test_spoof_elements_pairs_and_link_local() -> None:
    p = port("abcdefghijklmnop", allowed_address_pairs=[
        {"ip_address": "10.1.0.0/24"}, {"ip_address": "10.0.0.5"},
        {"ip_address": "10.2.0.9", "mac_address": "FA:16:3E:00:00:09"}])
    e = spoof_elements(p, "tapabcdefghijk")
    dev = '"tapabcdefghijk"'
    assert e.macs == [f"{dev} . fa:16:3e:00:00:01", f"{dev} . fa:16:3e:00:00:09"]
    assert f"{dev} . fa:16:3e:00:00:01 . 10.1.0.0/24" in e.v4
    assert e.v4.count(f"{dev} . fa:16:3e:00:00:01 . 10.0.0.5") == 1  # duplicate collapsed
    assert f"{dev} . fa:16:3e:00:00:09 . 10.2.0.9" in e.v4
    assert f"{dev} . fa:16:3e:00:00:01 . 0.0.0.0" in e.arp
    assert f"{dev} . fa:16:3e:00:00:09 . fe80::/10" in e.v6
    assert f"{dev} . fa:16:3e:00:00:01 . 2001:db8::5" in e.v6
    bad = spoof_elements(port("x", mac_address="not-a-mac", fixed_ips=[]), "tapx")
    assert bad.macs == [] and bad.v4 == []  # nothing allowed: every frame is dropped


def test_render_whole_ruleset() -> None:
    m = model(port("aaaa-1"), port("bbbb-2", port_security_enabled=False),
              port("cccc-3", network_id="pub", security_groups=[]),
              port("dhcp", device_owner="network:dhcp", security_groups=[],
                   fixed_ips=[{"ip_address": "10.0.0.2"}]))
    r = render(m, OPTIONS, {}, {})
    assert set(r.marks) == {"aaaa-1", "cccc-3"}
    assert r.marks["aaaa-1"] == 1 and r.marks["cccc-3"] == 2
    assert set(r.zones) == {"net"}  # external networks stay in zone 0
    assert '"tapaaaa-1" : jump out-1' in r.text
    assert f'"tapaaaa-1" : {MARK_FLAG | 1:#010x}' in r.text
    assert f"{2 << OUT_SHIFT:#x} : jump in-2" in r.text
    assert "0x1 : jump eg-1" in r.text
    assert '"brqnet" : 1' in r.text
    assert "meta nfproto ipv4 meta l4proto 6 th dport 22 return" in r.text
    assert "elements = { 10.0.0.2 }" in r.text  # the DHCP server's address
    assert "tapbbbb-2" not in r.text and "tapdhcp" not in r.text
    # port cccc-3 has no groups: its chains hold only the fixed DHCP/ND allowances
    chain = r.text.split("chain in-2 {", 1)[1].split("}", 1)[0]
    assert "th dport" not in chain and chain.strip().endswith("drop")
    assert r.text.count("{") == r.text.count("}")


def test_marks_and_zones_are_stable() -> None:
    r1 = render(model(port("a"), port("b"), port("c")), OPTIONS, {}, {})
    r2 = render(model(port("a"), port("c"), port("d")), OPTIONS, r1.marks, r1.zones)
    assert r2.marks == {"a": 1, "c": 3, "d": 2}
    assert r2.zones == r1.zones
    r3 = render(model(port("a"), port("c"), port("d")), OPTIONS, r2.marks, r2.zones)
    assert r3.text == r2.text
    # a corrupt allocation (duplicates, out of range) is repaired
    r4 = render(model(port("a"), port("c")), OPTIONS, {"a": 5, "c": 5, "x": 1}, {"net": 0})
    assert sorted(r4.marks.values()) == [1, 5] and r4.zones["net"] >= 1


def test_remote_group_sets_hold_members_and_pairs() -> None:
    m = model(port("a", allowed_address_pairs=[{"ip_address": "10.9.0.0/16"}]),
              port("b", fixed_ips=[{"ip_address": "10.0.0.6"}]),
              rules=[rule(protocol="tcp", low=80, high=80, remote_group_id="sg"),
                     rule(ethertype="IPv6", remote_group_id="sg")])
    r = render(m, OPTIONS, {}, {})
    v4 = r.text.split(f"set {group_set_name('sg', 4)} {{", 1)[1].split("}", 1)[0]
    assert "10.0.0.5, 10.0.0.6, 10.9.0.0/16" in v4
    v6 = r.text.split(f"set {group_set_name('sg', 6)} {{", 1)[1].split("}", 1)[0]
    assert "2001:db8::5" in v6


def test_removed_rules_name_the_flows_to_forget() -> None:
    rules = [rule(protocol="icmp"), rule(protocol="tcp", low=22, high=22),
             rule(protocol="112"), rule(direction="egress")]
    before = render(model(port("a"), rules=rules), OPTIONS, {}, {})
    after = render(model(port("a"), rules=rules[1:2]), OPTIONS, before.marks, before.zones)
    zone = before.zones["net"]
    # ingress protocol 112 has no conntrack name: one delete without -p covers it and icmp
    assert _removed_flows(before.ports, after.ports) == {
        (zone, 4, None, "10.0.0.5", None), (zone, 4, "10.0.0.5", None, None)}
    only_icmp = render(model(port("a"), rules=rules[1:]), OPTIONS, before.marks,
                       before.zones)
    assert _removed_flows(before.ports, only_icmp.ports) == {(zone, 4, None, "10.0.0.5", 1)}
    unchanged = render(model(port("a"), rules=rules), OPTIONS, before.marks, before.zones)
    assert _removed_flows(before.ports, unchanged.ports) == set()
    gone = render(model(), OPTIONS, before.marks, before.zones)
    assert _removed_flows(before.ports, gone.ports) == set()


def hostile_model() -> Model:
    """Values an API client could try to smuggle into the nft script."""
    bad = '"; flush ruleset; "'
    m = model(
        port(bad),
        port("ok-1", mac_address="fa:16:3e:00:00:01 } ; flush ruleset",
             fixed_ips=[{"ip_address": "10.0.0.5 }"}, {"ip_address": None}, {}],
             allowed_address_pairs=[{"ip_address": "::/0"}, {"ip_address": "x"},
                                    {"ip_address": "0.0.0.0/0", "mac_address": bad}]),
        port("ok-2", security_groups=["sg", bad, None],
             allowed_address_pairs=[{"ip_address": "0.0.0.0/0"}]),
        rules=[rule(protocol=bad), rule(remote_group_id=bad), rule(low=bad, protocol="tcp"),
               rule(remote_ip_prefix=bad), rule(protocol="tcp", low=1, high=65535),
               rule(direction="egress", protocol="icmp", low=255, high=255)])
    m.networks[bad] = {"id": bad, "provider:network_type": "vxlan"}
    m.ports["ok-3"] = port("ok-3", network_id=bad)
    return m


def test_hostile_model_renders_safe_text() -> None:
    r = render(hostile_model(), OPTIONS, {}, {})
    assert "flush" not in r.text and '";' not in r.text
    assert r.text.count("{") == r.text.count("}")
    assert set(r.marks) == {"ok-1", "ok-2", "ok-3"}  # not the port with the quoted id
    assert set(r.zones) == {"net"}  # the quoted network's bridge name is never written


def test_removed_group_member_names_the_flows_to_forget() -> None:
    rules = [rule(protocol="tcp", low=80, high=80, remote_group_id="sg")]
    before = render(model(port("a"), port("b", fixed_ips=[{"ip_address": "10.0.0.6"}]),
                          rules=rules), OPTIONS, {}, {})
    after = render(model(port("a"), rules=rules), OPTIONS, before.marks, before.zones)
    zone = before.zones["net"]
    assert _removed_flows(before.ports, after.ports, before.members, after.members) == {
        (zone, 4, "10.0.0.6", "10.0.0.5", None)}
