"""Instance metadata documents, shared by the config drive and the metadata service.

Input is one instance dict: the hypervisor driver's ``InstanceSpec`` (see
``drivers/hypervisor/base.py``) or the compute manager's instance dict — both carry ``uuid``,
``name``, ``key_data``, ``user_data`` (base64, as the compute API stores it), ``metadata``
and ``networks``; the optional ``hostname``, ``key_name``, ``project_id``,
``launch_index``, ``availability_zone``, ``reservation_id``, ``image`` / ``image_ref``,
``flavor`` and ``created_at``/``launched_at`` fill the rest, with defaults when absent.

``networks`` is a list of port dicts; each may have ``id``/``port_id``,
``mac_address``/``mac``, ``network_id``, ``mtu``, ``fixed_ips`` (``ip_address``,
``subnet_id``) and ``subnets`` (``id``, ``cidr``, ``gateway_ip``, ``dns_nameservers``,
``enable_dhcp``). Unknown keys are ignored.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

#: Versions of the OpenStack metadata format we serve (Nova's list, oldest first).
OPENSTACK_VERSIONS = ["2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
                      "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14"]
#: EC2 API versions listed at ``/`` (Nova's list).
EC2_VERSIONS = ["1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10",
                "2007-12-15", "2008-02-01", "2008-09-01", "2009-04-04"]


def decode_user_data(value: Any) -> bytes | None:
    """The raw user data of an instance (the API stores it base64-encoded)."""
    if value in (None, ""):
        return None
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return str(value).encode()


def _port_id(port: dict[str, Any]) -> str:
    return str(port.get("port_id") or port.get("id") or "")


def _mac(port: dict[str, Any]) -> str | None:
    mac = port.get("mac_address") or port.get("mac")
    return str(mac) if mac else None


def device_link_id(port_id: str) -> str:
    """A port's link id in ``network_data.json``: Nova names it after the port's device on
    the host (``tap`` + the first 11 characters of the id, as
    ``drivers/network/linux/names.tap`` does; the metadata service sits below the drivers
    and does not import them)."""
    return "tap" + port_id[:11]


@dataclass
class InstanceMetadata:
    """Everything a guest can read about itself (see the module docstring)."""

    meta_data: dict[str, Any]
    network_data: dict[str, Any]
    vendor_data: dict[str, Any] = field(default_factory=dict)
    user_data: bytes | None = None
    ec2: dict[str, Any] = field(default_factory=dict)

    def openstack_files(self, version: str = "latest") -> dict[str, bytes]:
        """The files of ``openstack/<version>/`` (relative names)."""
        files = {
            "meta_data.json": json.dumps(self.meta_data).encode(),
            "network_data.json": json.dumps(self.network_data).encode(),
            "vendor_data.json": json.dumps(self.vendor_data).encode(),
            "vendor_data2.json": json.dumps({}).encode(),
        }
        if self.user_data is not None:
            files["user_data"] = self.user_data
        return files

    def config_drive_files(self) -> dict[str, bytes]:
        """The config drive tree: ``openstack/{latest,2012-08-10}/…`` and ``ec2/…``."""
        files: dict[str, bytes] = {}
        for version in ("latest", "2012-08-10"):
            for name, data in self.openstack_files(version).items():
                if version == "2012-08-10" and name in ("network_data.json",
                                                        "vendor_data2.json"):
                    continue  # not part of the 2012 format
                files[f"openstack/{version}/{name}"] = data
        ec2 = json.dumps(self.ec2).encode()
        files["ec2/latest/meta-data.json"] = ec2
        files["ec2/2009-04-04/meta-data.json"] = ec2
        if self.user_data is not None:
            files["ec2/latest/user-data"] = self.user_data
            files["ec2/2009-04-04/user-data"] = self.user_data
        return files


def _network_data(ports: list[dict[str, Any]]) -> dict[str, Any]:
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    for n, port in enumerate(ports):
        pid = _port_id(port)
        link_id = device_link_id(pid) if pid else f"interface{n}"
        links.append({"id": link_id, "vif_id": pid, "type": "ovs" if
                      port.get("binding:vif_type") == "ovs" else "bridge",
                      "mtu": port.get("mtu") or 1500,
                      "ethernet_mac_address": _mac(port)})
        subnets = {s.get("id"): s for s in port.get("subnets") or [] if isinstance(s, dict)}
        for ip in port.get("fixed_ips") or []:
            subnet = subnets.get(ip.get("subnet_id"), {})
            entry: dict[str, Any] = {"id": f"network{len(networks)}", "link": link_id,
                                     "network_id": port.get("network_id")}
            address = ip.get("ip_address")
            cidr = subnet.get("cidr")
            try:
                version = ipaddress.ip_address(address).version if address else 4
            except ValueError:
                version = 4
            if address and cidr:
                net = ipaddress.ip_network(cidr, strict=False)
                entry.update(type=f"ipv{version}", ip_address=address,
                             netmask=str(net.netmask) if version == 4 else str(net.prefixlen),
                             routes=[])
                if subnet.get("gateway_ip"):
                    default = "0.0.0.0" if version == 4 else "::"
                    entry["routes"].append({"network": default,
                                            "netmask": default if version == 4 else "0",
                                            "gateway": subnet["gateway_ip"]})
                dns = [{"type": "dns", "address": a}
                       for a in subnet.get("dns_nameservers") or []]
                if dns:
                    entry["services"] = dns
                    services.extend(d for d in dns if d not in services)
            else:
                entry["type"] = f"ipv{version}_dhcp"
            networks.append(entry)
        if not port.get("fixed_ips"):
            networks.append({"id": f"network{len(networks)}", "link": link_id,
                             "network_id": port.get("network_id"), "type": "ipv4_dhcp"})
    return {"links": links, "networks": networks, "services": services}


def _first_ipv4(ports: list[dict[str, Any]]) -> str:
    for port in ports:
        for ip in port.get("fixed_ips") or []:
            address = str(ip.get("ip_address") or "")
            if address and ":" not in address:
                return address
    return ""


def _first_floating_ip(ports: list[dict[str, Any]]) -> str:
    """The EC2 ``public-ipv4``: the first floating IP of the instance's ports ("" if none)."""
    for port in ports:
        for fip in port.get("floating_ips") or []:
            if fip.get("floating_ip_address"):
                return str(fip["floating_ip_address"])
    return ""


