"""Fetching image data from allowed URLs: web-download, glance-download, locations, cache.

A loopback HTTP server stands for "the web"; the cloud may read ``/ok/`` on it (and its own
image endpoint, for glance-download) and nothing else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from onestack.bootstrap import SERVICES as SERVED
from tests import image_samples
from tests.conftest import RunningCloud, free_port, start_cloud

DATA = os.urandom(300_000)
MD5 = hashlib.md5(DATA, usedforsecurity=False).hexdigest()
SHA256 = hashlib.sha256(DATA).hexdigest()
SHA512 = hashlib.sha512(DATA).hexdigest()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    """``http://127.0.0.1:PORT``: ``/ok/img.raw`` (allowed) and ``/no/img.raw`` (not);
    ``/ok/disguised.iso`` is a qcow2 naming a backing file."""
    root = Path(tempfile.mkdtemp(prefix="onestack-web-"))
    for sub in ("ok", "no"):
        (root / sub).mkdir()
        (root / sub / "img.raw").write_bytes(DATA)
    (root / "ok" / "disguised.iso").write_bytes(image_samples.qcow2(backing="/etc/shadow"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def fetching(web: str) -> Iterator[tuple[RunningCloud, httpx.Client]]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-fetch-"))
    ports = {name: free_port() for name in SERVED}
    allow = f"{web}/ok/,http://127.0.0.1:{ports['image']}/"
    c = start_cloud(tmp / "data", ports=ports, env={
        "ONESTACK_IMAGE_URL_ALLOW": allow, "ONESTACK_IMAGE_LOCATIONS": "true"})
    client = httpx.Client(base_url=c.url("image"), headers={
        "X-Auth-Token": c.token(), "Accept": "application/json"}, timeout=30)
    try:
        yield c, client
    finally:
        client.close()
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _new(client: httpx.Client, **extra: Any) -> str:
    r = client.post("/v2/images", json={"name": "fetch", "disk_format": "raw",
                                        "container_format": "bare", **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _wait(client: httpx.Client, image_id: str, check: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = client.get(f"/v2/images/{image_id}").json()
        if check(doc):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"image {image_id} never got there: {doc}")


def _tasks(client: httpx.Client, image_id: str, status: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    tasks: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and all(t["status"] == status for t in tasks):
            return tasks
        time.sleep(0.1)
    raise AssertionError(f"tasks of {image_id} never reached {status}: {tasks}")


def _patch(client: httpx.Client, image_id: str, ops: list[dict[str, Any]]) -> httpx.Response:
    return client.patch(f"/v2/images/{image_id}", json=ops, headers={
        "Content-Type": "application/openstack-images-v2.1-json-patch"})


def test_fetching_is_off_by_default(cloud: RunningCloud, web: str) -> None:
    client = httpx.Client(base_url=cloud.url("image"), headers={
        "X-Auth-Token": cloud.token(), "Accept": "application/json"}, timeout=30)
    with client:
        methods = client.get("/v2/info/import").json()["import-methods"]["value"]
        assert "web-download" not in methods and "glance-download" not in methods
        image_id = _new(client)
        try:
            r = client.post(f"/v2/images/{image_id}/import", json={
                "method": {"name": "web-download", "uri": f"{web}/ok/img.raw"}})
            assert r.status_code == 400 and "image_url_allow" in r.json()["message"]
            r = client.post(f"/v2/images/{image_id}/locations",
                            json={"url": f"{web}/ok/img.raw"})
            assert r.status_code == 400 and "does not pass filtering" in r.json()["message"]
            assert "locations" not in client.get(f"/v2/images/{image_id}").json()
            r = _patch(client, image_id, [{"op": "add", "path": "/locations/-", "value": {
                "url": f"{web}/ok/img.raw", "metadata": {}}}])
            assert r.status_code == 403
            assert client.get(f"/v2/images/{image_id}").json()["status"] == "queued"
        finally:
            client.delete(f"/v2/images/{image_id}")


def test_web_download(fetching: Any, web: str) -> None:
    _, client = fetching
    methods = client.get("/v2/info/import").json()["import-methods"]["value"]
    assert {"web-download", "glance-download"} <= set(methods)
    stores = client.get("/v2/info/stores").json()["stores"]
    assert {"id": "web", "description": stores[-1]["description"], "read-only": "true"} in \
        stores
    image_id = _new(client)
    for bad in (f"{web}/no/img.raw", "file:///etc/passwd", "gopher://127.0.0.1/x",
                f"http://user@{web[7:]}/ok/img.raw", "http://169.254.169.254/latest"):
        r = client.post(f"/v2/images/{image_id}/import", json={
            "method": {"name": "web-download", "uri": bad}})
        assert r.status_code == 400, (bad, r.text)
        message = r.json()["message"]
        assert "does not pass filtering" in message or "only http and https" in message
    assert client.get(f"/v2/images/{image_id}").json()["status"] == "queued"
    r = client.post(f"/v2/images/{image_id}/import", json={
        "method": {"name": "web-download", "uri": f"{web}/ok/img.raw"}})
    assert r.status_code == 202, r.text
    doc = _wait(client, image_id, lambda d: d["status"] == "active")
    assert (doc["checksum"], doc["os_hash_value"], doc["size"]) == (MD5, SHA512, len(DATA))
    assert client.get(f"/v2/images/{image_id}/file").content == DATA
    client.delete(f"/v2/images/{image_id}")
    # A URL that is allowed but answers 404: the task fails, the image goes back to queued.
    image_id = _new(client)
    r = client.post(f"/v2/images/{image_id}/import", json={
        "method": {"name": "web-download", "uri": f"{web}/ok/missing.raw"}})
    assert r.status_code == 202
    _tasks(client, image_id, "failure")
    doc = _wait(client, image_id, lambda d: d["status"] == "queued")
    assert doc["os_glance_failed_import"]
    client.delete(f"/v2/images/{image_id}")


def test_web_download_is_inspected(fetching: Any, web: str) -> None:
    """Downloaded data is checked against the disk_format as uploads are (Glance)."""
    cloud, client = fetching
    image_id = _new(client, disk_format="iso")
    r = client.post(f"/v2/images/{image_id}/import", json={
        "method": {"name": "web-download", "uri": f"{web}/ok/disguised.iso"}})
    assert r.status_code == 202, r.text
    task = _tasks(client, image_id, "failure")[-1]
    assert "Image disk_format iso does not match stream data qcow2" in task["message"]
    doc = _wait(client, image_id, lambda d: d["status"] == "queued")
    assert doc["size"] is None and doc["checksum"] is None
    staged = Path(cloud.data_dir) / "images"
    assert not [p for p in staged.rglob(f"*{image_id}*") if p.is_file()]
    client.delete(f"/v2/images/{image_id}")


def test_glance_download(fetching: Any) -> None:
    _, client = fetching
    src = _new(client, hw_cpu_cores="4", os_distro="debian", speed="fast")
    assert client.put(f"/v2/images/{src}/file", content=DATA, headers={
        "Content-Type": "application/octet-stream"}).status_code == 204
    dst = _new(client, disk_format="iso", container_format="ovf")
    try:
        r = client.post(f"/v2/images/{dst}/import", json={"method": {
            "name": "glance-download", "glance_image_id": "nope",
            "glance_region": "RegionOne"}})
        assert r.status_code == 400 and "does not look like a UUID" in r.json()["message"]
        r = client.post(f"/v2/images/{dst}/import", json={"method": {
            "name": "glance-download", "glance_image_id": src, "glance_region": "Nowhere"}})
        assert r.status_code == 202
        _tasks(client, dst, "failure")
        _wait(client, dst, lambda d: d["status"] == "queued")
        r = client.post(f"/v2/images/{dst}/import", json={"method": {
            "name": "glance-download", "glance_image_id": src, "glance_region": "RegionOne",
            "glance_service_interface": "public"}})
        assert r.status_code == 202, r.text
        doc = _wait(client, dst, lambda d: d["status"] == "active")
        assert (doc["checksum"], doc["disk_format"], doc["container_format"]) == (
            MD5, "raw", "bare")
        assert doc["hw_cpu_cores"] == "4" and doc["os_distro"] == "debian"
        assert "speed" not in doc
    finally:
        client.delete(f"/v2/images/{dst}")
        client.delete(f"/v2/images/{src}")


def test_patch_locations(fetching: Any, web: str) -> None:
    cloud, client = fetching
    url = f"{web}/ok/img.raw"
    image_id = _new(client)
    try:
        assert client.get(f"/v2/images/{image_id}").json()["locations"] == []
        for bad, code in ((f"{web}/no/img.raw", 400), ("file:///etc/passwd", 400),
                          (f"{web}/ok/missing.raw", 400)):
            r = _patch(client, image_id, [{"op": "add", "path": "/locations/-",
                                           "value": {"url": bad, "metadata": {}}}])
            assert r.status_code == code, (bad, r.text)
        r = _patch(client, image_id, [{"op": "add", "path": "/locations/-", "value": {
            "url": url, "metadata": {"a": "1"},
            "validation_data": {"checksum": MD5, "os_hash_algo": "sha512",
                                "os_hash_value": SHA512}}}])
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["status"] == "active" and doc["size"] == len(DATA)
        assert doc["locations"] == [{"url": url, "metadata": {"a": "1"}}]
        assert (doc["checksum"], doc["os_hash_value"], doc["stores"]) == (MD5, SHA512, "web")
        assert client.get(f"/v2/images/{image_id}/file").content == DATA
        r = client.get(f"/v2/images/{image_id}/file", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == DATA[10:20]
        # A second location whose validation data disagree: 409, nothing changes.
        r = _patch(client, image_id, [{"op": "add", "path": "/locations/-", "value": {
            "url": url + "#2", "metadata": {}, "validation_data": {"checksum": "0" * 32}}}])
        assert r.status_code == 409
        r = _patch(client, image_id, [{"op": "add", "path": "/locations/-", "value": {
            "url": url + "#2", "metadata": {}}}])
        assert r.status_code == 200 and len(r.json()["locations"]) == 2
        locs = r.json()["locations"]
        # Replace: metadata may change, the set of URLs may not.
        locs[1]["metadata"] = {"b": "2"}
        r = _patch(client, image_id, [{"op": "replace", "path": "/locations", "value": locs}])
        assert r.status_code == 200 and r.json()["locations"] == locs
        for bad in (locs[:1], [*locs[:1], "x"], "x", [{"url": url}, {"url": url + "#9"}]):
            r = _patch(client, image_id, [{"op": "replace", "path": "/locations",
                                           "value": bad}])
            assert r.status_code == 400, bad
        for path in ("/locations/-1", "/locations/7", "/locations/x", "/locations"):
            r = _patch(client, image_id, [{"op": "remove", "path": path}])
            assert r.status_code == 400, path
        # Remove: admins only, never the last one.
        user, password, project = cloud.make_member("loc")
        member = httpx.Client(base_url=cloud.url("image"), timeout=30, headers={
            "X-Auth-Token": cloud.token(user, password, project),
            "Accept": "application/json"})
        with member:
            mine = _new(member)
            r = _patch(member, mine, [{"op": "add", "path": "/locations/-", "value": {
                "url": url, "metadata": {}}}])
            assert r.status_code == 200
            r = _patch(member, mine, [{"op": "add", "path": "/locations/-", "value": {
                "url": url + "#b", "metadata": {}}}])
            assert r.status_code == 200
            r = _patch(member, mine, [{"op": "remove", "path": "/locations/0"}])
            assert r.status_code == 403
            assert member.delete(f"/v2/images/{mine}").status_code == 204
        r = _patch(client, image_id, [{"op": "remove", "path": "/locations/0"}])
        assert r.status_code == 200 and [x["url"] for x in r.json()["locations"]] == [
            url + "#2"]
        r = _patch(client, image_id, [{"op": "remove", "path": "/locations/0"}])
        assert r.status_code == 403
    finally:
        client.delete(f"/v2/images/{image_id}")


def test_uploaded_image_shows_its_file_location(fetching: Any) -> None:
    _, client = fetching
    image_id = _new(client)
    try:
        assert client.put(f"/v2/images/{image_id}/file", content=DATA, headers={
            "Content-Type": "application/octet-stream"}).status_code == 204
        locs = client.get(f"/v2/images/{image_id}").json()["locations"]
        assert len(locs) == 1 and locs[0]["url"].startswith("file://")
        assert locs[0]["metadata"] == {"store": "file"}
    finally:
        client.delete(f"/v2/images/{image_id}")


def test_add_location_api(fetching: Any, web: str) -> None:
    _, client = fetching
    url = f"{web}/ok/img.raw"
    image_id = _new(client)
    bad_data = [
        {"os_hash_algo": "sha512", "os_hash_value": "abc"},
        {"os_hash_value": SHA512},
        {"os_hash_algo": "sha123", "os_hash_value": SHA512},
        {"os_hash_algo": "sha512", "os_hash_value": SHA256},
        {"checksum": "xyz"},
        {"bogus": "1"},
    ]
    try:
        for vd in bad_data:
            r = client.post(f"/v2/images/{image_id}/locations",
                            json={"url": url, "validation_data": vd})
            assert r.status_code == 400, (vd, r.text)
        r = client.post(f"/v2/images/{image_id}/locations",
                        json={"url": f"{web}/no/img.raw"})
        assert r.status_code == 400 and "does not pass filtering" in r.json()["message"]
        r = client.post(f"/v2/images/{image_id}/locations", json={
            "url": url, "validation_data": {"os_hash_algo": "sha256", "os_hash_value": SHA256}})
        assert r.status_code == 202, r.text
        _tasks(client, image_id, "success")
        doc = client.get(f"/v2/images/{image_id}").json()
        assert (doc["status"], doc["os_hash_algo"], doc["os_hash_value"], doc["checksum"]) == (
            "active", "sha256", SHA256, MD5)
        r = client.post(f"/v2/images/{image_id}/locations", json={"url": url + "#x"})
        assert r.status_code == 409
    finally:
        client.delete(f"/v2/images/{image_id}")
    # Wrong hash: the task fails and the image goes back to queued, without checksums.
    image_id = _new(client)
    try:
        r = client.post(f"/v2/images/{image_id}/locations", json={
            "url": url, "validation_data": {"os_hash_algo": "sha512",
                                            "os_hash_value": "ab" * 64}})
        assert r.status_code == 202
        _tasks(client, image_id, "failure")
        doc = client.get(f"/v2/images/{image_id}").json()
        assert (doc["status"], doc["checksum"], doc["os_hash_value"]) == ("queued", None, None)
    finally:
        client.delete(f"/v2/images/{image_id}")


def test_image_cache(fetching: Any, web: str) -> None:
    cloud, client = fetching
    image_id = _new(client)
    try:
        user, password, project = cloud.make_member("cache")
        r = httpx.get(cloud.url("image") + "/v2/cache", headers={
            "X-Auth-Token": cloud.token(user, password, project)})
        assert r.status_code == 403
        assert client.put("/v2/cache/no-such-image").status_code == 404
        assert client.put(f"/v2/cache/{image_id}").status_code == 400  # queued
        r = _patch(client, image_id, [{"op": "add", "path": "/locations/-", "value": {
            "url": f"{web}/ok/img.raw", "metadata": {}}}])
        assert r.status_code == 200
        assert client.put(f"/v2/cache/{image_id}").status_code == 202
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cached = client.get("/v2/cache").json()["cached_images"]
            if any(c["image_id"] == image_id for c in cached):
                break
            time.sleep(0.1)
        entry = next(c for c in cached if c["image_id"] == image_id)
        assert entry["size"] == len(DATA) and entry["hits"] == 0
        assert (Path(cloud.data_dir) / "images" / "cache" / image_id).is_file()
        assert client.get(f"/v2/images/{image_id}/file").content == DATA
        entry = next(c for c in client.get("/v2/cache").json()["cached_images"]
                     if c["image_id"] == image_id)
        assert entry["hits"] == 1
        r = client.delete("/v2/cache", headers={"x-image-cache-clear-target": "bogus"})
        assert r.status_code == 400
        assert client.delete("/v2/cache").status_code == 204
        assert client.get("/v2/cache").json() == {"cached_images": [], "queued_images": []}
        assert not (Path(cloud.data_dir) / "images" / "cache" / image_id).exists()
    finally:
        client.delete(f"/v2/images/{image_id}")
