"""Fault injection end to end: the admin-only API and CLI, HTTP errors and latency seen by
openstacksdk, failed builds, a compute host going down, dropped bus messages, status."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openstack
import openstack.exceptions
import pytest

from tests.conftest import VENV_BIN, RunningCloud, own_cloud


@pytest.fixture(scope="module")
def fcloud() -> Iterator[RunningCloud]:
    with own_cloud("onestack-faults-", env={
            "ONESTACK_COMPUTE_HEARTBEAT_INTERVAL": "0.3",
            "ONESTACK_FAKE_HOSTS": "2"}) as c:
        yield c


def _faults(cloud: RunningCloud) -> str:
    return cloud.url("identity") + "/_onestack/faults"


def _add(cloud: RunningCloud, token: str, **rule: Any) -> dict[str, Any]:
    r = httpx.post(_faults(cloud), headers={"X-Auth-Token": token}, json={"fault": rule})
    assert r.status_code == 201, r.text
    return dict(r.json()["fault"])


def _clear(cloud: RunningCloud, token: str) -> None:
    assert httpx.delete(_faults(cloud), headers={"X-Auth-Token": token}).status_code == 204


def _sdk(cloud: RunningCloud, user: str = "admin", password: str | None = None,
         project: str = "admin") -> Any:
    return openstack.connect(
        auth_url=cloud.auth_url, username=user, password=password or cloud.admin_password,
        project_name=project, user_domain_id="default", project_domain_id="default",
        region_name="RegionOne", identity_api_version="3")


def _cli(cloud: RunningCloud, *args: str) -> str:
    res = subprocess.run([str(VENV_BIN / "onestack"), *args, "--data-dir",
                          str(cloud.data_dir)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_only_an_admin_manages_faults(fcloud: RunningCloud) -> None:
    assert httpx.get(_faults(fcloud)).status_code == 401
    user, password, project = fcloud.make_member("flt")
    member = fcloud.token(user, password, project)
    r = httpx.post(_faults(fcloud), headers={"X-Auth-Token": member},
                   json={"fault": {"kind": "http"}})
    assert r.status_code == 403 and r.json()["error"]["code"] == 403
    assert httpx.get(_faults(fcloud), headers={"X-Auth-Token": member}).status_code == 403
    admin = fcloud.token()
    for bad in ({"kind": "http", "status": 200}, {"kind": "http", "rate": 2},
                {"kind": "teleport"}, {"kind": "http", "count": -1}, []):
        r = httpx.post(_faults(fcloud), headers={"X-Auth-Token": admin}, json={"fault": bad})
        assert r.status_code == 400, (bad, r.text)
        assert "error" in r.json()
    assert httpx.get(_faults(fcloud), headers={"X-Auth-Token": admin}).json() == {
        "faults": []}
    health = httpx.get(fcloud.url("identity") + "/_onestack/health").json()
    assert health["fault_rules"] == 0 and "compute" in health["services"]


def test_sdk_sees_the_error_at_the_rate(fcloud: RunningCloud) -> None:
    admin = fcloud.token()
    conn = _sdk(fcloud)
    list(conn.compute.flavors())  # discovery and a token before the rule
    rule = _add(fcloud, admin, service="compute", method="GET", path="*/flavors/detail",
                status=503, rate=0.5, message="flavors are on fire")
    try:
        errors = 0
        for _ in range(120):
            try:
                list(conn.compute.flavors())
            except openstack.exceptions.HttpException as exc:
                assert exc.status_code == 503
                assert "flavors are on fire" in str(exc)
                errors += 1
        assert 30 <= errors <= 90  # binomial(120, 0.5): mean 60, sd 5.5
        # Other paths and services are untouched.
        list(conn.compute.keypairs())
        list(conn.network.networks())
        r = httpx.get(f"{_faults(fcloud)}/{rule['id']}", headers={"X-Auth-Token": admin})
        assert r.json()["fault"]["hits"] == errors
    finally:
        _clear(fcloud, admin)
    list(conn.compute.flavors())


def test_count_and_fault_body_per_service(fcloud: RunningCloud) -> None:
    admin = fcloud.token()
    h = {"X-Auth-Token": admin}
    _add(fcloud, admin, service="network", path="/v2.0/networks", status=500, count=2)
    _add(fcloud, admin, service="image", method="GET", path="/v2/images", status=409,
         count=1)
    try:
        net = fcloud.url("network") + "/v2.0/networks"
        codes = [httpx.get(net, headers=h) for _ in range(3)]
        assert [r.status_code for r in codes] == [500, 500, 200]
        assert "NeutronError" in codes[0].json()
        r = httpx.get(fcloud.url("image") + "/v2/images", headers=h)
        assert r.status_code == 409
        assert httpx.get(fcloud.url("image") + "/v2/images", headers=h).status_code == 200
        # Used-up rules remove themselves.
        assert httpx.get(_faults(fcloud), headers=h).json() == {"faults": []}
    finally:
        _clear(fcloud, admin)


def test_latency_rule_slows_requests_down(fcloud: RunningCloud) -> None:
    admin = fcloud.token()
    h = {"X-Auth-Token": admin}
    url = fcloud.url("placement") + "/resource_providers"
    _add(fcloud, admin, service="placement", path="/resource_providers", delay=0.6, count=1)
    try:
        t0 = time.monotonic()
        r = httpx.get(url, headers=h)
        assert r.status_code == 200 and time.monotonic() - t0 >= 0.6
    finally:
        _clear(fcloud, admin)


def _server(conn: Any, name: str, image: str, want: str, timeout: float = 30) -> Any:
    server = conn.compute.create_server(name=name, flavor_id="1", image_id=image,
                                        networks="none")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = conn.compute.get_server(server.id)
        if server.status == want:
            return server
        assert server.status in ("BUILD", want), server.to_dict()
        time.sleep(0.2)
    raise AssertionError(f"{name} is {server.status}, not {want}")


@pytest.fixture(scope="module")
def image(fcloud: RunningCloud) -> str:
    conn = _sdk(fcloud)
    img = conn.image.create_image(name="flt-img", disk_format="raw", container_format="bare",
                                  data=b"x" * 4096, visibility="public")
    return str(img.id)


def test_build_rule_ends_in_error_and_host_down(fcloud: RunningCloud, image: str) -> None:
    conn = _sdk(fcloud)
    admin = fcloud.token()
    _add(fcloud, admin, kind="build", count=1, message="disk on fire")
    try:
        srv = _server(conn, "flt-build", image, "ERROR")
        assert "disk on fire" in json.dumps(srv.fault)
        ok = _server(conn, "flt-ok", image, "ACTIVE")  # the rule is used up
    finally:
        _clear(fcloud, admin)
    hosts = sorted(s.host for s in conn.compute.services() if s.binary == "nova-compute")
    down = _add(fcloud, admin, kind="host_down", host=ok.compute_host)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = {s.host: s.state for s in conn.compute.services()
                      if s.binary == "nova-compute"}
            if states[ok.compute_host] == "down":
                break
            time.sleep(0.2)
        assert states[ok.compute_host] == "down"
        assert all(states[h] == "up" for h in hosts if h != ok.compute_host)
        # An action for a server on the down host goes nowhere; a console request (a call)
        # fails at once.
        r = httpx.post(f"{fcloud.url('compute')}/v2.1/servers/{ok.id}/action",
                       headers={"X-Auth-Token": admin},
                       json={"os-getConsoleOutput": {"length": 5}})
        assert r.status_code == 409, r.text
        status = json.loads(_cli(fcloud, "status", "--json"))
        assert [f["id"] for f in status["faults"]] == [down["id"]]
    finally:
        _clear(fcloud, admin)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(s.state == "up" for s in conn.compute.services()):
            break
        time.sleep(0.2)
    assert all(s.state == "up" for s in conn.compute.services())


def test_bus_rule_and_cli(fcloud: RunningCloud, image: str) -> None:
    conn = _sdk(fcloud)
    srv = _server(conn, "flt-bus", image, "ACTIVE")
    admin = fcloud.token()
    out = _cli(fcloud, "fault", "add", "--kind", "bus", "--topic", "compute.*", "--method",
               "get_console_output")
    rule_id = out.split()[0]
    # the CLI returns once the running cloud applies the rule
    listed = httpx.get(_faults(fcloud), headers={"X-Auth-Token": admin}).json()["faults"]
    assert [r["id"] for r in listed] == [rule_id]
    url = f"{fcloud.url('compute')}/v2.1/servers/{srv.id}/action"
    body = {"os-getConsoleOutput": {"length": 5}}
    assert httpx.post(url, headers={"X-Auth-Token": admin}, json=body).status_code == 409
    assert rule_id in _cli(fcloud, "fault", "list")
    _cli(fcloud, "fault", "remove", rule_id)
    assert httpx.post(url, headers={"X-Auth-Token": admin}, json=body).status_code == 200
    assert "no fault rules" in _cli(fcloud, "fault", "list")