#: The domain appended to an instance's hostname in its metadata (Nova's ``[api]
#: dhcp_domain``, whose default this is).
DHCP_DOMAIN = "novalocal"


def build_metadata(inst: dict[str, Any]) -> InstanceMetadata:
    """Every metadata document of ``inst`` (see the module docstring)."""
    uuid = str(inst["uuid"])
    name = str(inst.get("name") or inst.get("display_name") or uuid)
    hostname = str(inst.get("hostname") or "".join(
        c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")[:63]
        or "instance")
    hostname = f"{hostname}.{DHCP_DOMAIN}" if DHCP_DOMAIN else hostname
    key_name = inst.get("key_name") or ("key" if inst.get("key_data") else None)
    key_data = inst.get("key_data")
    public_keys: dict[str, str] = {}
    keys: list[dict[str, Any]] = []
    if key_data:
        public_keys[str(key_name)] = str(key_data)
        keys.append({"name": key_name, "type": "ssh", "data": key_data})
    ports = [p for p in inst.get("networks") or [] if isinstance(p, dict)]
    meta: dict[str, Any] = {
        "uuid": uuid,
        "name": name,
        "hostname": hostname,
        "launch_index": int(inst.get("launch_index") or 0),
        "availability_zone": inst.get("availability_zone") or "nova",
        "project_id": inst.get("project_id"),
        "meta": {str(k): str(v) for k, v in (inst.get("metadata") or {}).items()},
        "devices": [],
        "dedicated_cpus": [],
    }
    if public_keys:
        meta["public_keys"] = public_keys
        meta["keys"] = keys
    if inst.get("admin_pass"):
        meta["admin_pass"] = inst["admin_pass"]
    image = inst.get("image") or {}
    image_id = image.get("id") if isinstance(image, dict) else inst.get("image_ref")
    flavor = inst.get("flavor") or {}
    local_ipv4 = _first_ipv4(ports)
    ec2: dict[str, Any] = {
        "ami-id": f"ami-{str(image_id or '')[:8]}",
        "ami-launch-index": meta["launch_index"],
        "ami-manifest-path": "FIXME",
        "block-device-mapping": {"ami": "vda", "root": "/dev/vda"},
        "hostname": hostname,
        "instance-action": "none",
        "instance-id": f"i-{uuid[:8]}",
        "instance-type": flavor.get("name") or flavor.get("original_name") or "",
        "local-hostname": hostname,
        "local-ipv4": local_ipv4,
        "placement": {"availability-zone": meta["availability_zone"]},
        "public-hostname": hostname,
        "public-ipv4": _first_floating_ip(ports),
        "reservation-id": inst.get("reservation_id") or "",
        "security-groups": ["default"],
    }
    if public_keys:
        ec2["public-keys"] = {"0": {"openssh-key": next(iter(public_keys.values()))}}
    return InstanceMetadata(meta_data=meta, network_data=_network_data(ports),
                            vendor_data={}, user_data=decode_user_data(inst.get("user_data")),
                            ec2=ec2)
