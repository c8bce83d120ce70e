"""Several local image stores: info, upload to a store, import to stores, copy, delete one."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import start_cloud

STORES = "fast:200,file:100,slow:50"


@pytest.fixture(scope="module")
def multi() -> Iterator[tuple[Any, httpx.Client]]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-stores-"))
    c = start_cloud(tmp / "data", env={"ONESTACK_IMAGE_STORES": STORES})
    client = httpx.Client(base_url=c.url("image"), headers={
        "X-Auth-Token": c.token(), "Accept": "application/json"}, timeout=30)
    try:
        yield c, client
    finally:
        client.close()
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait(client: httpx.Client, image_id: str, check: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        doc = client.get(f"/v2/images/{image_id}").json()
        if check(doc):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"image {image_id} never got there: {doc}")


def _new(client: httpx.Client) -> str:
    r = client.post("/v2/images", json={"name": "ms", "disk_format": "raw",
                                        "container_format": "bare"})
    assert r.status_code == 201
    assert "copy-image" in r.headers["OpenStack-image-import-methods"]
    return str(r.json()["id"])


def _put(client: httpx.Client, image_id: str, data: bytes, what: str = "file",
         **headers: str) -> httpx.Response:
    return client.put(f"/v2/images/{image_id}/{what}", content=data, headers={
        "Content-Type": "application/octet-stream", **headers})


def test_info_and_methods(multi: Any) -> None:
    _, client = multi
    stores = client.get("/v2/info/stores").json()["stores"]
    assert [s["id"] for s in stores] == ["fast", "file", "slow"]
    assert [s["weight"] for s in stores] == [200, 100, 50]
    assert [s["id"] for s in stores if s.get("default")] == ["fast"]
    methods = client.get("/v2/info/import").json()["import-methods"]["value"]
    assert methods == ["glance-direct", "copy-image"]


def test_upload_to_named_store_and_copy_delete(multi: Any) -> None:
    cloud, client = multi
    data = os.urandom(200_000)
    image_id = _new(client)
    assert _put(client, image_id, data, **{"X-Image-Meta-Store": "nope"}).status_code == 400
    r = _put(client, image_id, data, **{"X-Image-Meta-Store": "slow"})
    assert r.status_code == 204, r.text
    assert client.get(f"/v2/images/{image_id}").json()["stores"] == "slow"
    assert (Path(cloud.data_dir) / "images-slow" / image_id).is_file()
    r = client.post(f"/v2/images/{image_id}/import", json={
        "method": {"name": "copy-image"}, "all_stores": True})
    assert r.status_code == 202, r.text
    doc = _wait(client, image_id, lambda d: d.get("os_glance_importing_to_stores") == "")
    assert doc["stores"] == "fast,file,slow" and doc["os_glance_failed_import"] == ""
    assert client.get(f"/v2/images/{image_id}/file").content == data
    # drop one copy; the last copy cannot be dropped
    assert client.delete(f"/v2/stores/fast/{image_id}").status_code == 204
    assert client.get(f"/v2/images/{image_id}").json()["stores"] == "file,slow"
    assert not (Path(cloud.data_dir) / "images-fast" / image_id).exists()
    assert client.delete(f"/v2/stores/fast/{image_id}").status_code == 404
    assert client.delete(f"/v2/stores/bogus/{image_id}").status_code == 400
    assert client.delete(f"/v2/stores/file/{image_id}").status_code == 204
    assert client.delete(f"/v2/stores/slow/{image_id}").status_code == 403
    assert client.get(f"/v2/images/{image_id}/file").content == data
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert not (Path(cloud.data_dir) / "images-slow" / image_id).exists()


def test_glance_direct_to_stores(multi: Any) -> None:
    _, client = multi
    data = os.urandom(50_000)
    image_id = _new(client)
    assert _put(client, image_id, data, "stage").status_code == 204
    r = client.post(f"/v2/images/{image_id}/import", json={
        "method": {"name": "glance-direct"}, "stores": ["slow", "file"]})
    assert r.status_code == 202, r.text
    doc = _wait(client, image_id, lambda d: d["status"] == "active" and
                d.get("os_glance_importing_to_stores") == "")
    assert doc["stores"] == "file,slow"
    assert client.get(f"/v2/images/{image_id}/file").content == data
    # All stores must succeed (the default): the image turns active only with its last store.
    third = _new(client)
    assert _put(client, third, os.urandom(48 << 20), "stage").status_code == 204
    r = client.post(f"/v2/images/{third}/import", json={
        "method": {"name": "glance-direct"}, "all_stores": True})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    while (doc := client.get(f"/v2/images/{third}").json())["status"] == "importing":
        assert time.monotonic() < deadline
    assert (doc["status"], doc["stores"]) == ("active", "fast,file,slow")
    assert client.delete(f"/v2/images/{third}").status_code == 204
    other = _new(client)
    assert _put(client, other, data, "stage").status_code == 204
    for body in ({"method": {"name": "glance-direct"}, "stores": ["nope"]},
                 {"method": {"name": "glance-direct"}, "stores": []},
                 {"method": {"name": "glance-direct"}, "stores": ["file"], "all_stores": True},
                 {"method": {"name": "glance-direct"}, "all_stores": "yes"}):
        assert client.post(f"/v2/images/{other}/import", json=body).status_code == 400
    # copy-image needs an active image
    r = client.post(f"/v2/images/{other}/import", json={"method": {"name": "copy-image"},
                                                       "all_stores": True})
    assert r.status_code == 409
