"""Volumes attached to servers through the real clients: ``openstack server add/remove
volume``, ``server volume list``, openstacksdk's volume attachments (Nova 2.79+ with
``delete_on_termination``) and Cinder's attachments API (3.27-3.44), with the fake
hypervisor; tenancy, a reader, bad input, and what a server delete releases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openstack
import pytest

from tests.conftest import RunningCloud
from tests.functional.api_client import until as _until

pytestmark = pytest.mark.slow


def _json(cloud: RunningCloud, *args: str, env: dict[str, str]) -> Any:
    return json.loads(cloud.openstack(*args, "-f", "json", env=env).stdout)


def _volume_status(cloud: RunningCloud, env: dict[str, str], vid: str) -> str:
    return str(_json(cloud, "volume", "show", vid, env=env)["status"])


@pytest.fixture(scope="module")
def image(cloud: RunningCloud, tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("img") / "tiny.raw"
    path.write_bytes(b"onestack" * 8192)
    out = _json(cloud, "image", "create", "attach-tiny", "--file", str(path),
                "--disk-format", "raw", "--container-format", "bare", "--public",
                "--property", "hw_rng_model=virtio", env=cloud.os_env())
    return str(out["id"])


def _member(cloud: RunningCloud, prefix: str) -> tuple[dict[str, str], Any]:
    user, password, project = cloud.make_member(prefix)
    env = cloud.os_env(user, password, project)
    conn = openstack.connect(
        auth_url=cloud.auth_url, username=user, password=password, project_name=project,
        user_domain_id="default", project_domain_id="default", region_name="RegionOne",
        identity_api_version="3")
    return env, conn


def test_attach_detach_with_the_cli(cloud: RunningCloud, image: str) -> None:
    env, conn = _member(cloud, "att")
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", image, "--nic",
                    "none", "--wait", "srv", env=env)
    vol = _json(cloud, "volume", "create", "--size", "1", "data", env=env)
    _until(lambda: _volume_status(cloud, env, vol["id"]) == "available")

    cloud.openstack("server", "add", "volume", "srv", "data", env=env)
    shown = _json(cloud, "volume", "show", "data", env=env)
    assert shown["status"] == "in-use"
    (att,) = shown["attachments"]
    server = conn.compute.find_server("srv")
    assert att["server_id"] == server.id and att["device"] == "/dev/vdb"
    listed = _json(cloud, "server", "volume", "list", "srv", env=env)
    assert [(a["Volume ID"], a["Device"]) for a in listed] == [(vol["id"], "/dev/vdb")]
    # The same volume again, or to a second server: 400 and nothing changes.
    again = cloud.openstack("server", "add", "volume", "srv", "data", env=env, check=False)
    assert again.returncode != 0
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", image, "--nic",
                    "none", "--wait", "srv2", env=env)
    other = cloud.openstack("server", "add", "volume", "srv2", "data", env=env, check=False)
    assert other.returncode != 0 and "400" in other.stderr
    assert len(_json(cloud, "server", "volume", "list", "srv2", env=env)) == 0

    # Cinder's attachments API sees the same attachment (3.27+).
    atts = list(conn.block_storage.attachments())
    assert [(a.volume_id, a.instance, a.status) for a in atts] == [
        (vol["id"], server.id, "attached")]
    # ... but the volume service refuses to remove it behind compute's back (409).
    vurl = conn.block_storage.get_endpoint().rstrip("/")
    vh = {"X-Auth-Token": conn.session.get_token(), "OpenStack-API-Version": "volume 3.44"}
    for method, url, body in (
            ("DELETE", f"{vurl}/attachments/{atts[0].id}", None),
            ("POST", f"{vurl}/volumes/{vol['id']}/action", {"os-detach": {}}),
            ("POST", f"{vurl}/volumes/{vol['id']}/action",
             {"os-terminate_connection": {"connector": {}}})):
        r = httpx.request(method, url, headers=vh, json=body)
        assert r.status_code == 409, (url, body, r.text)
    assert _volume_status(cloud, env, vol["id"]) == "in-use"

    # Growing the attached volume needs 3.42; the guest is told (Nova's volume-extended).
    vol_url = conn.block_storage.get_endpoint().rstrip("/") + f"/volumes/{vol['id']}/action"
    vh = {"X-Auth-Token": conn.session.get_token()}
    r = httpx.post(vol_url, headers={**vh, "OpenStack-API-Version": "volume 3.41"},
                   json={"os-extend": {"new_size": 2}})
    assert r.status_code == 400, r.text
    r = httpx.post(vol_url, headers={**vh, "OpenStack-API-Version": "volume 3.42"},
                   json={"os-extend": {"new_size": 2}})
    assert r.status_code == 202, r.text
    _until(lambda: conn.block_storage.get_volume(vol["id"]).size == 2)
    assert conn.block_storage.get_volume(vol["id"]).status == "in-use"
    _until(lambda: "resized to 2 GiB" in cloud.openstack(
        "console", "log", "show", "srv", env=env).stdout)
    # ... and records it as Nova does: action extend_volume, event compute_extend_volume.
    admin = {"X-Auth-Token": cloud.token()}
    acts = f"{cloud.url('compute')}/v2.1/servers/{server.id}/os-instance-actions"
    extend = next(a for a in httpx.get(acts, headers=admin).json()["instanceActions"]
                  if a["action"] == "extend_volume")
    events = httpx.get(f"{acts}/{extend['request_id']}", headers=admin).json()[
        "instanceAction"]["events"]
    assert [(e["event"], e["result"]) for e in events] == [
        ("compute_extend_volume", "Success")] and events[0]["finish_time"]
    assert extend["user_id"] and extend["project_id"] == conn.current_project_id
    # A snapshot of the attached volume: refused without --force before 3.66; taken with
    # the guest's I/O paused while the data is copied.
    # (OSC 10 drops --force when the cloud offers 3.66 while openstacksdk sends 3.65, so
    # the SDK and plain requests are used here.)
    snaps = vol_url.rsplit("/volumes/", 1)[0] + "/snapshots"
    r = httpx.post(snaps, headers={**vh, "OpenStack-API-Version": "volume 3.65"},
                   json={"snapshot": {"volume_id": vol["id"], "name": "s-refused"}})
    assert r.status_code == 400, r.text
    forced = conn.block_storage.create_snapshot(volume_id=vol["id"], name="s-forced",
                                                force=True)
    r = httpx.post(snaps, headers={**vh, "OpenStack-API-Version": "volume 3.66"},
                   json={"snapshot": {"volume_id": vol["id"], "name": "s-366"}})
    assert r.status_code == 202, r.text
    for sid in (forced.id, r.json()["snapshot"]["id"]):
        _until(lambda sid=sid: conn.block_storage.get_snapshot(sid).status == "available")
    # Backups: of a snapshot (the volume stays in use), and of the attached volume itself
    # (forced; its guest pauses its I/O for the copy too).
    of_snap = conn.block_storage.create_backup(volume_id=vol["id"], snapshot_id=forced.id,
                                               name="of-snap")
    in_use = conn.block_storage.create_backup(volume_id=vol["id"], force=True, name="live")
    for b in (of_snap, in_use):
        conn.block_storage.wait_for_status(b, "available", wait=60)
    assert conn.block_storage.get_backup(of_snap.id).snapshot_id == forced.id
    assert conn.block_storage.get_snapshot(forced.id).status == "available"
    assert _volume_status(cloud, env, vol["id"]) == "in-use"
    log = cloud.openstack("console", "log", "show", "srv", env=env).stdout
    assert log.count("I/O paused") == 3 and log.count("I/O resumed") == 3
    assert _json(cloud, "server", "show", "srv", env=env)["status"] == "ACTIVE"
    for b in (of_snap, in_use):
        conn.block_storage.delete_backup(b)
    cloud.openstack("volume", "snapshot", "delete", "s-forced", "s-366", env=env)
    cloud.openstack("server", "remove", "volume", "srv", "data", env=env)
    assert _volume_status(cloud, env, vol["id"]) == "available"
    assert _json(cloud, "volume", "show", "data", env=env)["attachments"] == []
    assert _json(cloud, "server", "volume", "list", "srv", env=env) == []
    actions = [a["Action"] for a in _json(cloud, "server", "event", "list", "srv", env=env)]
    assert "attach_volume" in actions and "detach_volume" in actions
    cloud.openstack("server", "delete", "--wait", "srv", "srv2", env=env)
    cloud.openstack("volume", "delete", "data", env=env)


def test_delete_on_termination_and_server_delete(cloud: RunningCloud, image: str) -> None:
    env, conn = _member(cloud, "dot")
    server = conn.compute.create_server(name="s", flavor_id=conn.compute.find_flavor(
        "m1.tiny").id, image_id=image, networks="none")
    server = conn.compute.wait_for_server(server, wait=60)
    keep = conn.block_storage.create_volume(size=1, name="keep")
    gone = conn.block_storage.create_volume(size=1, name="gone")
    for v in (keep, gone):
        conn.block_storage.wait_for_status(v, "available", wait=30)
    conn.compute.create_volume_attachment(server, volume_id=keep.id)
    # delete_on_termination needs 2.79: the SDK negotiates the highest version.
    conn.compute.create_volume_attachment(server, volume_id=gone.id,
                                          delete_on_termination=True)
    atts = {a.volume_id: a for a in conn.compute.volume_attachments(server)}
    assert atts[keep.id].delete_on_termination is False
    assert atts[gone.id].delete_on_termination is True
    assert {a.device for a in atts.values()} == {"/dev/vdb", "/dev/vdc"}
    assert atts[keep.id].attachment_id  # 2.89: Cinder's attachment id
    # 2.85: flip delete_on_termination of an attachment.
    conn.compute.update_volume_attachment(server, keep.id, delete_on_termination=False)
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    _until(lambda: conn.block_storage.get_volume(keep.id).status == "available")
    _until(lambda: conn.block_storage.find_volume(gone.id) is None)
    conn.block_storage.delete_volume(keep.id)


def test_tenancy_reader_and_bad_input(cloud: RunningCloud, image: str) -> None:
    env, conn = _member(cloud, "atn")
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", image, "--nic",
                    "none", "--wait", "t1", env=env)
    sid = conn.compute.find_server("t1").id
    vol = conn.block_storage.create_volume(size=1, name="tv")
    conn.block_storage.wait_for_status(vol, "available", wait=30)
    token = conn.session.get_token()
    base = f"{cloud.url('compute')}/v2.1/servers/{sid}/os-volume_attachments"
    h = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.79"}
    for body, code in (({"volumeAttachment": {"volumeId": "nope"}}, 400),
                       ({"volumeAttachment": {"volumeId": vol.id, "device": "vdb"}}, 400),
                       ({"volumeAttachment": {"volumeId": vol.id, "bogus": 1}}, 400),
                       ({"volumeAttachment": {"volumeId": vol.id,
                                              "delete_on_termination": "yes"}}, 400),
                       ({"volumeAttachment": {"volumeId":
                                              "00000000-0000-4000-8000-000000000000"}}, 404),
                       ({"volumeAttachment": []}, 400), ([1, 2], 400)):
        r = httpx.post(base, headers=h, json=body)
        assert r.status_code == code, (body, r.text)
        assert "message" in next(iter(r.json().values()))
    assert conn.block_storage.get_volume(vol.id).status == "available"
    # Another project sees neither the server nor the volume.
    _env2, conn2 = _member(cloud, "atx")
    h2 = {"X-Auth-Token": conn2.session.get_token()}
    assert httpx.post(base, headers=h2, json={"volumeAttachment": {
        "volumeId": vol.id}}).status_code == 404
    own = conn2.compute.create_server(name="x", flavor_id=conn2.compute.find_flavor(
        "m1.tiny").id, image_id=image, networks="none")
    own = conn2.compute.wait_for_server(own, wait=60)
    r = httpx.post(f"{cloud.url('compute')}/v2.1/servers/{own.id}/os-volume_attachments",
                   headers=h2, json={"volumeAttachment": {"volumeId": vol.id}})
    assert r.status_code == 404, r.text
    conn2.compute.delete_server(own)
    # A reader of the project cannot attach (403) but can list.
    admin = {"X-Auth-Token": cloud.token()}
    ident = cloud.auth_url
    pid = conn.current_project_id
    uid = httpx.post(ident + "/users", headers=admin, json={"user": {
        "name": f"reader-{pid[:8]}", "password": "pw-reader"}}).json()["user"]["id"]
    rid = httpx.get(ident + "/roles", headers=admin,
                    params={"name": "reader"}).json()["roles"][0]["id"]
    httpx.put(f"{ident}/projects/{pid}/users/{uid}/roles/{rid}", headers=admin)
    reader = openstack.connect(
        auth_url=cloud.auth_url, username=f"reader-{pid[:8]}", password="pw-reader",
        project_id=pid, user_domain_id="default", region_name="RegionOne",
        identity_api_version="3")
    hr = {"X-Auth-Token": reader.session.get_token()}
    r = httpx.post(base, headers=hr, json={"volumeAttachment": {"volumeId": vol.id}})
    assert r.status_code == 403, r.text
    assert httpx.get(base, headers=hr).json() == {"volumeAttachments": []}
    # Detaching what is not attached: 404.
    r = httpx.delete(f"{base}/{vol.id}", headers=h)
    assert r.status_code == 404, r.text
    conn.compute.delete_server(sid)
    conn.block_storage.delete_volume(vol.id)


def test_cinder_attachment_flow(cloud: RunningCloud) -> None:
    """Nova's steps against /v3/attachments: reserve, connect, complete, delete."""
    _env, conn = _member(cloud, "cat")
    vol = conn.block_storage.create_volume(size=1, name="cv")
    conn.block_storage.wait_for_status(vol, "available", wait=30)
    url = conn.block_storage.get_endpoint().rstrip("/")
    h = {"X-Auth-Token": conn.session.get_token(), "OpenStack-API-Version": "volume 3.44"}
    server = "11111111-2222-4333-8444-555555555555"
    old = {**h, "OpenStack-API-Version": "volume 3.26"}
    assert httpx.get(url + "/attachments", headers=old).status_code == 404
    r = httpx.post(url + "/attachments", headers=h, json={"attachment": {
        "volume_uuid": vol.id, "instance_uuid": server}})
    assert r.status_code == 200, r.text
    att = r.json()["attachment"]
    assert att["status"] == "reserved" and att["instance"] == server
    assert conn.block_storage.get_volume(vol.id).status == "reserved"
    # A second reservation of a volume that is not multiattach: 400.
    r = httpx.post(url + "/attachments", headers=h, json={"attachment": {
        "volume_uuid": vol.id, "instance_uuid": server}})
    assert r.status_code == 400, r.text
    r = httpx.put(f"{url}/attachments/{att['id']}", headers=h, json={"attachment": {
        "connector": {"host": "h1", "platform": "x86_64", "os_type": "linux"}}})
    assert r.status_code == 200, r.text
    info = r.json()["attachment"]["connection_info"]
    assert info["driver_volume_type"] == "file" and info["data"]["path"].endswith(
        f"volume-{vol.id}")
    assert conn.block_storage.get_volume(vol.id).status == "attaching"
    r = httpx.post(f"{url}/attachments/{att['id']}/action", headers=h,
                   json={"os-complete": None})
    assert r.status_code == 204, r.text
    shown = conn.block_storage.get_volume(vol.id)
    assert shown.status == "in-use" and shown.attachments[0]["server_id"] == server
    listed = httpx.get(url + "/attachments/detail", headers=h,
                       params={"instance_id": server}).json()["attachments"]
    assert [a["status"] for a in listed] == ["attached"]
    # Another project does not see it.
    _env2, conn2 = _member(cloud, "cax")
    h2 = {**h, "X-Auth-Token": conn2.session.get_token()}
    url2 = conn2.block_storage.get_endpoint().rstrip("/")
    assert httpx.get(f"{url2}/attachments/{att['id']}", headers=h2).status_code == 404
    assert httpx.get(url2 + "/attachments", headers=h2).json() == {"attachments": []}
    # Bad input: 400, nothing stored.
    for body in ({"attachment": {}}, {"attachment": {"volume_uuid": 5}},
                 {"attachment": {"volume_uuid": vol.id, "connector": "x"}}, {"x": 1}):
        r = httpx.post(url + "/attachments", headers=h, json=body)
        assert r.status_code == 400, (body, r.text)
    r = httpx.delete(f"{url}/attachments/{att['id']}", headers=h)
    assert r.status_code == 200 and r.json() == {"attachments": []}
    assert conn.block_storage.get_volume(vol.id).status == "available"
    conn.block_storage.delete_volume(vol.id)


