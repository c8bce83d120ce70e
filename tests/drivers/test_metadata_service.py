"""The metadata service (Nova-compatible paths, signed X-Instance-ID) and the config drive
share one metadata builder: both must show a guest the same documents."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pycdlib
import pytest

from onestack.drivers.hypervisor.configdrive import build_config_drive
from onestack.metadata.app import MetadataApp, load_or_create_secret, sign_instance_id
from onestack.metadata.content import build_metadata

UUID = "6f6e6573-7461-636b-2d74-657374766d31"
INSTANCE: dict[str, Any] = {
    "uuid": UUID, "name": "Web 1", "hostname": "web-1", "project_id": "p1",
    "key_name": "mykey", "key_data": "ssh-ed25519 AAAAC3Nz test@host",
    "user_data": base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
    "metadata": {"role": "web"}, "launch_index": 0, "availability_zone": "nova",
    "reservation_id": "r-abc", "flavor": {"name": "m1.guest"},
    "networks": [{"id": "0123456789abcdef", "mac_address": "fa:16:3e:00:00:01",
                  "network_id": "n1", "mtu": 1450,
                  "fixed_ips": [{"ip_address": "10.0.0.5", "subnet_id": "s1"}],
                  "subnets": [{"id": "s1", "cidr": "10.0.0.0/26", "gateway_ip": "10.0.0.1",
                               "dns_nameservers": ["10.0.0.2"]}]}],
}
SECRET = "s3cret"


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = MetadataApp(lambda uuid: INSTANCE if uuid == UUID else None, SECRET)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="http://169.254.169.254")


def read_iso(path: Path | str) -> dict[str, bytes]:
    """The files of an ISO written by ``configdrive.write_iso`` (Rock Ridge names)."""
    iso = pycdlib.PyCdlib()
    iso.open(os.fspath(path))
    out: dict[str, bytes] = {}
    try:
        for dirname, _dirs, names in iso.walk(rr_path="/"):
            for name in names:
                full = f"{dirname.rstrip('/')}/{name}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=full)
                out[full.lstrip("/")] = buf.getvalue()
    finally:
        iso.close()
    return out


def _headers(uuid: str = UUID, secret: str = SECRET) -> dict[str, str]:
    return {"X-Instance-ID": uuid, "X-Instance-ID-Signature": sign_instance_id(secret, uuid),
            "X-Forwarded-For": "10.0.0.5"}


async def test_openstack_documents(client: httpx.AsyncClient) -> None:
    r = await client.get("/openstack/latest/meta_data.json", headers=_headers())
    assert r.status_code == 200
    meta = r.json()
    assert meta["uuid"] == UUID and meta["name"] == "Web 1"
    assert meta["hostname"] == "web-1.novalocal"
    assert meta["public_keys"] == {"mykey": INSTANCE["key_data"]}
    assert meta["meta"] == {"role": "web"} and meta["project_id"] == "p1"
    assert (await client.get("/openstack/latest/user_data", headers=_headers())).content == \
        b"#!/bin/sh\necho hi\n"
    net = (await client.get("/openstack/latest/network_data.json", headers=_headers())).json()
    assert net["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:01"
    assert net["links"][0]["id"] == "tap0123456789a" and net["links"][0]["mtu"] == 1450
    assert net["networks"][0]["ip_address"] == "10.0.0.5"
    assert net["networks"][0]["netmask"] == "255.255.255.192"
    listing = (await client.get("/openstack", headers=_headers())).text.splitlines()
    assert "2012-08-10" in listing and listing[-1] == "latest"
    files = (await client.get("/openstack/2012-08-10/", headers=_headers())).text.split()
    assert "meta_data.json" in files and "user_data" in files


async def test_ec2_tree(client: httpx.AsyncClient) -> None:
    h = _headers()
    assert "latest" in (await client.get("/", headers=h)).text.splitlines()
    keys = (await client.get("/latest/meta-data/", headers=h)).text.splitlines()
    for k in ("hostname", "instance-id", "local-ipv4", "public-keys/", "placement/"):
        assert k in keys
    assert (await client.get("/latest/meta-data/hostname", headers=h)).text == "web-1.novalocal"
    assert (await client.get("/latest/meta-data/local-ipv4", headers=h)).text == "10.0.0.5"
    assert (await client.get("/latest/meta-data/public-keys/", headers=h)).text == "0=mykey"
    assert (await client.get("/latest/meta-data/public-keys/0/openssh-key",
                             headers=h)).text == INSTANCE["key_data"]
    assert (await client.get("/2009-04-04/meta-data/placement/availability-zone",
                             headers=h)).text == "nova"
    assert (await client.get("/latest/user-data", headers=h)).content.startswith(b"#!")


async def test_identification(client: httpx.AsyncClient) -> None:
    assert (await client.get("/openstack/latest/meta_data.json")).status_code == 400
    r = await client.get("/openstack/latest/meta_data.json", headers=_headers(secret="wrong"))
    assert r.status_code == 403
    other = "00000000-0000-0000-0000-000000000000"
    assert (await client.get("/openstack/latest/meta_data.json",
                             headers=_headers(other))).status_code == 404
    h = {**_headers(), "X-Tenant-ID": "someone-else"}
    assert (await client.get("/openstack/latest/meta_data.json", headers=h)).status_code == 404
    assert (await client.get("/openstack/latest/nope", headers=_headers())).status_code == 404
    assert (await client.post("/openstack/latest/meta_data.json",
                              headers=_headers())).status_code == 405


def test_config_drive_matches_service(tmp_path: Path) -> None:
    iso = tmp_path / "config.iso"
    build_config_drive(iso, INSTANCE)
    files = read_iso(iso)
    md = build_metadata(INSTANCE)
    assert json.loads(files["openstack/latest/meta_data.json"]) == md.meta_data
    assert json.loads(files["openstack/2012-08-10/meta_data.json"]) == md.meta_data
    assert json.loads(files["openstack/latest/network_data.json"]) == md.network_data
    assert files["openstack/latest/user_data"] == b"#!/bin/sh\necho hi\n"
    assert json.loads(files["ec2/latest/meta-data.json"])["hostname"] == "web-1.novalocal"
    assert "openstack/latest/vendor_data.json" in files
    assert iso.read_bytes()[32808:32816] == b"config-2"  # volume label


def test_secret_is_created_once(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert first and load_or_create_secret(tmp_path) == first
    assert (tmp_path / "metadata-secret").stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(tmp_path, "configured") == "configured"


async def test_password_post_once_and_public_ipv4() -> None:
    """A guest posts its password once (then 409; over 256 bytes 400); ``public-ipv4`` is the
    port's floating IP."""
    stored: dict[str, str] = {}
    inst = {**INSTANCE, "system_metadata": {},
            "networks": [{**INSTANCE["networks"][0],
                          "floating_ips": [{"floating_ip_address": "172.24.4.9"}]}]}

    def lookup(uuid: str) -> dict[str, Any] | None:
        if uuid != UUID:
            return None
        return {**inst, "system_metadata": {"password": stored.get(uuid, "")}}

    app = MetadataApp(lookup, SECRET, cache_ttl=0,
                      store_password=lambda uuid, pw: stored.__setitem__(uuid, pw))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://169.254.169.254") as c:
        h = _headers()
        assert (await c.get("/latest/meta-data/public-ipv4", headers=h)).text == "172.24.4.9"
        too_long = await c.post("/openstack/2013-10-17/password", headers=h,
                                content=b"x" * 257)
        assert too_long.status_code == 400 and stored == {}
        assert (await c.post("/openstack/2013-10-17/password", headers=h,
                             content=b"secret-1")).status_code == 200
        assert stored == {UUID: "secret-1"}
        again = await c.post("/openstack/2013-10-17/password", headers=h, content=b"other")
        assert again.status_code == 409 and stored == {UUID: "secret-1"}
        assert (await c.post("/openstack/latest/meta_data.json", headers=h)).status_code == 405
        unsigned = await c.post("/openstack/2013-10-17/password", content=b"x",
                                headers={"X-Instance-ID": UUID})
        assert unsigned.status_code == 400


