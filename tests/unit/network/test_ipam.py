"""Address arithmetic of the network service."""

from __future__ import annotations

import ipaddress

import pytest

from onestack.common.errors import BadRequest
from onestack.network import ipam


def test_default_pools_exclude_gateway() -> None:
    net = ipaddress.ip_network("10.0.0.0/24")
    assert ipam.default_pools(net, "10.0.0.1") == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert ipam.default_pools(net, "10.0.0.100") == [
        {"start": "10.0.0.1", "end": "10.0.0.99"}, {"start": "10.0.0.101", "end": "10.0.0.254"}]
    assert ipam.default_pools(net, None) == [{"start": "10.0.0.1", "end": "10.0.0.254"}]


def test_parse_cidr_rejects_host_bits_and_garbage() -> None:
    assert str(ipam.parse_cidr("10.0.0.0/24")) == "10.0.0.0/24"
    for bad in ("10.0.0.5/24", "10.0.0.0", "nonsense/8", 5, "300.0.0.0/8"):
        with pytest.raises(BadRequest):
            ipam.parse_cidr(bad)


def test_validate_pools() -> None:
    net = ipaddress.ip_network("192.168.56.0/24")
    pools = [{"start": "192.168.56.100", "end": "192.168.56.200"}]
    assert ipam.validate_pools(net, pools, "192.168.56.2") == pools
    with pytest.raises(BadRequest):
        ipam.validate_pools(net, [{"start": "192.168.57.1", "end": "192.168.57.5"}], None)
    with pytest.raises(BadRequest):
        ipam.validate_pools(net, pools, "192.168.56.150")
    with pytest.raises(BadRequest):
        ipam.validate_pools(net, pools + [{"start": "192.168.56.150",
                                           "end": "192.168.56.210"}], None)


def test_eui64_and_mac() -> None:
    net = ipaddress.ip_network("2001:db8::/64")
    assert ipam.eui64(net, "fa:16:3e:00:00:01") == "2001:db8::f816:3eff:fe00:1"
    mac = ipam.random_mac("fa:16:3e:00:00:00")
    assert mac.startswith("fa:16:3e:") and ipam.valid_mac(mac)
    assert not ipam.valid_mac("01:00:00:00:00:00")  # multicast
    assert not ipam.valid_mac("zz:16:3e:00:00:00")
