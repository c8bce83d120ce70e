"""The whole cloud on the engines of a many-host deployment: MariaDB or PostgreSQL for the
database and RabbitMQ for the bus, with two fake compute hosts.

The same code paths as the embedded SQLite + in-process default, but every call between the
API, the scheduler and the compute agents crosses RabbitMQ and every write is a server-side
transaction. Driven with openstacksdk-shaped HTTP calls: token, image upload, network + port,
server boot (with a port and without), stop/start/reboot, resize + confirm, a rejected bad
request, delete; placement usage must come back to zero. Runs for each server URL in
ONESTACK_TEST_DATABASE_URLS with ONESTACK_TEST_AMQP_URL; skipped without them (not in CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    IN_CI,
    RunningCloud,
    amqp_vhost,
    database_urls,
    scratch_database,
    start_cloud,
)

SERVERS = [u for u in database_urls() if u != "sqlite"]
AMQP = os.environ.get("ONESTACK_TEST_AMQP_URL") or (
    "amqp://guest:guest@127.0.0.1:5672/" if IN_CI else "")


def _amqp_reachable(url: str) -> bool:
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5672),
                                      timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", params=SERVERS or ["none"],
                ids=lambda u: u.split(":")[0].split("+")[0])
def engines_cloud(request: pytest.FixtureRequest) -> Iterator[RunningCloud]:
    if request.param == "none":
        if IN_CI:
            pytest.fail("CI must run the cloud on MariaDB/PostgreSQL (ONESTACK_TEST_DATABASE_URLS)")
        pytest.skip("no MariaDB/PostgreSQL in ONESTACK_TEST_DATABASE_URLS")
    if not AMQP or not _amqp_reachable(AMQP):
        if IN_CI:
            pytest.fail(f"CI must run the cloud on RabbitMQ ({AMQP or 'no URL'})")
        pytest.skip("RabbitMQ not reachable (ONESTACK_TEST_AMQP_URL)")
    tmp = Path(tempfile.mkdtemp(prefix="onestack-engines-"))
    scratch = scratch_database(request.param, tmp)
    url = next(scratch)
    try:
        # A virtual host of its own: nothing another run left on the broker is consumed,
        # and the queues go with it.
        with amqp_vhost(AMQP) as bus_url:
            cloud = start_cloud(tmp / "data", env={"ONESTACK_DATABASE_URL": url,
                                                   "ONESTACK_BUS_URL": bus_url},
                                args=["--fake-hosts", "2"], wait=120)
            try:
                yield cloud
            finally:
                cloud.stop()
    finally:
        next(scratch, None)  # drops the scratch database
        shutil.rmtree(tmp, ignore_errors=True)


class Api:
    def __init__(self, cloud: RunningCloud) -> None:
        self.cloud = cloud
        self.http = httpx.Client(timeout=60, headers={"X-Auth-Token": cloud.token()})

    def __call__(self, service: str, method: str, path: str, body: Any = None,
                 **headers: str) -> httpx.Response:
        return self.http.request(method, self.cloud.url(service) + path, json=body,
                                 headers=headers)

    def server(self, sid: str) -> dict[str, Any]:
        r = self("compute", "GET", f"/v2.1/servers/{sid}")
        assert r.status_code == 200, r.text
        return dict(r.json()["server"])

    def wait(self, sid: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            s = self.server(sid)
            if s["status"] == status and s["OS-EXT-STS:task_state"] is None:
                return s
            assert s["status"] != "ERROR", s.get("fault")
            assert time.monotonic() < deadline, (s["status"], s["OS-EXT-STS:task_state"])
            time.sleep(0.1)

    def action(self, sid: str, body: dict[str, Any], status: int = 202) -> None:
        r = self("compute", "POST", f"/v2.1/servers/{sid}/action", body)
        assert r.status_code == status, r.text


def _broker_queues(bus_url: str) -> list[str] | None:
    """Queue names in the bus URL's virtual host (None without rabbitmqctl)."""
    from urllib.parse import urlparse

    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return None
    vhost = urlparse(bus_url).path.lstrip("/") or "/"
    out = subprocess.run([ctl, "-q", "list_queues", "-p", vhost, "name"], check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def test_compute_flow_over_rabbitmq(engines_cloud: RunningCloud) -> None:
    api = Api(engines_cloud)
    hosts = api("compute", "GET", "/v2.1/os-hypervisors").json()["hypervisors"]
    assert len(hosts) == 2 and all(h["state"] == "up" for h in hosts)
    queues = _broker_queues(engines_cloud.extra_env["ONESTACK_BUS_URL"])
    if queues is not None:  # the agents really listen on the broker
        names = {h["hypervisor_hostname"] for h in hosts}
        assert {f"onestack.compute.{n}" for n in names} <= set(queues), queues

    img = api("image", "POST", "/v2/images", {"name": "engines", "disk_format": "raw",
                                              "container_format": "bare"}).json()
    r = api.http.put(engines_cloud.url("image") + f"/v2/images/{img['id']}/file",
                     content=os.urandom(4 << 20),
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text

    net = api("network", "POST", "/v2.0/networks", {"network": {"name": "engines"}})
    assert net.status_code == 201, net.text
    net_id = net.json()["network"]["id"]
    sub = api("network", "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net_id, "cidr": "10.77.0.0/24", "ip_version": 4}})
    assert sub.status_code == 201, sub.text

    # A bad request is refused before anything is queued.
    r = api("compute", "POST", "/v2.1/servers", {"server": {
        "name": "bad", "imageRef": img["id"], "flavorRef": "no-such-flavor"}})
    assert r.status_code == 400, r.text

    ids = []
    for name, networks in (("with-port", [{"uuid": net_id}]), ("no-port", "none")):
        r = api("compute", "POST", "/v2.1/servers", {"server": {
            "name": name, "imageRef": img["id"], "flavorRef": "1", "networks": networks}},
            **{"OpenStack-API-Version": "compute 2.37"})
        assert r.status_code == 202, r.text
        ids.append(r.json()["server"]["id"])
    for sid in ids:
        api.wait(sid, "ACTIVE")
    with_port = api.server(ids[0])
    assert with_port["addresses"]["engines"][0]["addr"].startswith("10.77.0.")
    ports = api("network", "GET", f"/v2.0/ports?device_id={ids[0]}").json()["ports"]
    assert len(ports) == 1 and ports[0]["status"] == "ACTIVE"

    sid = ids[1]
    api.action(sid, {"os-stop": None})
    api.wait(sid, "SHUTOFF")
    api.action(sid, {"os-start": None})
    api.wait(sid, "ACTIVE")
    api.action(sid, {"reboot": {"type": "HARD"}})
    api.wait(sid, "ACTIVE")
    api.action(sid, {"resize": {"flavorRef": "2"}})
    api.wait(sid, "VERIFY_RESIZE")
    api.action(sid, {"confirmResize": None}, 204)
    assert api.wait(sid, "ACTIVE")["flavor"]["id"] == "2"

    for sid in ids:
        assert api("compute", "DELETE", f"/v2.1/servers/{sid}").status_code == 204
    deadline = time.monotonic() + 60
    for sid in ids:
        while api("compute", "GET", f"/v2.1/servers/{sid}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert api("network", "GET", f"/v2.0/ports?device_id={ids[0]}").json()["ports"] == []
    # Every claim was released: no usage left on either host's resource provider.
    providers = api("placement", "GET", "/resource_providers").json()["resource_providers"]
    for rp in providers:
        usages = api("placement", "GET", f"/resource_providers/{rp['uuid']}/usages").json()
        assert not any(usages["usages"].values()), (rp["name"], usages)


def _volume_wait(api: Api, project: str, vid: str, status: str,
                 timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = api("volume", "GET", f"/v3/{project}/volumes/{vid}")
        assert r.status_code == 200, r.text
        vol = dict(r.json()["volume"])
        if vol["status"] == status:
            return vol
        assert not vol["status"].startswith("error"), vol
        assert time.monotonic() < deadline, vol["status"]
        time.sleep(0.1)


def test_volume_flow_over_rabbitmq(engines_cloud: RunningCloud) -> None:
    """Volumes, snapshots, a backup, attach/extend/detach to a server whose agent is on the
    other side of RabbitMQ, boot from volume, and everything released."""
    api = Api(engines_cloud)
    token = api.http.headers["X-Auth-Token"]
    project = httpx.get(engines_cloud.auth_url + "/auth/tokens", headers={
        "X-Auth-Token": token, "X-Subject-Token": token}).json()["token"]["project"]["id"]
    v = f"/v3/{project}"
    img = api("image", "POST", "/v2/images", {"name": "engines-vol", "disk_format": "raw",
                                              "container_format": "bare"}).json()
    r = api.http.put(engines_cloud.url("image") + f"/v2/images/{img['id']}/file",
                     content=os.urandom(1 << 20),
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text

    r = api("volume", "POST", f"{v}/volumes", {"volume": {"size": 1, "name": "ev"}})
    assert r.status_code == 202, r.text
    vid = r.json()["volume"]["id"]
    _volume_wait(api, project, vid, "available")
    r = api("volume", "POST", f"{v}/snapshots", {"snapshot": {"volume_id": vid}})
    assert r.status_code == 202, r.text
    sid = r.json()["snapshot"]["id"]
    r = api("volume", "POST", f"{v}/backups", {"backup": {"volume_id": vid}})
    assert r.status_code == 202, r.text
    bid = r.json()["backup"]["id"]

    r = api("compute", "POST", "/v2.1/servers", {"server": {
        "name": "vol-host", "imageRef": img["id"], "flavorRef": "1", "networks": "none"}},
        **{"OpenStack-API-Version": "compute 2.37"})
    assert r.status_code == 202, r.text
    server = r.json()["server"]["id"]
    api.wait(server, "ACTIVE")
    for _ in range(300):  # the snapshot and backup finish before the volume is attached
        snap = api("volume", "GET", f"{v}/snapshots/{sid}").json()["snapshot"]["status"]
        backup = api("volume", "GET", f"{v}/backups/{bid}").json()["backup"]["status"]
        if snap == backup == "available":
            break
        time.sleep(0.1)
    assert _volume_wait(api, project, vid, "available")
    r = api("compute", "POST", f"/v2.1/servers/{server}/os-volume_attachments",
            {"volumeAttachment": {"volumeId": vid}})
    assert r.status_code == 200, r.text
    assert _volume_wait(api, project, vid, "in-use")["attachments"][0]["server_id"] == server
    atts = api("volume", "GET", f"{v}/attachments",
               **{"OpenStack-API-Version": "volume 3.44"}).json()["attachments"]
    assert [(a["volume_id"], a["instance"], a["status"]) for a in atts] == [
        (vid, server, "attached")]
    r = api("volume", "POST", f"{v}/volumes/{vid}/action", {"os-extend": {"new_size": 2}},
            **{"OpenStack-API-Version": "volume 3.42"})
    assert r.status_code == 202, r.text
    for _ in range(300):
        vol = api("volume", "GET", f"{v}/volumes/{vid}").json()["volume"]
        if vol["size"] == 2 and vol["status"] == "in-use":
            break
        time.sleep(0.1)
    assert (vol["size"], vol["status"]) == (2, "in-use")
    r = api("compute", "DELETE", f"/v2.1/servers/{server}/os-volume_attachments/{vid}")
    assert r.status_code == 202, r.text
    _volume_wait(api, project, vid, "available")

    # Boot from a volume made of the image by the agent; deleting the server deletes it.
    r = api("compute", "POST", "/v2.1/servers", {"server": {
        "name": "bfv", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [{"source_type": "image", "uuid": img["id"],
                                     "destination_type": "volume", "volume_size": 1,
                                     "boot_index": 0, "delete_on_termination": True}]}},
        **{"OpenStack-API-Version": "compute 2.37"})
    assert r.status_code == 202, r.text
    bfv = r.json()["server"]["id"]
    shown = api.wait(bfv, "ACTIVE")
    (root,) = shown["os-extended-volumes:volumes_attached"]
    assert _volume_wait(api, project, root["id"], "in-use")["bootable"] == "true"
    for sid_ in (server, bfv):
        assert api("compute", "DELETE", f"/v2.1/servers/{sid_}").status_code == 204
    deadline = time.monotonic() + 60
    while api("volume", "GET", f"{v}/volumes/{root['id']}").status_code != 404:
        assert time.monotonic() < deadline, "the root volume was not deleted"
        time.sleep(0.1)

    for path in (f"{v}/backups/{bid}", f"{v}/snapshots/{sid}"):
        assert api("volume", "DELETE", path).status_code == 202
    deadline = time.monotonic() + 60
    while api("volume", "GET", f"{v}/snapshots/{sid}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api("volume", "DELETE", f"{v}/volumes/{vid}").status_code == 202
    deadline = time.monotonic() + 60
    while api("volume", "GET", f"{v}/volumes").json()["volumes"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    usage = api("volume", "GET", f"{v}/os-quota-sets/{project}?usage=true").json()[
        "quota_set"]
    assert usage["volumes"]["in_use"] == 0 and usage["gigabytes"]["in_use"] == 0, usage