def test_boot_from_volume(cloud: RunningCloud, image: str) -> None:
    """``openstack server create --boot-from-volume`` (image -> new volume), ``--volume``
    (an existing volume) and ``--snapshot``, with the fake hypervisor."""
    env, conn = _member(cloud, "bfv")
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", image,
                    "--boot-from-volume", "1", "--nic", "none", "--wait", "b1", env=env)
    b1 = _json(cloud, "server", "show", "b1", env=env)
    assert b1["status"] == "ACTIVE"
    assert b1["image"] in ("", "N/A (booted from volume)")  # volume-backed: no image
    (root,) = conn.compute.volume_attachments(conn.compute.find_server("b1"))
    vol = conn.block_storage.get_volume(root.volume_id)
    assert vol.status == "in-use" and vol.is_bootable
    assert vol.volume_image_metadata["image_id"] == image
    assert root.device == "/dev/vda"
    # A snapshot of the volume-backed server: volume snapshots and an empty image whose
    # block device mapping boots a new server from them.
    cloud.openstack("server", "image", "create", "--name", "b1-image", "--wait", "b1",
                    env=env)
    b1_image = conn.image.find_image("b1-image")
    assert b1_image.status == "active" and not b1_image.size
    mapping = json.loads(b1_image.properties["block_device_mapping"])
    assert [(m["source_type"], m["boot_index"]) for m in mapping] == [("snapshot", 0)]
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "b1-image",
                    "--nic", "none", "--wait", "b5", env=env)
    (b5_root,) = conn.compute.volume_attachments(conn.compute.find_server("b5"))
    assert conn.block_storage.get_volume(b5_root.volume_id).snapshot_id == mapping[0][
        "snapshot_id"]
    assert _json(cloud, "server", "show", "b5", env=env)["image"] in (
        "", "N/A (booted from volume)")
    # The root volume cannot be detached.
    r = cloud.openstack("server", "remove", "volume", "b1", root.volume_id, env=env,
                        check=False)
    assert r.returncode != 0 and "root device" in r.stderr
    # An existing volume as the root disk; its image metadata configures the guest.
    src = conn.block_storage.create_volume(size=1, image_id=image, name="rootvol")
    conn.block_storage.wait_for_status(src, "available", wait=30)
    snap = conn.block_storage.create_snapshot(volume_id=src.id, name="s")
    conn.block_storage.wait_for_status(snap, "available", wait=30)
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--volume", "rootvol",
                    "--nic", "none", "--wait", "b2", env=env)
    assert conn.block_storage.get_volume(src.id).status == "in-use"
    # The same volume for another server: 400 before anything is made.
    r = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--volume", "rootvol",
                        "--nic", "none", "b3", env=env, check=False)
    assert r.returncode != 0 and "400" in r.stderr
    assert conn.compute.find_server("b3") is None
    # A volume that is not bootable (an empty one) cannot be the root disk (Nova's 400).
    plain = conn.block_storage.create_volume(size=1, name="plainvol")
    conn.block_storage.wait_for_status(plain, "available", wait=30)
    r = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--volume", "plainvol",
                        "--nic", "none", "b3", env=env, check=False)
    assert r.returncode != 0 and "is not bootable" in r.stderr, r.stderr
    assert conn.compute.find_server("b3") is None
    assert conn.block_storage.get_volume(plain.id).status == "available"
    # From a snapshot of a volume (a new volume made by compute).
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--snapshot", snap.id,
                    "--nic", "none", "--wait", "b4", env=env)
    b4 = conn.compute.find_server("b4")
    (made,) = conn.compute.volume_attachments(b4)
    assert conn.block_storage.get_volume(made.volume_id).snapshot_id == snap.id
    # Bad mappings: 400, nothing stored.
    token = conn.session.get_token()
    url = cloud.url("compute") + "/v2.1/servers"
    h = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.67"}
    flavor = conn.compute.find_flavor("m1.tiny").id
    for bdm in ([{"source_type": "image", "uuid": image, "destination_type": "volume",
                  "boot_index": 0}],  # no volume_size
                [{"source_type": "volume", "uuid": "00000000-0000-4000-8000-000000000000",
                  "destination_type": "volume", "boot_index": 0}],
                [{"source_type": "volume", "uuid": src.id, "destination_type": "volume",
                  "boot_index": 0}, {"source_type": "blank", "destination_type": "volume",
                                     "volume_size": 1, "boot_index": 0}]):
        r = httpx.post(url, headers=h, json={"server": {
            "name": "bad", "flavorRef": flavor, "networks": "none",
            "block_device_mapping_v2": bdm}})
        assert r.status_code == 400, (bdm, r.text)
    assert conn.compute.find_server("bad") is None
    # Deleting the servers: delete_on_termination volumes go, the others are freed.
    for name in ("b1", "b2", "b4", "b5"):
        conn.compute.delete_server(conn.compute.find_server(name))
    for name in ("b1", "b2", "b4", "b5"):
        _until(lambda name=name: conn.compute.find_server(name) is None, 60)
    _until(lambda: conn.block_storage.get_volume(src.id).status == "available")
    conn.image.delete_image(b1_image)
    for s in conn.block_storage.snapshots():
        conn.block_storage.delete_snapshot(s)
    _until(lambda: not list(conn.block_storage.snapshots()))
    for v in conn.block_storage.volumes():
        conn.block_storage.wait_for_status(v, "available", wait=30)
        conn.block_storage.delete_volume(v)


