"""What the DHCP component hands dnsmasq: hosts file, options file, command line (pure)."""

from __future__ import annotations

from pathlib import Path

from onestack.drivers.network.linux.dhcp import (
    NetworkFiles,
    dnsmasq_args,
    render_hosts,
    render_opts,
    wanted_networks,
)
from onestack.drivers.network.linux.driver import LinuxOptions
from onestack.drivers.network.linux.model import Model


def _model(gateway: str | None = "10.0.0.1") -> Model:
    m = Model()
    m.networks["n"] = {"id": "n", "mtu": 1450}
    m.subnets["s"] = {"id": "s", "network_id": "n", "cidr": "10.0.0.0/24", "ip_version": 4,
                      "gateway_ip": gateway, "enable_dhcp": True, "dns_nameservers": [],
                      "host_routes": [{"destination": "192.168.0.0/16",
                                       "nexthop": "10.0.0.254"}]}
    m.subnets["v6"] = {"id": "v6", "network_id": "n", "cidr": "fd00::/64", "ip_version": 6,
                       "gateway_ip": "fd00::1", "enable_dhcp": True,
                       "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}
    m.ports["d"] = {"id": "d", "network_id": "n", "device_owner": "network:dhcp",
                    "mac_address": "fa:16:3e:00:00:02",
                    "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.2"}]}
    m.ports["vm"] = {"id": "vm", "network_id": "n", "device_owner": "compute:nova",
                     "mac_address": "FA:16:3E:00:00:05",
                     "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"},
                                   {"subnet_id": "v6", "ip_address": "fd00::5"}]}
    return m


def test_hosts_file_has_guests_not_the_dhcp_port() -> None:
    assert render_hosts(_model(), "n", "example.test") == \
        "fa:16:3e:00:00:05,host-10-0-0-5.example.test,10.0.0.5\n"
    assert render_hosts(_model(), "n", "") == "fa:16:3e:00:00:05,host-10-0-0-5,10.0.0.5\n"


def test_dhcpv6_modes_as_neutron_serves_them() -> None:
    """SLAAC: not dnsmasq's; stateful (or no mode): address entries and a static range;
    stateless: a host entry without the address (options only)."""
    m = _model()
    m.subnets["v6"].update(ipv6_address_mode="dhcpv6-stateful")
    m.subnets["v6"]["dns_nameservers"] = ["fd00::53", "9.9.9.9"]
    assert "fa:16:3e:00:00:05,host-fd00--5.example.test,[fd00::5]\n" in render_hosts(
        m, "n", "example.test")
    assert "tag:subnet-v6,option6:dns-server,[fd00::53]" in render_opts(m, "n", [])
    args = dnsmasq_args(m, "n", NetworkFiles(Path("/st/dhcp/n")), "ns-x",
                        LinuxOptions(state_dir=Path("/st")))
    assert "--dhcp-range=set:subnet-v6,fd00::,static,64,86400s" in args
    m.subnets["v6"].update(ipv6_address_mode=None, ipv6_ra_mode=None)
    assert "[fd00::5]" in render_hosts(m, "n", "")
    m.subnets["v6"].update(ipv6_address_mode="dhcpv6-stateless",
                           ipv6_ra_mode="dhcpv6-stateless")
    assert render_hosts(m, "n", "").splitlines()[-1] == "fa:16:3e:00:00:05,host-fd00--5"


def test_isolated_network_options_route_metadata_and_default() -> None:
    opts = render_opts(_model(), "n", ["9.9.9.9"]).splitlines()
    routes = "192.168.0.0/16,10.0.0.254,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1"
    assert opts == ["tag:subnet-s,option:router,10.0.0.1",
                    "tag:subnet-s,option:dns-server,9.9.9.9",
                    f"tag:subnet-s,option:classless-static-route,{routes}",
                    f"tag:subnet-s,249,{routes}"]


def test_routed_network_without_gateway_or_dns() -> None:
    m = _model(gateway=None)
    m.subnets["s"]["host_routes"] = []
    m.ports["r"] = {"id": "r", "network_id": "n", "device_owner": "network:router_interface",
                    "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.1"}]}
    assert render_opts(m, "n", []).splitlines() == ["tag:subnet-s,option:router",
                                                    "tag:subnet-s,option:dns-server"]


def test_command_line() -> None:
    files = NetworkFiles(Path("/st/dhcp/n"))
    args = dnsmasq_args(_model(), "n", files, "ns-d", LinuxOptions(state_dir=Path("/st")))
    assert args[0] == "dnsmasq" and "--interface=ns-d" in args and "--port=0" in args
    assert "--dhcp-range=set:subnet-s,10.0.0.0,static,255.255.255.0,86400s" in args
    assert "--dhcp-option-force=option:mtu,1450" in args
    assert "--dhcp-hostsfile=/st/dhcp/n/host" in args and "--domain=openstacklocal" in args
    assert not [a for a in args if "fd00" in a]  # IPv6 is not served (a documented gap)


def test_wanted_needs_dhcp_subnet_and_port() -> None:
    m = _model()
    assert wanted_networks(m) == {"n"}
    del m.ports["d"]
    assert wanted_networks(m) == set()