class _Instances:
    def get_instance(self, ctx: Any, uuid: str) -> dict[str, Any]:
        if uuid != UUID:
            raise LookupError(uuid)
        return {**INSTANCE, "system_metadata": {"networks": INSTANCE["networks"]}}

    def update_system_metadata(self, uuid: str, **items: Any) -> None:
        raise AssertionError("not used")


class _Neutron:
    """The part of the network service ``LocalNetwork.guest_ports`` reads: a device's ports
    in Neutron's shape (subnets keyed by id, a floating IP associated after the boot)."""

    def device_ports(self, device_id: str) -> list[dict[str, Any]]:
        return [{"id": "0123456789abcdef", "network_id": "n1",
                 "mac_address": "fa:16:3e:00:00:01", "mtu": 1450,
                 "fixed_ips": [{"ip_address": "10.0.0.5", "subnet_id": "s1"}],
                 "subnets": {"s1": {"cidr": "10.0.0.0/26", "gateway_ip": "10.0.0.1"}},
                 "floating_ips": [{"floating_ip_address": "203.0.113.7"}]}]


async def test_live_ports_through_compute_network_seam() -> None:
    """A floating IP associated after the boot shows (the ports are read live through
    compute's network seam, not from the instance's cache)."""
    from onestack.compute.network import LocalNetwork
    from onestack.metadata.app import compute_lookup

    lookup = compute_lookup(_Instances(), LocalNetwork(_Neutron()))  # type: ignore[arg-type]
    app = MetadataApp(lookup, SECRET)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://169.254.169.254") as c:
        h = _headers()
        assert (await c.get("/latest/meta-data/public-ipv4", headers=h)).text == "203.0.113.7"
        net = (await c.get("/openstack/latest/network_data.json", headers=h)).json()
        assert net["networks"][0]["netmask"] == "255.255.255.192"
        assert (await c.get("/latest/meta-data/public-ipv4",
                            headers=_headers(uuid="x" * 36))).status_code == 404