def test_nova_volume_proxy(cloud: RunningCloud) -> None:
    """Nova's deprecated ``os-volumes``/``os-snapshots`` (up to 2.35)."""
    _env, conn = _member(cloud, "prx")
    base = cloud.url("compute") + "/v2.1"
    h = {"X-Auth-Token": conn.session.get_token(), "OpenStack-API-Version": "compute 2.35"}
    r = httpx.post(f"{base}/os-volumes", headers=h, json={"volume": {
        "size": 1, "display_name": "pv", "metadata": {"k": "v"}}})
    assert r.status_code == 200, r.text
    vol = r.json()["volume"]
    assert vol["displayName"] == "pv" and vol["attachments"] == [{}]
    _until(lambda: httpx.get(f"{base}/os-volumes/{vol['id']}", headers=h).json()[
        "volume"]["status"] == "available")
    listed = httpx.get(f"{base}/os-volumes/detail", headers=h).json()["volumes"]
    assert [v["id"] for v in listed] == [vol["id"]]
    r = httpx.post(f"{base}/os-snapshots", headers=h, json={"snapshot": {
        "volume_id": vol["id"], "display_name": "ps"}})
    assert r.status_code == 200, r.text
    sid = r.json()["snapshot"]["id"]
    _until(lambda: httpx.get(f"{base}/os-snapshots/{sid}", headers=h).json()[
        "snapshot"]["status"] == "available")
    for body in ({"volume": {"size": 0}}, {"volume": {"size": "#$%"}}, {"volume": {}},
                 {"volume": {"size": 1, "bogus": 1}}):
        assert httpx.post(f"{base}/os-volumes", headers=h, json=body).status_code == 400
    assert httpx.get(f"{base}/os-volumes/{sid}", headers=h).status_code == 404
    # Gone from 2.36 on.
    h36 = {**h, "OpenStack-API-Version": "compute 2.36"}
    assert httpx.get(f"{base}/os-volumes", headers=h36).status_code == 404
    assert httpx.delete(f"{base}/os-snapshots/{sid}", headers=h).status_code == 202
    _until(lambda: httpx.get(f"{base}/os-snapshots/{sid}", headers=h).status_code == 404)
    assert httpx.delete(f"{base}/os-volumes/{vol['id']}", headers=h).status_code == 202
    _until(lambda: httpx.get(f"{base}/os-volumes/{vol['id']}", headers=h).status_code == 404)


