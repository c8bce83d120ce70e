"""The seed commands (DevStack lab tasks 4-8, flat provider network) with the real CLI."""

from __future__ import annotations

import json

from tests.conftest import RunningCloud


def _demo_env(cloud: RunningCloud) -> dict[str, str]:
    text = (cloud.data_dir / "demo-openrc.sh").read_text()
    password = next(line.split("=", 1)[1].strip().strip("'") for line in text.splitlines()
                    if line.startswith("export OS_PASSWORD="))
    return cloud.os_env("demo", password, "demo")


def _json(cloud: RunningCloud, *args: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(cloud.openstack(*args, "-f", "json", env=env).stdout)


def test_defaults_exist(cloud: RunningCloud) -> None:
    public = _json(cloud, "network", "show", "public")
    assert public["router:external"] is True
    assert public["provider:network_type"] == "flat"
    subnet = _json(cloud, "subnet", "show", "public-subnet")
    assert subnet["cidr"] == "172.24.4.0/24" and subnet["gateway_ip"] == "172.24.4.1"
    demo = _demo_env(cloud)
    router = _json(cloud, "router", "show", "router1", env=demo)
    assert router["external_gateway_info"]["network_id"] == public["id"]
    private = _json(cloud, "subnet", "show", "private-subnet", env=demo)
    assert private["cidr"] == "10.0.0.0/26"
    # The model-only data plane runs no agent, so none is listed (tests/dataplane/
    # test_lab.py sees the Linux data plane's four, alive).
    agents = json.loads(cloud.openstack("network", "agent", "list", "-f", "json").stdout)
    assert agents == []


def test_seed_commands(cloud: RunningCloud) -> None:
    cloud.openstack("network", "create", "--share", "--provider-physical-network", "physnet1",
                    "--provider-network-type", "flat", "flat")
    sub = _json(cloud, "subnet", "create", "--network", "flat", "--subnet-range",
                "192.168.56.0/24", "--allocation-pool", "start=192.168.56.100,end=192.168.56.200",
                "--dns-nameserver", "192.168.56.2", "--gateway", "192.168.56.2", "flat-subnet")
    assert sub["allocation_pools"] == [{"start": "192.168.56.100", "end": "192.168.56.200"}]
    assert sub["dns_nameservers"] == ["192.168.56.2"]

    demo = _demo_env(cloud)
    cloud.openstack("network", "create", "demo-net", env=demo)
    cloud.openstack("subnet", "create", "--network", "demo-net", "--subnet-range",
                    "10.0.0.0/24", "demo-subnet", env=demo)
    cloud.openstack("router", "create", "demo-router", env=demo)
    cloud.openstack("router", "set", "--external-gateway", "public", "demo-router", env=demo)
    cloud.openstack("router", "add", "subnet", "demo-router", "demo-subnet", env=demo)
    cloud.openstack("security", "group", "rule", "create", "--proto", "icmp", "default",
                    env=demo)
    cloud.openstack("security", "group", "rule", "create", "--proto", "tcp", "--dst-port",
                    "22", "default", env=demo)
    dup = cloud.openstack("security", "group", "rule", "create", "--proto", "tcp",
                          "--dst-port", "22", "default", env=demo, check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr

    port = _json(cloud, "port", "create", "--network", "demo-net", "vm-port", env=demo)
    fip = _json(cloud, "floating", "ip", "create", "public", env=demo)
    cloud.openstack("floating", "ip", "set", "--port", port["id"], fip["id"], env=demo)
    shown = _json(cloud, "floating", "ip", "show", fip["id"], env=demo)
    assert shown["port_id"] == port["id"]
    assert shown["fixed_ip_address"] == port["fixed_ips"][0]["ip_address"]
    assert shown["status"] == "ACTIVE"
    assert shown["floating_ip_address"].startswith("172.24.4.")

    ports = json.loads(cloud.openstack("port", "list", "-f", "json", env=demo).stdout)
    assert port["id"] in {p["ID"] for p in ports}
    cloud.openstack("network", "agent", "list")

    cloud.openstack("floating", "ip", "unset", "--port", fip["id"], env=demo)
    assert _json(cloud, "floating", "ip", "show", fip["id"], env=demo)["port_id"] is None
    cloud.openstack("floating", "ip", "delete", fip["id"], env=demo)
    cloud.openstack("port", "delete", port["id"], env=demo)
    cloud.openstack("router", "remove", "subnet", "demo-router", "demo-subnet", env=demo)
    cloud.openstack("router", "unset", "--external-gateway", "demo-router", env=demo)
    cloud.openstack("router", "delete", "demo-router", env=demo)
    cloud.openstack("network", "delete", "demo-net", env=demo)
    cloud.openstack("network", "delete", "flat")
