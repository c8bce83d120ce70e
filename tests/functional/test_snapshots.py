"""Snapshots and reset of a whole cloud (issue 16): a cloud with users, images, networks, a
volume and 50 fake servers is saved while it runs, changed, loaded back (running: it restarts
in place; stopped: offline) and reset to its first start; every resource is listed before
and after and must match exactly."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import VENV_BIN, RunningCloud, own_cloud, start_cloud


@pytest.fixture(scope="module")
def scloud() -> Iterator[RunningCloud]:
    with own_cloud("onestack-snap-") as c:
        yield c


def _cli(cloud: RunningCloud, *args: str, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(VENV_BIN / "onestack"), *args, "--data-dir",
                          str(cloud.data_dir)], capture_output=True, text=True, timeout=180)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


class Api:
    def __init__(self, cloud: RunningCloud) -> None:
        self.cloud = cloud
        self.h = {"X-Auth-Token": cloud.token(), "OpenStack-API-Version": "compute 2.79"}

    def get(self, service: str, path: str, **params: Any) -> Any:
        r = httpx.get(self.cloud.url(service) + path, headers=self.h, params=params,
                      timeout=30)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    def post(self, service: str, path: str, body: Any, want: int = 201) -> Any:
        r = httpx.post(self.cloud.url(service) + path, headers=self.h, json=body, timeout=30)
        assert r.status_code == want, (path, r.text)
        return r.json() if r.content else None


def inventory(cloud: RunningCloud) -> dict[str, Any]:
    """Every resource a user could list, reduced to what must round-trip."""
    api = Api(cloud)

    def pick(items: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(str(i.get(k)) for k in keys) for i in items)

    servers = api.get("compute", "/v2.1/servers/detail", all_tenants="1")["servers"]
    quotas = api.get("compute", f"/v2.1/os-quota-sets/{_project_id(api)}")["quota_set"]
    return {
        "quotas": sorted(quotas.items()),
        "projects": pick(api.get("identity", "/v3/projects")["projects"], "id", "name"),
        "users": pick(api.get("identity", "/v3/users")["users"], "id", "name"),
        "assignments": pick([{"u": a.get("user", {}).get("id"),
                              "p": a.get("scope", {}).get("project", {}).get("id"),
                              "r": a["role"]["id"]}
                             for a in api.get("identity", "/v3/role_assignments")[
                                 "role_assignments"]], "u", "p", "r"),
        "images": pick(api.get("image", "/v2/images")["images"], "id", "name", "status",
                       "checksum", "size"),
        "networks": pick(api.get("network", "/v2.0/networks")["networks"], "id", "name"),
        "subnets": pick(api.get("network", "/v2.0/subnets")["subnets"], "id", "cidr"),
        "ports": pick(api.get("network", "/v2.0/ports")["ports"], "id", "device_id",
                      "fixed_ips", "mac_address"),
        "routers": pick(api.get("network", "/v2.0/routers")["routers"], "id",
                        "external_gateway_info"),
        "security_groups": pick(api.get("network", "/v2.0/security-groups")[
            "security_groups"], "id", "name"),
        "flavors": pick(api.get("compute", "/v2.1/flavors/detail")["flavors"], "id",
                        "name"),
        "keypairs": pick([k["keypair"] for k in api.get("compute", "/v2.1/os-keypairs")[
            "keypairs"]], "name", "fingerprint"),
        "volumes": pick(api.get("volume", "/v3/volumes/detail", all_tenants="1")["volumes"],
                        "id", "name", "status", "size"),
        "servers": pick(servers, "id", "name", "status", "OS-EXT-STS:power_state",
                        "addresses", "OS-EXT-SRV-ATTR:host"),
    }


def _wait_active(api: Api, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = api.get("compute", "/v2.1/servers/detail", all_tenants="1")["servers"]
        if len([s for s in servers if s["status"] == "ACTIVE"]) >= count:
            return
        assert not [s for s in servers if s["status"] == "ERROR"], servers
        time.sleep(0.2)
    raise AssertionError("servers did not become ACTIVE")


def _populate(cloud: RunningCloud) -> dict[str, Any]:
    api = Api(cloud)
    user, password, project = cloud.make_member("snap")
    data = b"onestack snapshot " * 4096
    img = api.post("image", "/v2/images", {"name": "snap-img", "disk_format": "raw",
                                            "container_format": "bare",
                                            "visibility": "public"})
    r = httpx.put(f"{cloud.url('image')}/v2/images/{img['id']}/file", content=data,
                  headers={**api.h, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    net = api.post("network", "/v2.0/networks", {"network": {"name": "snap-net"}})["network"]
    api.post("network", "/v2.0/subnets", {"subnet": {
        "network_id": net["id"], "cidr": "10.77.0.0/22", "ip_version": 4}})
    api.post("network", "/v2.0/security-groups", {"security_group": {"name": "snap-sg"}})
    api.post("compute", "/v2.1/os-keypairs", {"keypair": {"name": "snap-key"}})
    api.post("volume", f"/v3/{_project_id(api)}/volumes", {"volume": {"size": 1,
                                                                      "name": "snap-vol"}},
             want=202)
    r = httpx.put(f"{cloud.url('compute')}/v2.1/os-quota-sets/{_project_id(api)}",
                  headers=api.h, json={"quota_set": {"instances": 100, "cores": 100,
                                                     "ram": 1000000}})
    assert r.status_code == 200, r.text
    api.post("compute", "/v2.1/servers", {"server": {
        "name": "snap", "imageRef": img["id"], "flavorRef": "1", "min_count": 50,
        "networks": [{"uuid": net["id"]}]}}, want=202)
    _wait_active(api, 50)
    return {"image": img["id"], "data": data, "user": (user, password, project)}


def _project_id(api: Api) -> str:
    r = httpx.get(api.cloud.url("identity") + "/v3/auth/tokens",
                  headers={**api.h, "X-Subject-Token": api.h["X-Auth-Token"]})
    return str(r.json()["token"]["project"]["id"])


def test_save_load_reset_round_trip(scloud: RunningCloud) -> None:
    fresh = inventory(scloud)
    made = _populate(scloud)
    time.sleep(0.5)  # volume create finishes
    before = inventory(scloud)
    assert len(before["servers"]) == 50
    out = _cli(scloud, "snapshot", "save", "s1").stdout
    assert "saved s1" in out
    assert "s1" in _cli(scloud, "snapshot", "list").stdout
    # Saving again under the same name needs --force; a bad name is refused.
    assert _cli(scloud, "snapshot", "save", "s1", check=False).returncode != 0
    assert _cli(scloud, "snapshot", "save", "../x", check=False).returncode != 0
    assert _cli(scloud, "snapshot", "load", "nope", check=False).returncode != 0

    # Change the cloud: servers go, a project comes, the image goes, a fault rule.
    api = Api(scloud)
    for srv in api.get("compute", "/v2.1/servers")["servers"][:10]:
        httpx.delete(f"{scloud.url('compute')}/v2.1/servers/{srv['id']}", headers=api.h)
    api.post("identity", "/v3/projects", {"project": {"name": "after-save"}})
    httpx.delete(f"{scloud.url('image')}/v2/images/{made['image']}", headers=api.h)
    _cli(scloud, "fault", "add", "--service", "compute", "--path", "/nothing")
    assert inventory(scloud) != before

    out = _cli(scloud, "snapshot", "load", "s1").stdout
    assert "up again" in out
    assert inventory(scloud) == before
    r = httpx.get(f"{scloud.url('image')}/v2/images/{made['image']}/file",
                  headers=Api(scloud).h)
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(made["data"]).digest()
    assert "no fault rules" in _cli(scloud, "fault", "list").stdout
    user, password, project = made["user"]
    scloud.token(user, password, project)  # the member can log in again

    # Offline: stop the cloud, load, start it again.
    api = Api(scloud)
    api.post("identity", "/v3/projects", {"project": {"name": "after-save-2"}})
    scloud.stop()
    out = _cli(scloud, "snapshot", "load", "s1").stdout
    assert "loaded s1" in out
    restarted = start_cloud(scloud.data_dir, ports=scloud.ports, env=scloud.extra_env)
    scloud.proc = restarted.proc
    assert inventory(scloud) == before

    # Reset: back to the first start (the snapshot stays, fault rules go).
    _cli(scloud, "fault", "add", "--service", "image", "--path", "/nothing")
    out = _cli(scloud, "reset").stdout
    assert "no fault rules" in _cli(scloud, "fault", "list").stdout
    assert "loaded the first start" in out
    after_reset = inventory(scloud)
    # A project's default security group is made when first asked for (Neutron): the
    # first listing after the first start made the admin project's; the reset cloud makes
    # it again, with a new id.
    for inv in (after_reset, fresh):
        inv["security_groups"] = sorted(name for _id, name in inv["security_groups"])
    assert after_reset == fresh
    assert "s1" in _cli(scloud, "snapshot", "list").stdout
    _cli(scloud, "snapshot", "delete", "s1")
    assert "no snapshots" in _cli(scloud, "snapshot", "list").stdout
