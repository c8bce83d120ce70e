"""Compute API over HTTP: microversions, faults, tenancy, state machine, quotas."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import image_samples
from tests.conftest import RunningCloud, start_cloud
from tests.functional.api_client import Http


@pytest.fixture(scope="module")
def cc() -> Iterator[RunningCloud]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-compute-api-"))
    c = start_cloud(tmp / "data", args=["--fake-hosts", "2"])
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class Client(Http):
    """The compute API of ``cloud`` with ``token``."""

    def __init__(self, cloud: RunningCloud, token: str, version: str | None = None) -> None:
        super().__init__(cloud.url("compute") + "/v2.1", token, version)


@pytest.fixture(scope="module")
def admin(cc: RunningCloud) -> Client:
    return Client(cc, cc.token(), "2.79")


@pytest.fixture(scope="module")
def demo(cc: RunningCloud) -> Client:
    pw = None
    for line in (cc.data_dir / "demo-openrc.sh").read_text().splitlines():
        if line.startswith("export OS_PASSWORD="):
            pw = line.split("=", 1)[1].strip("'")
    return Client(cc, cc.token("demo", pw, "demo"), "2.79")


@pytest.fixture(scope="module")
def image_id(cc: RunningCloud) -> str:
    h = {"X-Auth-Token": cc.token()}
    img = httpx.post(cc.url("image") + "/v2/images", headers=h, json={
        "name": "cirros", "disk_format": "qcow2", "container_format": "bare",
        "visibility": "public"}).json()
    r = httpx.put(cc.url("image") + f"/v2/images/{img['id']}/file",
                  content=image_samples.qcow2(length=1024),
                  headers={**h, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return str(img["id"])


def boot(c: Client, image: str, name: str = "vm", **extra: Any) -> dict[str, Any]:
    r = c("POST", "/servers", {"server": {"name": name, "imageRef": image, "flavorRef": "42",
                                          "networks": "none", **extra}})
    assert r.status_code == 202, r.text
    return dict(r.json()["server"])


def test_version_documents(cc: RunningCloud) -> None:
    root = httpx.get(cc.url("compute") + "/").json()
    ids = {v["id"]: v for v in root["versions"]}
    assert ids["v2.1"]["min_version"] == "2.1"
    assert int(ids["v2.1"]["version"].split(".")[1]) >= 90
    v21 = httpx.get(cc.url("compute") + "/v2.1").json()["version"]
    assert v21["id"] == "v2.1" and v21["status"] == "CURRENT"


def test_microversion_negotiation(admin: Client) -> None:
    r = admin("GET", "/flavors", **{"OpenStack-API-Version": "compute latest"})
    assert r.status_code == 200
    assert r.headers["OpenStack-API-Version"].startswith("compute 2.")
    assert r.headers["X-OpenStack-Nova-API-Version"] != "2.1"
    r = admin("GET", "/flavors", **{"OpenStack-API-Version": "compute 2.999"})
    assert r.status_code == 406 and "HTTPNotAcceptable" in r.json()
    r = admin("GET", "/flavors", **{"OpenStack-API-Version": "compute 2.x"})
    assert r.status_code == 400 and "badRequest" in r.json()
    r = admin("GET", "/flavors", **{"X-OpenStack-Nova-API-Version": "2.55"})
    assert r.status_code == 200 and "description" in r.json()["flavors"][0]


def test_faults_and_bad_input(admin: Client, image_id: str) -> None:
    r = admin("GET", "/servers/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and r.json()["itemNotFound"]["code"] == 404
    r = admin("POST", "/servers", {"server": {"name": "x", "imageRef": image_id,
                                              "flavorRef": "nope", "networks": "none"}})
    assert r.status_code == 400 and "badRequest" in r.json()
    r = admin("POST", "/servers", {"server": {"name": "x", "flavorRef": "1",
                                              "imageRef": "11111111-1111-1111-1111-111111111111",
                                              "networks": "none"}})
    assert r.status_code == 400
    r = admin("POST", "/servers", {"server": {"name": "x", "imageRef": image_id,
                                              "flavorRef": "1",
                                              "networks": [{"uuid": "11111111-1111-1111-1111-"
                                                                    "111111111111"}]}})
    assert r.status_code == 400
    r = admin.http.post(admin.base + "/servers", content=b"{not json",
                        headers={**admin.headers, "Content-Type": "application/json"})
    assert r.status_code == 400
    r = admin("POST", "/servers", {"server": "nope"})
    assert r.status_code == 400
    r = admin("GET", "/servers?limit=-1")
    assert r.status_code == 400
    r = admin("GET", "/servers?changes-since=yesterday")
    assert r.status_code == 400


def test_tenancy_and_admin_apis(admin: Client, demo: Client, image_id: str) -> None:
    s = boot(admin, image_id, "admin-only")
    assert demo("GET", f"/servers/{s['id']}").status_code == 404
    assert demo("DELETE", f"/servers/{s['id']}").status_code == 404
    assert demo("GET", "/os-hypervisors").status_code == 403
    assert demo("GET", "/os-services").json()["forbidden"]["code"] == 403
    assert demo("POST", "/flavors", {"flavor": {"name": "f", "ram": 1, "vcpus": 1,
                                                "disk": 0}}).status_code == 403
    assert demo("GET", "/servers/detail?all_tenants=1").status_code == 403
    listed = admin("GET", "/servers/detail?all_tenants=1").json()["servers"]
    assert s["id"] in [x["id"] for x in listed]
    admin.wait(s["id"], "ACTIVE")
    assert admin("DELETE", f"/servers/{s['id']}").status_code == 204


def test_lifecycle_state_machine_and_lock(admin: Client, demo: Client, image_id: str) -> None:
    s = boot(demo, image_id, "life", metadata={"k": "v"}, tags=["a", "b"])
    server = demo.wait(s["id"], "ACTIVE")
    assert server["metadata"] == {"k": "v"} and sorted(server["tags"]) == ["a", "b"]
    assert server["flavor"]["original_name"] == "m1.nano"  # 2.47+: flavor embedded
    act = f"/servers/{s['id']}/action"
    assert demo("POST", act, {"os-stop": None}).status_code == 202
    demo.wait(s["id"], "SHUTOFF")
    r = demo("POST", act, {"os-stop": None})
    assert r.status_code == 409
    assert r.json()["conflictingRequest"]["message"] == (
        f"Cannot 'stop' instance {s['id']} while it is in vm_state stopped")
    assert demo("POST", act, {"os-start": None}).status_code == 202
    demo.wait(s["id"], "ACTIVE")
    for action, status in ((("pause", "PAUSED"), ("unpause", "ACTIVE")),
                           (("suspend", "SUSPENDED"), ("resume", "ACTIVE")),
                           (("rescue", "RESCUE"), ("unrescue", "ACTIVE"))):
        for name, st in (action, status):
            r = demo("POST", act, {name: None})
            assert r.status_code in (200, 202), r.text
            demo.wait(s["id"], st)
    assert demo("POST", act, {"reboot": {"type": "HARD"}}).status_code == 202
    demo.wait(s["id"], "ACTIVE")
    out = demo("POST", act, {"os-getConsoleOutput": {"length": 3}}).json()["output"]
    assert len(out.split("\n")) == 3
    assert demo("POST", act, {"lock": {"locked_reason": "maint"}}).status_code == 202
    shown = demo("GET", f"/servers/{s['id']}",
                 **{"OpenStack-API-Version": "compute 2.73"}).json()["server"]
    assert shown["locked"] is True and shown["locked_reason"] == "maint"
    r = demo("POST", act, {"os-stop": None})
    assert r.status_code == 409 and "locked" in r.json()["conflictingRequest"]["message"]
    assert admin("POST", act, {"unlock": None}).status_code == 202
    actions = demo("GET", f"/servers/{s['id']}/os-instance-actions").json()["instanceActions"]
    assert {"create", "stop", "start", "lock", "unlock"} <= {a["action"] for a in actions}
    assert demo("DELETE", f"/servers/{s['id']}").status_code == 204
    deadline = time.monotonic() + 10
    while demo("GET", f"/servers/{s['id']}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_quota_exceeded_leaves_nothing(admin: Client, demo: Client, image_id: str) -> None:
    # Learn the demo project's id from a server of its own, then cap its quota.
    s = boot(demo, image_id, "probe")
    used = demo("GET", "/limits").json()["limits"]["absolute"]["totalInstancesUsed"]
    pid = demo("GET", f"/servers/{s['id']}").json()["server"]["tenant_id"]
    assert admin("PUT", f"/os-quota-sets/{pid}",
                 {"quota_set": {"instances": used, "force": True}}).status_code == 200
    r = demo("POST", "/servers", {"server": {"name": "over", "imageRef": image_id,
                                             "flavorRef": "42", "networks": "none"}})
    assert r.status_code == 403
    assert r.json()["forbidden"]["message"] == (
        f"Quota exceeded for instances: Requested 1, but already used {used} of "
        f"{used} instances")
    names = [x["name"] for x in demo("GET", "/servers").json()["servers"]]
    assert "over" not in names
    assert demo("GET", "/limits").json()["limits"]["absolute"]["totalInstancesUsed"] == used
    admin("PUT", f"/os-quota-sets/{pid}", {"quota_set": {"instances": 10}})
    demo("DELETE", f"/servers/{s['id']}")


def test_flavors_keypairs_groups(admin: Client, demo: Client) -> None:
    r = admin("POST", "/flavors", {"flavor": {"name": "private.small", "ram": 64, "vcpus": 1,
                                              "disk": 1, "id": "p1",
                                              "os-flavor-access:is_public": False}})
    assert r.status_code == 200, r.text
    assert demo("GET", "/flavors/p1").status_code == 404
    assert admin("POST", "/flavors/p1/os-extra_specs",
                 {"extra_specs": {"hw:cpu_policy": "shared"}}).status_code == 200
    assert admin("GET", "/flavors/p1", **{"OpenStack-API-Version": "compute 2.61"}).json()[
        "flavor"]["extra_specs"] == {"hw:cpu_policy": "shared"}
    assert admin("DELETE", "/flavors/p1").status_code == 202
    r = demo("POST", "/os-keypairs", {"keypair": {"name": "gen", "type": "ssh"}},
             **{"OpenStack-API-Version": "compute 2.2"})
    assert r.status_code == 201 and "PRIVATE KEY" in r.json()["keypair"]["private_key"]
    assert demo("GET", "/os-keypairs/gen").json()["keypair"]["fingerprint"].count(":") == 15
    assert demo("POST", "/os-keypairs", {"keypair": {"name": "gen"}},
                **{"OpenStack-API-Version": "compute 2.2"}).status_code == 409
    bad = demo("POST", "/os-keypairs", {"keypair": {"name": "bad", "public_key": "ssh-rsa x"}})
    assert bad.status_code == 400
    assert demo("DELETE", "/os-keypairs/gen").status_code == 204
    g = demo("POST", "/os-server-groups", {"server_group": {"name": "g",
                                                            "policy": "anti-affinity"}},
             **{"OpenStack-API-Version": "compute 2.64"})
    assert g.status_code == 200 and g.json()["server_group"]["policy"] == "anti-affinity"
    assert demo("DELETE", f"/os-server-groups/{g.json()['server_group']['id']}"
                ).status_code == 204


def test_admin_views(admin: Client) -> None:
    hyps = admin("GET", "/os-hypervisors/detail",
                 **{"OpenStack-API-Version": "compute 2.1"}).json()["hypervisors"]
    assert len(hyps) >= 2 and all(h["state"] == "up" for h in hyps)
    stats = admin("GET", "/os-hypervisors/statistics",
                  **{"OpenStack-API-Version": "compute 2.1"}).json()["hypervisor_statistics"]
    assert stats["count"] >= 2
    svcs = admin("GET", "/os-services").json()["services"]
    compute = [s for s in svcs if s["binary"] == "nova-compute"]
    r = admin("PUT", f"/os-services/{compute[0]['id']}",
              {"status": "disabled", "disabled_reason": "test"})
    assert r.status_code == 200 and r.json()["service"]["status"] == "disabled"
    admin("PUT", f"/os-services/{compute[0]['id']}", {"status": "enabled"})
    agg = admin("POST", "/os-aggregates", {"aggregate": {"name": "agg1",
                                                         "availability_zone": "az1"}})
    assert agg.status_code == 200
    aid = agg.json()["aggregate"]["id"]
    r = admin("POST", f"/os-aggregates/{aid}/action",
              {"add_host": {"host": compute[0]["host"]}})
    assert r.status_code == 200
    zones = admin("GET", "/os-availability-zone").json()["availabilityZoneInfo"]
    assert "az1" in [z["zoneName"] for z in zones]
    admin("POST", f"/os-aggregates/{aid}/action", {"remove_host": {"host":
                                                                   compute[0]["host"]}})
    assert admin("DELETE", f"/os-aggregates/{aid}").status_code == 200
