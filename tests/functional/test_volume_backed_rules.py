"""Nova's rules for volume-backed servers and Cinder's re-image, through the HTTP APIs with
the fake hypervisor: rebuild (same image; a new image refused before 2.93, written into the
root volume from 2.93), rescue (from 2.87 with a stable-device rescue image only), resize to
a zero-disk flavor, the zero-disk flavor policy for image-backed servers, ``os-reimage``
(3.68) with its checks, and the ``volumev3`` catalog entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openstack
import pytest

from tests.conftest import RunningCloud
from tests.functional.api_client import until as _until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(cloud: RunningCloud, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    conn = openstack.connect(auth_url=cloud.auth_url, username="admin",
                             password=cloud.admin_password, project_name="admin",
                             user_domain_id="default", project_domain_id="default",
                             region_name="RegionOne", identity_api_version="3")
    out = []
    for n in range(2):
        path: Path = tmp_path_factory.mktemp("img") / f"img{n}.raw"
        path.write_bytes(bytes([65 + n]) * 65536)
        img = conn.image.create_image(name=f"vb-{n}", filename=str(path), disk_format="raw",
                                      container_format="bare", visibility="public")
        out.append(img.id)
    return out


class Client:
    """A member of a new project, speaking HTTP to compute and volume."""

    def __init__(self, cloud: RunningCloud) -> None:
        user, password, project = cloud.make_member("vb")
        self.conn = openstack.connect(
            auth_url=cloud.auth_url, username=user, password=password, project_name=project,
            user_domain_id="default", project_domain_id="default", region_name="RegionOne",
            identity_api_version="3")
        self.token = self.conn.session.get_token()
        self.project = self.conn.current_project_id
        self.compute = cloud.url("compute") + "/v2.1"
        self.volume = cloud.url("volume") + f"/v3/{self.project}"

    def nova(self, method: str, path: str, mv: str = "2.1", **kw: Any) -> httpx.Response:
        return httpx.request(method, self.compute + path, headers={
            "X-Auth-Token": self.token, "OpenStack-API-Version": f"compute {mv}"}, **kw)

    def cinder(self, method: str, path: str, mv: str = "3.0", **kw: Any) -> httpx.Response:
        return httpx.request(method, self.volume + path, headers={
            "X-Auth-Token": self.token, "OpenStack-API-Version": f"volume {mv}"}, **kw)

    def status(self, sid: str) -> str:
        return str(self.nova("GET", f"/servers/{sid}").json()["server"]["status"])

    def volume_doc(self, vid: str) -> dict[str, Any]:
        return dict(self.cinder("GET", f"/volumes/{vid}").json()["volume"])


def _boot_from_volume(c: Client, image: str, name: str) -> tuple[str, str]:
    flavor = c.conn.compute.find_flavor("m1.tiny").id
    r = c.nova("POST", "/servers", "2.67", json={"server": {
        "name": name, "flavorRef": flavor, "networks": "none",
        "block_device_mapping_v2": [{"source_type": "image", "uuid": image,
                                     "destination_type": "volume", "volume_size": 1,
                                     "boot_index": 0, "delete_on_termination": True}]}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    _until(lambda: c.status(sid) == "ACTIVE")
    (att,) = c.nova("GET", f"/servers/{sid}/os-volume_attachments").json()[
        "volumeAttachments"]
    return sid, att["volumeId"]


def test_rebuild_rescue_and_resize_of_a_volume_backed_server(
        cloud: RunningCloud, images: list[str]) -> None:
    a, b = images
    c = Client(cloud)
    sid, root = _boot_from_volume(c, a, "vb1")
    action = f"/servers/{sid}/action"
    # The image in the root volume again: a plain rebuild; the server keeps no image.
    r = c.nova("POST", action, "2.92", json={"rebuild": {"imageRef": a}})
    assert r.status_code == 202, r.text
    _until(lambda: c.status(sid) == "ACTIVE")
    assert c.nova("GET", f"/servers/{sid}").json()["server"]["image"] == ""
    # Another image: refused before 2.93, nothing changes.
    r = c.nova("POST", action, "2.92", json={"rebuild": {"imageRef": b}})
    assert r.status_code == 400 and "volume-backed" in r.json()["badRequest"]["message"]
    assert c.status(sid) == "ACTIVE"
    assert c.volume_doc(root)["volume_image_metadata"]["image_id"] == a
    # From 2.93 the new image is written into the root volume.
    r = c.nova("POST", action, "2.93", json={"rebuild": {"imageRef": b}})
    assert r.status_code == 202, r.text
    _until(lambda: c.status(sid) == "ACTIVE")
    vol = c.volume_doc(root)
    assert vol["volume_image_metadata"]["image_id"] == b and vol["status"] == "in-use"
    assert c.nova("GET", f"/servers/{sid}").json()["server"]["image"] == ""
    events = c.nova("GET", f"/servers/{sid}/os-instance-actions").json()["instanceActions"]
    assert [e["action"] for e in events].count("rebuild") == 2

    # Rescue: 400 before 2.87, and from 2.87 without a stable-device rescue image.
    r = c.nova("POST", action, "2.86", json={"rescue": None})
    assert r.status_code == 400 and "volume-backed" in r.json()["badRequest"]["message"]
    r = c.nova("POST", action, "2.87", json={"rescue": {"rescue_image_ref": a}})
    assert r.status_code == 400
    assert c.status(sid) == "ACTIVE"
    admin = {"X-Auth-Token": cloud.token()}
    rescue_img = c.conn.image.create_image(name="vb-rescue", disk_format="raw",
                                           container_format="bare",
                                           data=b"R" * 4096)
    for prop, value in (("hw_rescue_bus", "virtio"), ("hw_rescue_device", "disk")):
        r = httpx.patch(cloud.url("image") + f"/v2/images/{rescue_img.id}", headers={
            **admin, "Content-Type": "application/openstack-images-v2.1-json-patch"},
            json=[{"op": "add", "path": f"/{prop}", "value": value}])
        assert r.status_code == 200, r.text
    r = c.nova("POST", action, "2.87", json={"rescue": {"rescue_image_ref": rescue_img.id}})
    assert r.status_code == 200, r.text
    _until(lambda: c.status(sid) == "RESCUE")
    assert c.nova("POST", action, "2.87", json={"unrescue": None}).status_code == 202
    _until(lambda: c.status(sid) == "ACTIVE")

    # Resize to a zero-disk flavor: allowed for a volume-backed server (the root disk is
    # the volume), refused for an image-backed one.
    h = {"X-Auth-Token": cloud.token()}
    zero = httpx.post(cloud.url("compute") + "/v2.1/flavors", headers=h, json={"flavor": {
        "name": f"zero-{sid[:6]}", "ram": 256, "vcpus": 1, "disk": 0}}).json()["flavor"]
    r = c.nova("POST", action, json={"resize": {"flavorRef": zero["id"]}})
    assert r.status_code == 202, r.text
    _until(lambda: c.status(sid) == "VERIFY_RESIZE")
    assert c.nova("POST", action, json={"confirmResize": None}).status_code == 204
    _until(lambda: c.status(sid) == "ACTIVE")
    # Booting an image-backed server on a zero-disk flavor: admin only (403 for a member).
    r = c.nova("POST", "/servers", "2.67", json={"server": {
        "name": "zero-img", "flavorRef": zero["id"], "imageRef": a, "networks": "none"}})
    assert r.status_code == 403, r.text
    assert "zero disk" in r.json()["forbidden"]["message"]
    assert not c.nova("GET", "/servers", params={"name": "zero-img"}).json()["servers"]

    assert c.nova("DELETE", f"/servers/{sid}").status_code == 204
    _until(lambda: c.nova("GET", f"/servers/{sid}").status_code == 404)
    _until(lambda: c.cinder("GET", f"/volumes/{root}").status_code == 404)
    c.conn.image.delete_image(rescue_img)
    httpx.delete(cloud.url("compute") + f"/v2.1/flavors/{zero['id']}", headers=h)


def test_cinder_reimage(cloud: RunningCloud, images: list[str]) -> None:
    a, b = images
    c = Client(cloud)
    r = c.cinder("POST", "/volumes", json={"volume": {"size": 1, "imageRef": a}})
    vid = r.json()["volume"]["id"]
    _until(lambda: c.volume_doc(vid)["status"] == "available")
    act = f"/volumes/{vid}/action"
    # Not before 3.68; bad bodies: 400; nothing changes.
    assert c.cinder("POST", act, "3.67", json={"os-reimage": {"image_id": b}}
                    ).status_code == 404
    for bad in ({"image_id": "nope"}, {"image_id": b, "extra": 1}, [],
                {"image_id": b, "reimage_reserved": "maybe"}):
        r = c.cinder("POST", act, "3.68", json={"os-reimage": bad})
        assert r.status_code == 400, (bad, r.text)
    assert c.cinder("POST", act, "3.68", json={"os-reimage": {
        "image_id": "00000000-0000-4000-8000-000000000000"}}).status_code == 404
    assert c.volume_doc(vid)["volume_image_metadata"]["image_id"] == a
    # A reader of the project cannot.
    h = {"X-Auth-Token": cloud.token()}
    base = cloud.auth_url
    uid = httpx.post(base + "/users", headers=h, json={"user": {
        "name": f"vb-reader-{vid[:8]}", "password": "pw-reader"}}).json()["user"]["id"]
    rid = httpx.get(base + "/roles", headers=h, params={"name": "reader"}).json()["roles"][0][
        "id"]
    httpx.put(f"{base}/projects/{c.project}/users/{uid}/roles/{rid}", headers=h)
    reader = cloud.token(f"vb-reader-{vid[:8]}", "pw-reader", None)
    scoped = httpx.post(cloud.auth_url + "/auth/tokens", json={"auth": {"identity": {
        "methods": ["token"], "token": {"id": reader}}, "scope": {"project": {
            "id": c.project}}}}).headers["X-Subject-Token"]
    r = httpx.post(c.volume + act, headers={"X-Auth-Token": scoped,
                                            "OpenStack-API-Version": "volume 3.68"},
                   json={"os-reimage": {"image_id": b}})
    assert r.status_code == 403, r.text
    # The member re-images: downloading, then available with the new image's metadata.
    r = c.cinder("POST", act, "3.68", json={"os-reimage": {"image_id": b}})
    assert r.status_code == 202, r.text
    _until(lambda: c.volume_doc(vid)["volume_image_metadata"]["image_id"] == b)
    _until(lambda: c.volume_doc(vid)["status"] == "available")
    # Another project does not see the volume.
    other = Client(cloud)
    r = httpx.post(cloud.url("volume") + f"/v3/{other.project}/volumes/{vid}/action",
                   headers={"X-Auth-Token": other.token,
                            "OpenStack-API-Version": "volume 3.68"},
                   json={"os-reimage": {"image_id": a}})
    assert r.status_code == 404
    # An in-use volume is not re-imaged through Cinder (400).
    sid = c.nova("POST", "/servers", "2.67", json={"server": {
        "name": "ri", "flavorRef": c.conn.compute.find_flavor("m1.tiny").id,
        "imageRef": a, "networks": "none"}}).json()["server"]["id"]
    _until(lambda: c.status(sid) == "ACTIVE")
    assert c.nova("POST", f"/servers/{sid}/os-volume_attachments", json={
        "volumeAttachment": {"volumeId": vid}}).status_code == 200
    r = c.cinder("POST", act, "3.68", json={"os-reimage": {"image_id": a}})
    assert r.status_code == 400 and "in-use" in r.text
    assert c.nova("DELETE", f"/servers/{sid}").status_code == 204
    _until(lambda: c.volume_doc(vid)["status"] == "available")
    assert c.cinder("DELETE", f"/volumes/{vid}").status_code == 202


def test_catalog_has_block_storage_and_volumev3(cloud: RunningCloud) -> None:
    r = httpx.get(cloud.auth_url + "/auth/catalog",
                  headers={"X-Auth-Token": cloud.token()})
    types = {e["type"]: e for e in r.json()["catalog"]}
    assert "block-storage" in types and "volumev3" in types
    urls = {ep["url"] for t in ("block-storage", "volumev3") for ep in types[t]["endpoints"]
            if ep["interface"] == "public"}
    assert len(urls) == 1 and next(iter(urls)).startswith(cloud.url("volume") + "/v3/")


def test_swap_checks(cloud: RunningCloud, images: list[str]) -> None:
    """A swap (``PUT os-volume_attachments/{id}`` with another volume) is for the service
    role (what Cinder's volume migration uses) and admins: 403 for a member; unknown
    volumes are 404; the swap itself is refused with 409 (not done by this cloud)."""
    a, _ = images
    c = Client(cloud)
    sid = c.nova("POST", "/servers", "2.67", json={"server": {
        "name": "sw", "flavorRef": c.conn.compute.find_flavor("m1.tiny").id,
        "imageRef": a, "networks": "none"}}).json()["server"]["id"]
    _until(lambda: c.status(sid) == "ACTIVE")
    vols = []
    for _ in range(2):
        vid = c.cinder("POST", "/volumes", json={"volume": {"size": 1}}).json()["volume"]["id"]
        _until(lambda vid=vid: c.volume_doc(vid)["status"] == "available")
        vols.append(vid)
    old, new = vols
    assert c.nova("POST", f"/servers/{sid}/os-volume_attachments", json={
        "volumeAttachment": {"volumeId": old}}).status_code == 200
    path = f"/servers/{sid}/os-volume_attachments"
    body = {"volumeAttachment": {"volumeId": new}}
    assert c.nova("PUT", f"{path}/{old}", json=body).status_code == 403
    admin = httpx.put(cloud.url("compute") + f"/v2.1{path}/{old}", json=body,
                      headers={"X-Auth-Token": cloud.token()})
    assert admin.status_code == 409
    # A user with the service role in the project.
    h = {"X-Auth-Token": cloud.token()}
    base = cloud.auth_url
    uid = httpx.post(base + "/users", headers=h, json={"user": {
        "name": f"svc-{sid[:8]}", "password": "pw-svc"}}).json()["user"]["id"]
    rid = httpx.get(base + "/roles", headers=h, params={"name": "service"}).json()["roles"][0][
        "id"]
    httpx.put(f"{base}/projects/{c.project}/users/{uid}/roles/{rid}", headers=h)
    svc = httpx.post(base + "/auth/tokens", json={"auth": {"identity": {
        "methods": ["password"], "password": {"user": {"id": uid, "password": "pw-svc"}}},
        "scope": {"project": {"id": c.project}}}}).headers["X-Subject-Token"]
    url = cloud.url("compute") + f"/v2.1{path}"
    sh = {"X-Auth-Token": svc}
    missing = "00000000-0000-4000-8000-000000000000"
    assert httpx.put(f"{url}/{missing}", json=body, headers=sh).status_code == 404
    assert httpx.put(f"{url}/{old}", headers=sh, json={
        "volumeAttachment": {"volumeId": missing}}).status_code == 404
    assert httpx.put(f"{url}/{new}", headers=sh, json={
        "volumeAttachment": {"volumeId": old}}).status_code == 404  # new is not attached
    r = httpx.put(f"{url}/{old}", json=body, headers=sh)
    assert r.status_code == 409, r.text
    assert c.volume_doc(old)["status"] == "in-use" and c.volume_doc(new)["status"] == (
        "available")
    assert c.nova("DELETE", f"/servers/{sid}").status_code == 204
    _until(lambda: c.volume_doc(old)["status"] == "available")
    for vid in vols:
        assert c.cinder("DELETE", f"/volumes/{vid}").status_code == 202


def test_shelve_keeps_the_guest_in_a_snapshot_or_in_its_volumes(
        cloud: RunningCloud, images: list[str]) -> None:
    """Shelve (offloaded) of an image-backed server takes a snapshot image the unshelve
    boots from and then deletes; a volume-backed server is shelved without an image."""
    a, _ = images
    c = Client(cloud)
    flavor = c.conn.compute.find_flavor("m1.tiny").id
    sid = c.nova("POST", "/servers", "2.67", json={"server": {
        "name": "sh", "flavorRef": flavor, "imageRef": a, "networks": "none"}}).json()[
        "server"]["id"]
    _until(lambda: c.status(sid) == "ACTIVE")
    bfv, _root = _boot_from_volume(c, a, "sh-bfv")

    def shelved_images() -> list[str]:
        return [i.name for i in c.conn.image.images() if i.name.endswith("-shelved")]

    for server in (sid, bfv):
        assert c.nova("POST", f"/servers/{server}/action", json={"shelve": None}
                      ).status_code == 202
        _until(lambda server=server: c.status(server) == "SHELVED_OFFLOADED")
    assert shelved_images() == ["sh-shelved"]  # none for the volume-backed server
    for server in (sid, bfv):
        assert c.nova("POST", f"/servers/{server}/action", json={"unshelve": None}
                      ).status_code == 202
        _until(lambda server=server: c.status(server) == "ACTIVE")
    _until(lambda: not shelved_images())
    for server in (sid, bfv):
        assert c.nova("DELETE", f"/servers/{server}").status_code == 204


def test_volume_from_a_volume_backed_server_snapshot(
        cloud: RunningCloud, images: list[str]) -> None:
    """Cinder 3.46: a volume from Nova's snapshot of a volume-backed server (an image
    without data) is a copy of the boot volume's snapshot; before 3.46 Cinder copies the
    image's data, which is no disk: the volume ends in error."""
    a, _ = images
    c = Client(cloud)
    sid, _root = _boot_from_volume(c, a, "vbs")
    r = c.nova("POST", f"/servers/{sid}/action", "2.45", json={"createImage": {
        "name": "vbs-snap"}})
    assert r.status_code == 202, r.text
    image_id = r.json()["image_id"]
    _until(lambda: c.conn.image.get_image(image_id).status == "active")
    r = c.cinder("POST", "/volumes", "3.45", json={"volume": {"imageRef": image_id,
                                                               "size": 1}})
    assert r.status_code == 202, r.text
    old = r.json()["volume"]["id"]
    _until(lambda: c.volume_doc(old)["status"] != "creating")
    assert c.volume_doc(old)["status"] == "error"
    r = c.cinder("POST", "/volumes", "3.46", json={"volume": {"imageRef": image_id}})
    assert r.status_code == 202, r.text
    vid = r.json()["volume"]["id"]
    _until(lambda: c.volume_doc(vid)["status"] == "available")
    vol = c.volume_doc(vid)
    assert vol["snapshot_id"] and vol["bootable"] == "true"
    assert vol["volume_image_metadata"]["image_id"] == a
    assert c.nova("DELETE", f"/servers/{sid}").status_code == 204
    for v in (old, vid):
        assert c.cinder("DELETE", f"/volumes/{v}").status_code == 202
