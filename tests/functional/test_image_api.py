"""Image API over HTTP: bad input, filters, pagination, tenancy, data paths."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import image_samples

PATCH = "application/openstack-images-v2.1-json-patch"


class Client:
    """A tiny Glance v2 client bound to one token."""

    def __init__(self, base: str, token: str, project_id: str = "") -> None:
        self.base = base
        self.project_id = project_id
        self.http = httpx.Client(base_url=base, headers={"X-Auth-Token": token},
                                 timeout=60)

    def create(self, **body: Any) -> dict[str, Any]:
        body.setdefault("disk_format", "raw")
        body.setdefault("container_format", "bare")
        r = self.http.post("/v2/images", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def upload(self, image_id: str, data: bytes, **headers: str) -> httpx.Response:
        return self.http.put(f"/v2/images/{image_id}/file", content=data,
                             headers={"Content-Type": "application/octet-stream", **headers})

    def show(self, image_id: str) -> httpx.Response:
        return self.http.get(f"/v2/images/{image_id}")

    def patch(self, image_id: str, ops: list[dict[str, Any]],
              ctype: str = PATCH) -> httpx.Response:
        return self.http.patch(f"/v2/images/{image_id}", json=ops,
                               headers={"Content-Type": ctype})

    def ids(self, **params: Any) -> list[str]:
        r = self.http.get("/v2/images", params=params)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["images"]]


def _project_user(cloud: Any, admin: str) -> tuple[str, str]:
    """Create a project and a member user in it; return (token, project id)."""
    h = {"X-Auth-Token": admin}
    base = cloud.auth_url
    suffix = uuid.uuid4().hex[:8]
    project = httpx.post(f"{base}/projects", headers=h, json={"project": {
        "name": f"img-p-{suffix}", "domain_id": "default"}}).json()["project"]
    user = httpx.post(f"{base}/users", headers=h, json={"user": {
        "name": f"img-u-{suffix}", "domain_id": "default", "password": "Pw-12345678"}}
    ).json()["user"]
    role = httpx.get(f"{base}/roles?name=member", headers=h).json()["roles"][0]
    r = httpx.put(f"{base}/projects/{project['id']}/users/{user['id']}/roles/{role['id']}",
                  headers=h)
    assert r.status_code == 204
    return cloud.token(user["name"], "Pw-12345678", project["name"]), project["id"]


@pytest.fixture(scope="module")
def clients(cloud: Any) -> Iterator[tuple[Client, Client, Client]]:
    """(admin, project A member, project B member)."""
    admin_token = cloud.token()
    base = cloud.url("image")
    a_token, a_pid = _project_user(cloud, admin_token)
    b_token, b_pid = _project_user(cloud, admin_token)
    yield (Client(base, admin_token), Client(base, a_token, a_pid),
           Client(base, b_token, b_pid))


def _data_dir_files(cloud: Any) -> set[str]:
    root = Path(cloud.data_dir) / "images"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- documents
def test_versions_schemas_info(cloud: Any, clients: Any) -> None:
    admin, a, _ = clients
    r = httpx.get(cloud.url("image") + "/")
    assert r.status_code == 300
    versions = r.json()["versions"]
    assert versions[0]["status"] == "CURRENT" and versions[0]["id"].startswith("v2.")
    assert httpx.get(cloud.url("image") + "/healthcheck").status_code == 200
    schema = a.http.get("/v2/schemas/image").json()
    assert schema["name"] == "image"
    assert schema["additionalProperties"] == {"type": "string"}
    assert a.http.get("/v2/schemas/images").json()["name"] == "images"
    assert a.http.get("/v2/schemas/member").json()["name"] == "member"
    assert a.http.get("/v2/schemas/members").json()["name"] == "members"
    methods = a.http.get("/v2/info/import").json()["import-methods"]["value"]
    assert methods == ["glance-direct"]
    assert a.http.get("/v2/info/stores").json()["stores"][0]["id"] == "file"


def test_images_validate_against_schema(clients: Any) -> None:
    import jsonschema

    _, a, _ = clients
    img = a.create(name="schema-check", tags=["x"], hw_x="1")
    a.upload(img["id"], b"abc")
    schema = a.http.get("/v2/schemas/image").json()
    jsonschema.validate(a.show(img["id"]).json(), schema)
    jsonschema.validate(a.http.get("/v2/images").json(),
                        a.http.get("/v2/schemas/images").json())


# ---------------------------------------------------------------- data paths
def test_upload_download_range_md5(clients: Any) -> None:
    _, a, _ = clients
    data = os.urandom(300_000)
    img = a.create(name="data")
    assert a.http.get(f"/v2/images/{img['id']}/file").status_code == 204
    r = a.upload(img["id"], data)
    assert r.status_code == 204, r.text
    shown = a.show(img["id"]).json()
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert shown["virtual_size"] == len(data)  # raw
    assert "direct_url" not in shown and "locations" not in shown
    r = a.http.get(f"/v2/images/{img['id']}/file")
    assert r.content == data and r.headers["content-md5"] == shown["checksum"]
    r = a.http.get(f"/v2/images/{img['id']}/file", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = a.http.get(f"/v2/images/{img['id']}/file", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = a.http.get(f"/v2/images/{img['id']}/file", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416


def test_big_sized_upload_and_download(clients: Any) -> None:
    """A body of several MiB with a Content-Length is read from the socket directly (also
    after ``Expect: 100-continue``), a download goes out with sendfile: same bytes, same
    digests, ranges included."""
    _, a, _ = clients
    data = os.urandom((5 << 20) + 12345)
    for expect in (False, True):
        img = a.create(name=f"big-{expect}")
        headers = {"Expect": "100-continue"} if expect else {}
        r = a.upload(img["id"], data, **headers)
        assert r.status_code == 204, r.text
        shown = a.show(img["id"]).json()
        assert shown["status"] == "active" and shown["size"] == len(data)
        assert shown["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
        assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    r = a.http.get(f"/v2/images/{img['id']}/file")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-md5"] == shown["checksum"]
    r = a.http.get(f"/v2/images/{img['id']}/file", headers={"Range": "bytes=4194000-4194999"})
    assert r.status_code == 206 and r.content == data[4194000:4195000]


def test_chunked_upload(clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="chunked")
    parts = [os.urandom(70_000) for _ in range(20)]
    r = a.http.put(f"/v2/images/{img['id']}/file", content=iter(parts),
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    assert a.http.get(f"/v2/images/{img['id']}/file").content == b"".join(parts)


def test_stage_and_import(clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="imported")
    r = a.http.put(f"/v2/images/{img['id']}/stage", content=b"x" * 5000,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    assert a.show(img["id"]).json()["status"] == "uploading"
    r = a.http.post(f"/v2/images/{img['id']}/import",
                    json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202, r.text
    for _ in range(100):
        if a.show(img["id"]).json()["status"] == "active":
            break
        time.sleep(0.05)
    shown = a.show(img["id"]).json()
    assert shown["status"] == "active" and shown["size"] == 5000
    tasks = a.http.get(f"/v2/images/{img['id']}/tasks").json()["tasks"]
    assert tasks[0]["status"] == "success"
    assert tasks[0]["request_id"] == r.headers["x-openstack-request-id"]
    # web-download needs outside network: a clear 400.
    other = a.create(name="web")
    r = a.http.post(f"/v2/images/{other['id']}/import",
                    json={"method": {"name": "web-download", "uri": "http://x/y"}})
    assert r.status_code == 400 and "web-download" in r.text
    # import without staged data
    r = a.http.post(f"/v2/images/{other['id']}/import",
                    json={"method": {"name": "glance-direct"}})
    assert r.status_code == 409


def test_deactivate_reactivate(clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="deact")
    a.upload(img["id"], b"hello")
    assert a.http.post(f"/v2/images/{img['id']}/actions/deactivate").status_code == 204
    assert a.show(img["id"]).json()["status"] == "deactivated"
    assert a.http.get(f"/v2/images/{img['id']}/file").status_code == 403
    assert a.http.post(f"/v2/images/{img['id']}/actions/reactivate").status_code == 204
    assert a.http.get(f"/v2/images/{img['id']}/file").content == b"hello"
    queued = a.create(name="deact-q")
    assert a.http.post(f"/v2/images/{queued['id']}/actions/deactivate").status_code == 403


# ---------------------------------------------------------------- bad input
def test_unknown_formats_400(clients: Any) -> None:
    _, a, _ = clients
    for body in ({"disk_format": "wrong", "container_format": "bare"},
                 {"disk_format": "raw", "container_format": "wrong"}):
        r = a.http.post("/v2/images", json=body)
        assert r.status_code == 400, r.text


def test_create_bad_bodies(clients: Any) -> None:
    _, a, _ = clients
    cases = [
        ({"name": 5}, 400), ({"min_ram": -1}, 400), ({"protected": "yes"}, 400),
        ({"visibility": "everyone"}, 400), ({"custom": 7}, 400), ({"id": "not-a-uuid"}, 400),
        ({"status": "active"}, 403), ({"os_glance_foo": "x"}, 403), ({"size": 3}, 403),
        ({"visibility": "public"}, 403), ({"owner": "someone-else"}, 403),
    ]
    for body, status in cases:
        r = a.http.post("/v2/images", json=body)
        assert r.status_code == status, (body, r.status_code, r.text)
    r = a.http.post("/v2/images", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = a.http.post("/v2/images", content=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = a.http.post("/v2/images", content=b'{"name": "' + b"x" * 70000 + b'"}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    fixed = str(uuid.uuid4())
    a.create(id=fixed)
    assert a.http.post("/v2/images", json={"id": fixed}).status_code == 409


def test_upload_to_active_409(clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="active")
    assert a.upload(img["id"], b"one").status_code == 204
    r = a.upload(img["id"], b"two")
    assert r.status_code == 409
    assert a.http.get(f"/v2/images/{img['id']}/file").content == b"one"


def test_size_and_checksum_mismatch_400(cloud: Any, clients: Any) -> None:
    _, a, _ = clients
    before = _data_dir_files(cloud)
    img = a.create(name="mismatch")
    data = b"payload" * 1000
    bad_md5 = base64.b64encode(hashlib.md5(b"other", usedforsecurity=False).digest()).decode()
    r = a.upload(img["id"], data, **{"Content-MD5": bad_md5})
    assert r.status_code == 400 and "Checksum mismatch" in r.text
    assert a.show(img["id"]).json()["status"] == "queued"
    r = a.upload(img["id"], data, **{"x-image-meta-size": str(len(data) + 1)})
    assert r.status_code == 400 and "Size mismatch" in r.text
    shown = a.show(img["id"]).json()
    assert shown["status"] == "queued" and shown["size"] is None
    assert _data_dir_files(cloud) == before
    good = hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert a.upload(img["id"], data, **{"Content-MD5": good}).status_code == 204


def test_interrupted_upload_reverts_to_queued(cloud: Any, clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="interrupted")
    before = _data_dir_files(cloud)
    host, port = cloud.url("image").removeprefix("http://").split(":")
    token = a.http.headers["X-Auth-Token"]
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall((f"PUT /v2/images/{img['id']}/file HTTP/1.1\r\nHost: {host}\r\n"
                      f"X-Auth-Token: {token}\r\nContent-Type: application/octet-stream\r\n"
                      f"Content-Length: {10 << 20}\r\n\r\n").encode())
        sock.sendall(os.urandom(1 << 20))
        time.sleep(0.3)
        assert a.show(img["id"]).json()["status"] == "saving"
    for _ in range(100):
        if a.show(img["id"]).json()["status"] == "queued":
            break
        time.sleep(0.05)
    assert a.show(img["id"]).json()["status"] == "queued"
    assert _data_dir_files(cloud) == before
    assert a.upload(img["id"], b"retry").status_code == 204


def test_patch_rules(clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="patchme", extra="1")
    iid = img["id"]
    r = a.patch(iid, [{"op": "replace", "path": "/name", "value": "renamed"},
                      {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
                      {"op": "remove", "path": "/extra"},
                      {"op": "add", "path": "/tags/-", "value": "t9"}])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "renamed" and body["hw_disk_bus"] == "virtio"
    assert "extra" not in body and body["tags"] == ["t9"]
    cases = [
        ([{"op": "move", "path": "/name", "value": "x"}], 400),
        ([{"op": "add", "path": "/name"}], 400),
        ([{"op": "add", "path": "name", "value": "x"}], 400),
        ({"op": "add"}, 400),
        ([{"op": "replace", "path": "/status", "value": "active"}], 403),
        ([{"op": "replace", "path": "/id", "value": str(uuid.uuid4())}], 403),
        ([{"op": "add", "path": "/os_glance_x", "value": "y"}], 403),
        ([{"op": "replace", "path": "/visibility", "value": "public"}], 403),
        ([{"op": "replace", "path": "/missing", "value": "y"}], 409),
        ([{"op": "remove", "path": "/missing"}], 409),
        ([{"op": "replace", "path": "/min_ram", "value": "lots"}], 400),
        ([{"op": "add", "path": "/custom", "value": 3}], 400),
    ]
    for ops, status in cases:
        r = a.patch(iid, ops)  # type: ignore[arg-type]
        assert r.status_code == status, (ops, r.status_code, r.text)
    assert a.patch(iid, [{"op": "replace", "path": "/name", "value": "x"}],
                   ctype="application/json").status_code == 415
    # Nothing of the failed patches applied.
    assert a.show(iid).json()["name"] == "renamed"
    # Community is allowed for owners; formats only change while queued.
    assert a.patch(iid, [{"op": "replace", "path": "/visibility",
                          "value": "community"}]).status_code == 200
    a.upload(iid, b"data")
    r = a.patch(iid, [{"op": "replace", "path": "/disk_format", "value": "qcow2"}])
    assert r.status_code == 403


def test_protected_delete_403(clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="prot", protected=True)
    assert a.http.delete(f"/v2/images/{img['id']}").status_code == 403
    assert a.show(img["id"]).status_code == 200
    a.patch(img["id"], [{"op": "replace", "path": "/protected", "value": False}])
    assert a.http.delete(f"/v2/images/{img['id']}").status_code == 204
    assert a.show(img["id"]).status_code == 404
    assert a.http.delete(f"/v2/images/{img['id']}").status_code == 404


def test_delete_removes_data(cloud: Any, clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="gone")
    a.upload(img["id"], b"bytes")
    assert img["id"] in _data_dir_files(cloud)
    assert a.http.delete(f"/v2/images/{img['id']}").status_code == 204
    assert img["id"] not in _data_dir_files(cloud)


def test_fault_bodies(clients: Any) -> None:
    _, a, _ = clients
    missing = str(uuid.uuid4())
    r = a.http.get(f"/v2/images/{missing}")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "404 Not Found" in r.text and missing in r.text
    r = a.http.get(f"/v2/images/{missing}", headers={"Accept": "application/json"})
    body = r.json()
    assert body["code"] == "404 Not Found" and body["title"] == "Not Found"
    assert missing in body["message"]
    assert a.http.get("/v2/images/").status_code == 404


def test_never_500_on_odd_input(clients: Any) -> None:
    _, a, _ = clients
    img = a.create(name="odd")
    probes = [
        ("GET", "/v2/images?limit=abc", None), ("GET", "/v2/images?limit=-1", None),
        ("GET", "/v2/images?marker=nope", None), ("GET", "/v2/images?sort_key=bogus", None),
        ("GET", "/v2/images?sort_dir=sideways", None),
        ("GET", "/v2/images?sort=name:asc&sort_key=name", None),
        ("GET", "/v2/images?created_at=gt:yesterday", None),
        ("GET", "/v2/images?size_min=big", None), ("GET", "/v2/images?protected=maybe", None),
        ("GET", "/v2/images?visibility=everyone", None),
        ("GET", "/v2/images?member_status=maybe", None),
        ("PUT", f"/v2/images/{img['id']}/members/x", b"[]"),
        ("POST", f"/v2/images/{img['id']}/members", b"{}"),
        ("POST", f"/v2/images/{img['id']}/import", b'{"method": 5}'),
        ("PUT", f"/v2/images/{img['id']}/tags/" + "t" * 300, None),
        ("GET", "/v2/schemas/nothing", None),
        ("PATCH", f"/v2/images/{img['id']}", b"\xff\xfe"),
        ("DELETE", "/v2/images", None),
    ]
    for method, path, body in probes:
        headers = {"Content-Type": PATCH if method == "PATCH" else "application/json"}
        r = a.http.request(method, path, content=body, headers=headers)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)


def test_quota_413(cloud: Any) -> None:
    from tests.conftest import start_cloud

    tmp = Path(cloud.data_dir).parent / f"quota-{uuid.uuid4().hex[:6]}"
    tmp.mkdir(parents=True)
    c = start_cloud(tmp / "data", env={"ONESTACK_IMAGE_QUOTA_BYTES": "1000"})
    try:
        a = Client(c.url("image"), c.token())
        img = a.create(name="q1")
        assert a.upload(img["id"], b"x" * 800).status_code == 204
        img2 = a.create(name="q2")
        r = a.upload(img2["id"], b"y" * 300)
        assert r.status_code == 413
        assert a.show(img2["id"]).json()["status"] == "queued"
        r = a.http.put(f"/v2/images/{img2['id']}/file", content=iter([b"z" * 150] * 2),
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 413
        assert a.upload(img2["id"], b"y" * 200).status_code == 204
    finally:
        c.stop()


# ---------------------------------------------------------------- tenancy
def test_tenancy_and_members(clients: Any) -> None:
    admin, a, b = clients
    private = a.create(name="a-private", visibility="private")
    shared = a.create(name="a-shared")
    assert shared["visibility"] == "shared"
    community = a.create(name="a-community", visibility="community")
    public = admin.create(name="admin-public", visibility="public")
    # B: another project's private image is a 404, everywhere.
    assert b.show(private["id"]).status_code == 404
    assert b.http.delete(f"/v2/images/{private['id']}").status_code == 404
    assert b.patch(private["id"], [{"op": "replace", "path": "/name",
                                     "value": "x"}]).status_code == 404
    assert b.upload(private["id"], b"x").status_code == 404
    ids = b.ids()
    assert public["id"] in ids
    assert private["id"] not in ids and shared["id"] not in ids
    assert community["id"] not in ids  # community only when asked for
    assert community["id"] in b.ids(visibility="community")
    assert b.show(community["id"]).status_code == 200
    # B cannot modify A's community image.
    assert b.patch(community["id"], [{"op": "replace", "path": "/name",
                                       "value": "x"}]).status_code == 403
    # Members
    assert a.http.post(f"/v2/images/{private['id']}/members",
                       json={"member": b.project_id}).status_code == 403
    r = a.http.post(f"/v2/images/{shared['id']}/members", json={"member": b.project_id})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert a.http.post(f"/v2/images/{shared['id']}/members",
                       json={"member": b.project_id}).status_code == 409
    assert shared["id"] not in b.ids()
    assert shared["id"] in b.ids(member_status="pending", visibility="shared")
    assert b.show(shared["id"]).status_code == 200
    # Only the member may accept.
    assert a.http.put(f"/v2/images/{shared['id']}/members/{b.project_id}",
                      json={"status": "accepted"}).status_code == 403
    assert b.http.put(f"/v2/images/{shared['id']}/members/{b.project_id}",
                      json={"status": "bogus"}).status_code == 400
    r = b.http.put(f"/v2/images/{shared['id']}/members/{b.project_id}",
                   json={"status": "accepted"})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert shared["id"] in b.ids()
    members = a.http.get(f"/v2/images/{shared['id']}/members").json()["members"]
    assert [m["member_id"] for m in members] == [b.project_id]
    assert b.http.get(f"/v2/images/{shared['id']}/members/{b.project_id}").status_code == 200
    # B may not delete A's image even when shared.
    assert b.http.delete(f"/v2/images/{shared['id']}").status_code == 403
    r = b.http.put(f"/v2/images/{shared['id']}/members/{b.project_id}",
                   json={"status": "rejected"})
    assert shared["id"] not in b.ids()
    assert a.http.delete(f"/v2/images/{shared['id']}/members/{b.project_id}").status_code == 204
    assert b.show(shared["id"]).status_code == 404
    # Admin sees everything.
    all_ids = admin.ids(limit=1000)
    assert private["id"] in all_ids
    assert admin.show(private["id"]).status_code == 200


# ---------------------------------------------------------------- filters / pagination
@pytest.fixture(scope="module")
def listing(clients: Any) -> tuple[Client, list[dict[str, Any]]]:
    _, a, _ = clients
    tag = "lst-" + uuid.uuid4().hex[:6]
    made = []
    for i in range(7):
        img = a.create(name=f"{tag}-{i}", tags=[tag] + (["odd"] if i % 2 else []),
                       disk_format="qcow2" if i % 3 == 0 else "raw",
                       min_ram=i, colour="red" if i < 3 else "blue")
        size = 100 * (i + 1)
        a.upload(img["id"], image_samples.qcow2(length=size) if i % 3 == 0 else b"z" * size)
        made.append(a.show(img["id"]).json())
        time.sleep(0.01)
    return a, made


def test_filters(listing: Any) -> None:
    a, made = listing
    tag = made[0]["tags"][0]
    ids = {m["id"] for m in made}
    assert set(a.ids(tag=tag)) == ids
    assert set(a.ids(tag=[tag, "odd"])) == {m["id"] for m in made[1::2]}
    assert set(a.ids(tag=tag, disk_format="qcow2")) == {made[0]["id"], made[3]["id"],
                                                         made[6]["id"]}
    assert set(a.ids(tag=tag, size_min=300, size_max=500)) == {m["id"] for m in made[2:5]}
    assert set(a.ids(name=made[1]["name"])) == {made[1]["id"]}
    assert set(a.ids(name=f"in:{made[1]['name']},{made[2]['name']}")) == {
        made[1]["id"], made[2]["id"]}
    assert a.ids(id="in:") == [] and a.ids(owner="in:") == []  # was a 500
    assert set(a.ids(tag=tag, colour="red")) == {m["id"] for m in made[:3]}
    assert set(a.ids(tag=tag, status="active", container_format="bare",
                     owner=a.project_id)) == ids
    assert set(a.ids(tag=tag, protected="false")) == ids
    assert a.ids(tag=tag, protected="true") == []
    cut = made[3]["created_at"]
    later = set(a.ids(tag=tag, created_at=f"gte:{cut}"))
    assert made[6]["id"] in later and made[0]["id"] not in later or made[0]["created_at"] == cut
    assert set(a.ids(tag=tag, updated_at="lt:2000-01-01T00:00:00Z")) == set()
    assert set(a.ids(tag=tag, created_at="gt:2000-01-01T00:00:00Z")) == ids
    hidden = a.create(name="hidden", os_hidden=True)
    assert hidden["id"] not in a.ids()
    assert hidden["id"] in a.ids(os_hidden="true")


def test_sorting(listing: Any) -> None:
    a, made = listing
    tag = made[0]["tags"][0]
    by_size = [m["id"] for m in sorted(made, key=lambda m: m["size"], reverse=True)]
    assert a.ids(tag=tag, sort="size:desc") == by_size
    assert a.ids(tag=tag, sort_key="size", sort_dir="desc") == by_size
    assert a.ids(tag=tag, sort="size:asc") == by_size[::-1]
    by_name = [m["id"] for m in sorted(made, key=lambda m: m["name"])]
    assert a.ids(tag=tag, sort="name:asc,created_at") == by_name


def test_pagination(listing: Any) -> None:
    a, made = listing
    tag = made[0]["tags"][0]
    expected = [m["id"] for m in sorted(made, key=lambda m: m["name"])]
    seen: list[str] = []
    url = f"/v2/images?tag={tag}&limit=3&sort_key=name&sort_dir=asc"
    pages = 0
    while url:
        body = a.http.get(url).json()
        assert body["schema"] == "/v2/schemas/images" and body["first"].startswith("/v2/images")
        seen += [i["id"] for i in body["images"]]
        url = body.get("next")
        if url:
            assert "marker=" in url and "limit=3" in url
        pages += 1
    assert seen == expected and pages == 3
    assert len(a.ids(tag=tag, limit=0)) == 0
