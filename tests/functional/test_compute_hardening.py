"""Compute requests that must not hurt the cloud: huge ``max_count``, bad live-migrate bodies,
and the reduced server document of rebuild/update responses (Nova's, Tempest's schema).

One ``onestack up`` (fake hypervisor, two hosts, at most 5 instances per request) for the
module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import image_samples
from tests.conftest import RunningCloud, own_cloud
from tests.functional.api_client import Http

CAP = 5


@pytest.fixture(scope="module")
def hc() -> Iterator[RunningCloud]:
    with own_cloud("onestack-compute-hard-", args=["--fake-hosts", "2"],
                   env={"ONESTACK_COMPUTE_MAX_INSTANCES_PER_REQUEST": str(CAP)}) as c:
        yield c


@pytest.fixture(scope="module")
def admin(hc: RunningCloud) -> Http:
    return Http(hc.url("compute") + "/v2.1", hc.token(), "2.79")


@pytest.fixture(scope="module")
def image_id(hc: RunningCloud) -> str:
    h = {"X-Auth-Token": hc.token()}
    img = httpx.post(hc.url("image") + "/v2/images", headers=h, json={
        "name": "cirros", "disk_format": "qcow2", "container_format": "bare",
        "visibility": "public"}).json()
    r = httpx.put(hc.url("image") + f"/v2/images/{img['id']}/file", content=image_samples.qcow2(),
                  headers={**h, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return str(img["id"])


def _server(image: str, name: str = "vm", **extra: Any) -> dict[str, Any]:
    return {"server": {"name": name, "imageRef": image, "flavorRef": "42",
                       "networks": "none", **extra}}


# ---------------------------------------------------------------------- defect 1: max_count
def test_huge_counts_answer_at_once_and_store_nothing(hc: RunningCloud, admin: Http,
                                                      image_id: str) -> None:
    user, pw, project = hc.make_member("huge")
    me = Http(hc.url("compute") + "/v2.1", hc.token(user, pw, project), "2.79")
    # The largest count a body may carry is 2**63 - 1 (beyond it the body layer answers 400).
    big = 2**63 - 1
    bodies = [_server(image_id, min_count=n, max_count=n) for n in (1_000_000, big)]
    bodies.append(_server(image_id, min_count=11, max_count=big))
    bodies.append(_server(image_id, min_count=1, max_count=2**63))
    results: list[httpx.Response] = []
    served: list[float] = []
    stop = threading.Event()
    other = Http(hc.url("compute") + "/v2.1", hc.token(), "2.79")

    def other_requests() -> None:
        # Another client keeps being served while the huge requests are handled.
        while not stop.is_set():
            t0 = time.monotonic()
            assert other("GET", "/flavors").status_code == 200
            served.append(time.monotonic() - t0)

    t = threading.Thread(target=other_requests)
    t.start()
    while not served:
        time.sleep(0.01)
    try:
        t0 = time.monotonic()
        for body in bodies:
            results.append(me("POST", "/servers", body))
        elapsed = time.monotonic() - t0
        n = len(served)
        while len(served) < n + 2:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(30)
    assert elapsed < 5, elapsed
    assert served and max(served) < 2, served
    assert results[3].status_code == 400, results[3].text
    for r in results[:3]:
        assert r.status_code == 403, r.text
        assert r.json()["forbidden"]["message"].startswith("Quota exceeded for ")
    assert results[0].json()["forbidden"]["message"] == (
        "Quota exceeded for cores, instances, ram: Requested 1000000, 1000000, 128000000, "
        "but already used 0, 0, 0 of 20, 10, 51200 cores, instances, ram")
    assert f", 11-{big}, " in results[2].json()["forbidden"]["message"]
    assert me("GET", "/servers").json()["servers"] == []

    # Unlimited quota: the per-request cap still bounds what one request creates.
    r = admin("PUT", f"/os-quota-sets/{_project_id(hc, project)}",
              {"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
    assert r.status_code == 200, r.text
    for n in (1_000_000, big):
        r = me("POST", "/servers", _server(image_id, min_count=n, max_count=n))
        assert r.status_code == 403, r.text
        assert (f"at most {CAP} instances can be created in one request"
                in r.json()["forbidden"]["message"])
    assert me("GET", "/servers").json()["servers"] == []
    r = me("POST", "/servers", _server(image_id, "many", min_count=1, max_count=big))
    assert r.status_code == 202, r.text
    made = me("GET", "/servers").json()["servers"]
    assert len(made) == CAP
    for s in made:
        assert me("DELETE", f"/servers/{s['id']}").status_code == 204


def _project_id(hc: RunningCloud, name: str) -> str:
    r = httpx.get(hc.auth_url + "/projects", params={"name": name},
                  headers={"X-Auth-Token": hc.token()})
    return str(r.json()["projects"][0]["id"])


# ---------------------------------------------------------------------- live migration
BAD_LIVE_MIGRATE: list[tuple[str, Any]] = [
    ("2.79", {"host": {}, "block_migration": "auto"}),
    ("2.79", {"host": 12, "block_migration": "auto"}),
    ("2.79", {"host": ["h"], "block_migration": "auto"}),
    ("2.79", {"host": "no such host!", "block_migration": "auto"}),
    ("2.79", {"host": "", "block_migration": "auto"}),
    ("2.79", {"host": None, "block_migration": "maybe"}),
    ("2.79", {"host": None, "block_migration": {}}),
    ("2.79", {"host": None}),
    ("2.79", {"block_migration": "auto"}),
    ("2.79", {"host": None, "block_migration": "auto", "force": True}),
    ("2.79", {"host": None, "block_migration": "auto", "extra": 1}),
    ("2.79", "host"),
    ("2.79", ["host"]),
    ("2.79", None),
    ("2.30", {"host": None, "block_migration": "auto", "force": "sometimes"}),
    ("2.1", {"host": None, "block_migration": False}),
    ("2.1", {"host": None, "block_migration": "auto", "disk_over_commit": False}),
    ("2.1", {"host": None, "block_migration": False, "disk_over_commit": []}),
]


def test_bad_live_migrate_bodies_change_nothing(hc: RunningCloud, admin: Http,
                                                image_id: str) -> None:
    sid = admin("POST", "/servers", _server(image_id, "lm")).json()["server"]["id"]
    before = admin.wait(sid, "ACTIVE")
    for version, args in BAD_LIVE_MIGRATE:
        r = admin("POST", f"/servers/{sid}/action", {"os-migrateLive": args},
                  **{"OpenStack-API-Version": f"compute {version}"})
        assert r.status_code == 400, (version, args, r.status_code, r.text)
        assert "badRequest" in r.json(), r.text
        s = admin("GET", f"/servers/{sid}").json()["server"]
        assert (s["status"], s["OS-EXT-STS:task_state"]) == ("ACTIVE", None), (version, args)
    for body in ({"migrate": {"host": {}}}, {"migrate": {"host": None, "x": 1}},
                 {"migrate": "h"}):
        r = admin("POST", f"/servers/{sid}/action", body)
        assert r.status_code == 400, (body, r.text)
    assert admin("GET", "/os-migrations").json()["migrations"] == []
    # Before 2.56 Nova validates nothing: Tempest's ``{"migrate": {}}`` is not refused.
    r = admin("POST", f"/servers/{sid}/action", {"migrate": {}},
              **{"OpenStack-API-Version": "compute 2.55"})
    assert r.status_code == 202, r.text
    admin.wait(sid, "VERIFY_RESIZE")
    r = admin("POST", f"/servers/{sid}/action", {"revertResize": None})
    assert r.status_code == 202, r.text
    before = admin.wait(sid, "ACTIVE")
    # A valid body still migrates, at the old microversion too.
    r = admin("POST", f"/servers/{sid}/action",
              {"os-migrateLive": {"host": None, "block_migration": False,
                                  "disk_over_commit": False}},
              **{"OpenStack-API-Version": "compute 2.1"})
    assert r.status_code == 202, r.text
    after = admin.wait(sid, "ACTIVE")
    assert after["OS-EXT-SRV-ATTR:host"] != before["OS-EXT-SRV-ATTR:host"]
    assert admin("DELETE", f"/servers/{sid}").status_code == 204


# ---------------------------------------------------------------------- rebuild response
def test_rebuild_and_update_responses_carry_basic_addresses(hc: RunningCloud, admin: Http,
                                                            image_id: str) -> None:
    net = Http(hc.url("network") + "/v2.0", hc.token())
    n = net("POST", "/networks", {"network": {"name": "rb-net"}}).json()["network"]
    r = net("POST", "/subnets", {"subnet": {"network_id": n["id"], "ip_version": 4,
                                            "cidr": "10.77.0.0/24"}})
    assert r.status_code == 201, r.text
    sid = admin("POST", "/servers", _server(image_id, "rb", networks=[{"uuid": n["id"]}])
                ).json()["server"]["id"]
    admin.wait(sid, "ACTIVE")
    full = admin("GET", f"/servers/{sid}").json()["server"]["addresses"]["rb-net"]
    assert {"OS-EXT-IPS:type", "OS-EXT-IPS-MAC:mac_addr"} <= set(full[0])
    try:
        for version in ("2.1", "2.74"):
            hdr = {"OpenStack-API-Version": f"compute {version}"}
            r = admin("POST", f"/servers/{sid}/action", {"rebuild": {"imageRef": image_id}},
                      **hdr)
            assert r.status_code == 202, r.text
            addrs = r.json()["server"]["addresses"]
            assert addrs == {"rb-net": [{"version": 4, "addr": full[0]["addr"]}]}, addrs
            admin.wait(sid, "ACTIVE")
            r = admin("PUT", f"/servers/{sid}", {"server": {"name": "rb2"}}, **hdr)
            assert r.status_code == 200, r.text
            assert set(r.json()["server"]["addresses"]["rb-net"][0]) == {"version", "addr"}
        # From 2.75 the responses are the full server document, as GET shows it.
        r = admin("POST", f"/servers/{sid}/action", {"rebuild": {"imageRef": image_id}})
        assert r.status_code == 202, r.text
        assert r.json()["server"]["addresses"]["rb-net"][0] == full[0]
        admin.wait(sid, "ACTIVE")
    finally:
        assert admin("DELETE", f"/servers/{sid}").status_code == 204
        deadline = time.monotonic() + 20
        while admin("GET", f"/servers/{sid}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        net("DELETE", f"/networks/{n['id']}")