def test_multiattach(cloud: RunningCloud, image: str) -> None:
    """A volume of a ``multiattach="<is> True"`` type on two servers (Nova 2.60+)."""
    admin = openstack.connect(
        auth_url=cloud.auth_url, username="admin", password=cloud.admin_password,
        project_name="admin", user_domain_id="default", project_domain_id="default",
        region_name="RegionOne", identity_api_version="3")
    vtype = admin.block_storage.create_type(name="multiattach-t",
                                            extra_specs={"multiattach": "<is> True"})
    env, conn = _member(cloud, "mat")
    # An empty type name is the default type, as in Cinder.
    plain = conn.block_storage.create_volume(size=1, name="plain", volume_type="")
    conn.block_storage.wait_for_status(plain, "available", wait=30)
    conn.block_storage.delete_volume(plain)
    vol = conn.block_storage.create_volume(size=1, name="shared", volume_type=vtype.name)
    conn.block_storage.wait_for_status(vol, "available", wait=30)
    assert conn.block_storage.get_volume(vol.id).is_multiattach
    sids = []
    for name in ("m1", "m2"):
        cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", image,
                        "--nic", "none", "--wait", name, env=env)
        sids.append(conn.compute.find_server(name).id)
    base = cloud.url("compute") + "/v2.1/servers"
    h = {"X-Auth-Token": conn.session.get_token()}
    r = httpx.post(f"{base}/{sids[0]}/os-volume_attachments",
                   headers={**h, "OpenStack-API-Version": "compute 2.59"},
                   json={"volumeAttachment": {"volumeId": vol.id}})
    assert r.status_code == 400 and "2.60" in r.text, r.text
    for sid in sids:
        r = httpx.post(f"{base}/{sid}/os-volume_attachments",
                       headers={**h, "OpenStack-API-Version": "compute 2.60"},
                       json={"volumeAttachment": {"volumeId": vol.id}})
        assert r.status_code == 200, r.text
    shown = conn.block_storage.get_volume(vol.id)
    assert shown.status == "in-use"
    assert sorted(a["server_id"] for a in shown.attachments) == sorted(sids)
    for sid in sids:
        r = httpx.delete(f"{base}/{sid}/os-volume_attachments/{vol.id}", headers=h)
        assert r.status_code == 202, r.text
    assert conn.block_storage.get_volume(vol.id).status == "available"
    for sid in sids:
        conn.compute.delete_server(sid)
    conn.block_storage.delete_volume(vol)
    _until(lambda: conn.block_storage.find_volume(vol.id) is None)
    admin.block_storage.delete_type(vtype)
