"""The image commands users type, with the real ``glance`` and ``openstack`` CLIs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

RunningCloud = Any  # tests/conftest.py's RunningCloud (fixture ``cloud``)
VENV_BIN = Path(sys.executable).parent


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _glance(cloud: RunningCloud, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(VENV_BIN / "glance"), *args], env=env or cloud.os_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"glance {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture
def qcow2(tmp_path: Path) -> Path:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(os.urandom(3 << 20))
    out = tmp_path / "disk.qcow2"
    if subprocess.run(["qemu-img", "--version"], capture_output=True).returncode == 0:
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                       check=True)
    else:  # pragma: no cover - qemu-utils missing: any bytes do for the API
        out.write_bytes(raw.read_bytes())
    return out


def _member_env(cloud: RunningCloud) -> tuple[dict[str, str], str]:
    """A second project with a member user; returns (its CLI env, project id)."""
    token = cloud.token()
    h = {"X-Auth-Token": token}
    base = cloud.auth_url
    suffix = uuid.uuid4().hex[:8]
    project = httpx.post(f"{base}/projects", headers=h, json={"project": {
        "name": f"cli-p-{suffix}", "domain_id": "default"}}).json()["project"]
    user = httpx.post(f"{base}/users", headers=h, json={"user": {
        "name": f"cli-u-{suffix}", "domain_id": "default", "password": "Pw-12345678",
        "default_project_id": project["id"]}}).json()["user"]
    roles = httpx.get(f"{base}/roles?name=member", headers=h).json()["roles"]
    r = httpx.put(f"{base}/projects/{project['id']}/users/{user['id']}/roles/{roles[0]['id']}",
                  headers=h)
    assert r.status_code == 204, r.text
    return cloud.os_env(user["name"], "Pw-12345678", project["name"]), project["id"]


def test_glance_and_openstack_cli(cloud: RunningCloud, qcow2: Path, tmp_path: Path) -> None:
    name = f"cirros-{uuid.uuid4().hex[:6]}"
    want = _md5(qcow2)
    out = _glance(cloud, "image-create", "--name", name, "--file", str(qcow2),
                  "--disk-format", "qcow2", "--container-format", "bare",
                  "--visibility", "public", "--progress").stdout
    assert want in out and "active" in out
    listed = _glance(cloud, "image-list").stdout
    assert name in listed

    name2 = f"cirros-osc-{uuid.uuid4().hex[:6]}"
    created = json.loads(cloud.openstack(
        "image", "create", "--file", str(qcow2), "--disk-format", "qcow2",
        "--container-format", "bare", "--public", name2, "-f", "json").stdout)
    assert created["status"] == "active"
    assert created["checksum"] == want
    assert name2 in cloud.openstack("image", "list", "-f", "value", "-c", "Name").stdout
    shown = json.loads(cloud.openstack("image", "show", name2, "-f", "json").stdout)
    assert shown["size"] == qcow2.stat().st_size
    assert shown["disk_format"] == "qcow2" and shown["visibility"] == "public"
    if shown.get("virtual_size") is not None:
        assert shown["virtual_size"] == 3 << 20
    saved = tmp_path / "saved.img"
    cloud.openstack("image", "save", "--file", str(saved), name2)
    assert _md5(saved) == want
    assert hashlib.sha512(saved.read_bytes()).hexdigest() == shown["properties"].get(
        "os_hash_value", shown.get("os_hash_value"))

    cloud.openstack("image", "set", "--property", "hw_disk_bus=virtio", "--tag", "t1", name2)
    shown = json.loads(cloud.openstack("image", "show", name2, "-f", "json").stdout)
    assert shown["properties"]["hw_disk_bus"] == "virtio"
    assert "t1" in shown["tags"]

    # Sharing: a private (shared) image added to another project, accepted by its member.
    shared_name = f"shared-{uuid.uuid4().hex[:6]}"
    shared = json.loads(cloud.openstack(
        "image", "create", "--file", str(qcow2), "--disk-format", "qcow2",
        "--container-format", "bare", "--shared", shared_name, "-f", "json").stdout)
    member_env, project_id = _member_env(cloud)
    ids = cloud.openstack("image", "list", "-f", "value", "-c", "ID", env=member_env).stdout
    assert shared["id"] not in ids
    cloud.openstack("image", "add", "project", shared["id"], project_id)
    cloud.openstack("image", "set", "--accept", shared["id"], env=member_env)
    ids = cloud.openstack("image", "list", "-f", "value", "-c", "ID", env=member_env).stdout
    assert shared["id"] in ids
    member_copy = tmp_path / "member.img"
    cloud.openstack("image", "save", "--file", str(member_copy), shared["id"], env=member_env)
    assert _md5(member_copy) == want

    cloud.openstack("image", "delete", name2)
    cloud.openstack("image", "delete", shared["id"])
    listed = cloud.openstack("image", "list", "-f", "value", "-c", "Name").stdout
    assert name2 not in listed
    _glance(cloud, "image-delete", json.loads(cloud.openstack(
        "image", "show", name, "-f", "json").stdout)["id"])
