"""Uploaded and imported image data is checked against its disk_format as Glance does
(415, the image back to ``queued``, nothing stored). Web-download: test_image_locations."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import image_samples as img
from tests.conftest import RunningCloud

MiB = 1 << 20


@pytest.fixture(scope="module")
def client(cloud: RunningCloud) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cloud.url("image"), timeout=60, headers={
            "X-Auth-Token": cloud.token(), "Accept": "application/json"}) as c:
        yield c


def _stored(cloud: RunningCloud) -> set[str]:
    root = Path(cloud.data_dir) / "images"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _new(client: httpx.Client, disk_format: str, container_format: str = "bare") -> str:
    r = client.post("/v2/images", json={"name": f"fmt-{disk_format}",
                                        "disk_format": disk_format,
                                        "container_format": container_format})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _put(client: httpx.Client, image_id: str, data: bytes, what: str = "file"
         ) -> httpx.Response:
    return client.put(f"/v2/images/{image_id}/{what}", content=data,
                      headers={"Content-Type": "application/octet-stream"})


@pytest.mark.parametrize(("disk_format", "data", "message"), [
    ("iso", img.qcow2(), "Image disk_format iso does not match stream data qcow2"),
    ("iso", img.vmdk(), "Image disk_format iso does not match stream data vmdk"),
    ("qcow2", b"not a disk" * 100, "Image disk_format qcow2 does not match stream data raw"),
    ("qcow2", img.qcow2(backing="/etc/shadow"), "Image failed safety checks"),
    ("raw", img.qcow2(backing="/etc/shadow"), "Image failed safety checks"),
    ("qcow2", img.qcow2(features=0b100), "Image failed safety checks"),
    ("vmdk", img.vmdk(extent='RW 2048 SPARSE "/etc/passwd"'), "Image failed safety checks"),
    ("vmdk", img.vmdk_descriptor(), "Image failed safety checks"),
])
def test_disguised_or_unsafe_upload_is_refused_and_nothing_is_stored(
        cloud: RunningCloud, client: httpx.Client, disk_format: str, data: bytes,
        message: str) -> None:
    image_id = _new(client, disk_format)
    before = _stored(cloud)
    r = _put(client, image_id, data)
    assert r.status_code == 415, r.text
    assert message in r.json()["message"]
    doc = client.get(f"/v2/images/{image_id}").json()
    assert (doc["status"], doc["size"], doc["checksum"]) == ("queued", None, None)
    assert client.get(f"/v2/images/{image_id}/file").status_code == 204
    assert _stored(cloud) == before
    client.delete(f"/v2/images/{image_id}")


def test_matching_upload_is_active_with_its_virtual_size(client: httpx.Client) -> None:
    image_id = _new(client, "qcow2")
    r = _put(client, image_id, img.qcow2(3 * MiB))
    assert r.status_code == 204, r.text
    doc = client.get(f"/v2/images/{image_id}").json()
    assert (doc["status"], doc["virtual_size"]) == ("active", 3 * MiB)
    # A container Glance does not inspect takes anything.
    other = _new(client, "iso", container_format="ovf")
    assert _put(client, other, img.qcow2()).status_code == 204
    for i in (image_id, other):
        client.delete(f"/v2/images/{i}")


def test_big_disguised_upload_is_refused_without_storing_it(cloud: RunningCloud,
                                                            client: httpx.Client) -> None:
    """Streamed (Content-Length >= 2 MiB: read by the socket reader): refused once its
    first MiB shows a qcow2 header, the rest never reaches the store."""
    image_id = _new(client, "raw")
    before = _stored(cloud)
    body = img.qcow2(backing="/etc/shadow", length=16 * MiB)
    host, port = cloud.url("image").removeprefix("http://").split(":")
    token = client.headers["X-Auth-Token"]
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: {host}\r\n"
                      f"X-Auth-Token: {token}\r\nAccept: application/json\r\n"
                      "Content-Type: application/octet-stream\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode())
        try:
            sock.sendall(body)
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass  # the server may close before taking all of the body
    if answer:
        assert answer.startswith(b"HTTP/1.1 415"), answer[:200]
    deadline = time.monotonic() + 10
    while client.get(f"/v2/images/{image_id}").json()["status"] != "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _stored(cloud) == before
    # The image takes proper data afterwards.
    assert _put(client, image_id, b"\0" * MiB).status_code == 204
    client.delete(f"/v2/images/{image_id}")


def _wait_task(client: httpx.Client, image_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and tasks[-1]["status"] in ("success", "failure"):
            return dict(tasks[-1])
        time.sleep(0.05)
    raise AssertionError(f"the import of {image_id} did not finish")


def test_staged_data_is_inspected_when_imported(cloud: RunningCloud,
                                                client: httpx.Client) -> None:
    image_id = _new(client, "vmdk")
    before = _stored(cloud)
    # Staging takes anything (Glance inspects at import time) ...
    assert _put(client, image_id, img.qcow2(), "stage").status_code == 204
    r = client.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202, r.text
    task = _wait_task(client, image_id)
    # ... and the import fails, the image goes back to queued, the staged data is gone.
    assert task["status"] == "failure"
    assert "Image disk_format vmdk does not match stream data qcow2" in task["message"]
    deadline = time.monotonic() + 10
    while client.get(f"/v2/images/{image_id}").json()["status"] != "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _stored(cloud) == before
    # A proper VMDK imports.
    assert _put(client, image_id, img.vmdk(8 * MiB), "stage").status_code == 204
    r = client.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202
    assert _wait_task(client, image_id)["status"] == "success"
    doc = client.get(f"/v2/images/{image_id}").json()
    assert (doc["status"], doc["virtual_size"]) == ("active", 8 * MiB)
    client.delete(f"/v2/images/{image_id}")
