"""``onestack image-worker``: a second image API process over the same cloud."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import VENV_BIN, RunningCloud, free_port, start_cloud


@pytest.fixture(scope="module")
def two() -> Iterator[tuple[RunningCloud, httpx.Client, httpx.Client]]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-worker-"))
    c = start_cloud(tmp / "data")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({f"ONESTACK_{name.upper()}_PORT": str(p) for name, p in c.ports.items()})
    env["ONESTACK_LOG_LEVEL"] = "warning"
    log = (tmp / "worker.log").open("ab")
    worker = subprocess.Popen([str(VENV_BIN / "onestack"), "image-worker", "--data-dir",
                               str(c.data_dir), "--port", str(port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    headers = {"X-Auth-Token": c.token(), "Accept": "application/json"}
    main = httpx.Client(base_url=c.url("image"), headers=headers, timeout=30)
    other = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if other.get("/healthcheck").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert worker.poll() is None, (tmp / "worker.log").read_text()
            assert time.monotonic() < deadline, "image worker did not start"
            time.sleep(0.1)
        yield c, main, other
    finally:
        main.close()
        other.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait(client: httpx.Client, image_id: str, check: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = client.get(f"/v2/images/{image_id}").json()
        if check(doc):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"image {image_id} never got there: {doc}")


def test_stage_on_one_import_on_the_other(two: Any) -> None:
    cloud, main, other = two
    data = os.urandom(100_000)
    image_id = main.post("/v2/images", json={"name": "w", "disk_format": "raw",
                                             "container_format": "bare"}).json()["id"]
    r = main.put(f"/v2/images/{image_id}/stage", content=data,
                 headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204
    assert other.get(f"/v2/images/{image_id}").json()["status"] == "uploading"
    r = other.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202, r.text
    _wait(main, image_id, lambda d: d["status"] == "active")
    assert other.get(f"/v2/images/{image_id}/file").content == data
    assert other.delete(f"/v2/images/{image_id}").status_code == 204
    assert main.get(f"/v2/images/{image_id}").status_code == 404
    assert not (Path(cloud.data_dir) / "images" / image_id).exists()


def test_bad_token_and_own_cache(two: Any) -> None:
    cloud, main, other = two
    assert other.get("/v2/images", headers={"X-Auth-Token": "nope"}).status_code == 401
    image_id = main.post("/v2/images", json={"name": "w", "disk_format": "raw",
                                             "container_format": "bare"}).json()["id"]
    try:
        assert main.put(f"/v2/images/{image_id}/file", content=b"x" * 5000, headers={
            "Content-Type": "application/octet-stream"}).status_code == 204
        assert other.put(f"/v2/cache/{image_id}").status_code == 202
        deadline = time.monotonic() + 20
        while not other.get("/v2/cache").json()["cached_images"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert main.get("/v2/cache").json()["cached_images"] == []  # each process its own
        # Deleted through the main process: the worker's copy goes at its next listing.
        assert main.delete(f"/v2/images/{image_id}").status_code == 204
        assert other.get("/v2/cache").json()["cached_images"] == []
        assert list((Path(cloud.data_dir) / "images").glob("cache-*/" + image_id)) == []
    finally:
        main.delete(f"/v2/images/{image_id}")
