"""The block-storage service through the real clients (``openstack volume …`` and
openstacksdk): volumes, snapshots, clones, volumes from images, extend, types, quotas,
the legacy attach actions, tenancy, bad input, and a restart that finds files and rows in
line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openstack
import pytest
from openstack import exceptions as exc

from tests.conftest import RunningCloud


def _json(cloud: RunningCloud, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(cloud.openstack(*args, "-f", "json", env=env).stdout)


def _conn(cloud: RunningCloud, user: str = "admin", password: str | None = None,
          project: str = "admin") -> Any:
    return openstack.connect(
        auth_url=cloud.auth_url, username=user, password=password or cloud.admin_password,
        project_name=project, user_domain_id="default", project_domain_id="default",
        region_name="RegionOne", identity_api_version="3")


def _wait(fn: Any, want: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        item = fn()
        status = item["status"] if isinstance(item, dict) else item.status
        if status == want:
            return item
        assert status not in ("error", "error_deleting"), item
        assert time.monotonic() < deadline, f"still {status}, not {want}"
        time.sleep(0.1)


def _files(cloud: RunningCloud) -> set[str]:
    d = cloud.data_dir / "volumes"
    return {p.name for p in d.iterdir() if not p.name.startswith(".")} if d.exists() else set()


def test_volume_lifecycle_with_the_cli(cloud: RunningCloud) -> None:
    user, password, project = cloud.make_member("vol")
    env = cloud.os_env(user, password, project)
    before = _files(cloud)
    vol = _json(cloud, "volume", "create", "--size", "1", "v1", env=env)
    assert vol["status"] == "creating" and vol["size"] == 1
    _wait(lambda: _json(cloud, "volume", "show", vol["id"], env=env), "available")
    assert f"volume-{vol['id']}" in _files(cloud)
    snap = _json(cloud, "volume", "snapshot", "create", "--volume", "v1", "s1", env=env)
    _wait(lambda: _json(cloud, "volume", "snapshot", "show", snap["id"], env=env),
          "available")
    v2 = _json(cloud, "volume", "create", "--snapshot", snap["id"], "--size", "2", "v2",
               env=env)
    v3 = _json(cloud, "volume", "create", "--source", vol["id"], "v3", env=env)
    for v in (v2, v3):
        _wait(lambda v=v: _json(cloud, "volume", "show", v["id"], env=env), "available")
    cloud.openstack("volume", "set", "--size", "3", "--property", "k=v", "--bootable", "v1",
                    env=env)
    shown = _wait(lambda: _json(cloud, "volume", "show", vol["id"], env=env), "available")
    assert shown["size"] == 3 and shown["bootable"] in ("true", True)
    assert shown["properties"] == {"k": "v"} or shown["properties"] == "k='v'"
    # A volume with snapshots is not deleted (400) until they are gone.
    r = cloud.openstack("volume", "delete", "v1", env=env, check=False)
    assert r.returncode != 0
    cloud.openstack("volume", "snapshot", "delete", snap["id"], env=env)
    cloud.openstack("volume", "delete", "v1", "v2", "v3", env=env)
    deadline = time.monotonic() + 30
    while _json(cloud, "volume", "list", env=env) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _json(cloud, "volume", "list", env=env) == []
    assert _files(cloud) == before  # nothing left on disk


def test_volume_from_image_and_types(cloud: RunningCloud, tmp_path: Path) -> None:
    conn = _conn(cloud)
    data = tmp_path / "disk.raw"
    data.write_bytes(b"BOOT" + b"\0" * (1 << 20))
    img = conn.image.create_image(name="vol-src", filename=str(data), disk_format="raw",
                                  container_format="bare", visibility="public")
    vt = conn.block_storage.create_type(name="gold", extra_specs={
        "capabilities:thin_provisioning_support": "<is> True", "qos:tier": "1"})
    vol = conn.block_storage.create_volume(size=1, image_id=img.id, volume_type="gold",
                                           name="from-image")
    vol = conn.block_storage.wait_for_status(vol, "available", wait=30)
    assert vol.is_bootable and vol.volume_type == "gold"
    assert vol.volume_image_metadata["image_id"] == img.id
    with open(cloud.data_dir / "volumes" / f"volume-{vol.id}", "rb") as f:
        assert f.read(4) == b"BOOT"
    # An image bigger than the volume is refused before anything is stored.
    big = tmp_path / "big.raw"
    with open(big, "wb") as f:
        f.truncate(3 << 30)
    img2 = conn.image.create_image(name="vol-big", filename=str(big), disk_format="raw",
                                   container_format="bare")
    with pytest.raises(exc.BadRequestException):
        conn.block_storage.create_volume(size=1, image_id=img2.id, name="too-small")
    # A type in use is not deleted; the default type stays.
    with pytest.raises(exc.BadRequestException):
        conn.block_storage.delete_type(vt)
    conn.block_storage.delete_volume(vol)
    conn.block_storage.wait_for_delete(vol, wait=30)
    conn.block_storage.delete_type(vt)
    names = [t.name for t in conn.block_storage.types()]
    assert "__DEFAULT__" in names and "gold" not in names
    conn.image.delete_image(img)
    conn.image.delete_image(img2)


def test_tenancy_quota_and_bad_input(cloud: RunningCloud) -> None:
    admin = _conn(cloud)
    u1, p1, proj1 = cloud.make_member("vq1")
    u2, p2, proj2 = cloud.make_member("vq2")
    one, two = _conn(cloud, u1, p1, proj1), _conn(cloud, u2, p2, proj2)
    pid1 = admin.identity.find_project(proj1).id
    admin.block_storage.update_quota_set(pid1, volumes=1)
    vol = one.block_storage.create_volume(size=1, name="mine")
    one.block_storage.wait_for_status(vol, "available", wait=30)
    with pytest.raises(exc.HttpException) as err:
        one.block_storage.create_volume(size=1, name="over")
    assert err.value.status_code == 413
    # Another project sees nothing of it and cannot touch it (404).
    assert [v.id for v in two.block_storage.volumes()] == []
    with pytest.raises(exc.NotFoundException):
        two.block_storage.get_volume(vol.id)
    with pytest.raises(exc.NotFoundException):
        two.block_storage.delete_volume(vol.id, ignore_missing=False)
    # A member cannot manage types or reset status (403).
    with pytest.raises(exc.ForbiddenException):
        one.block_storage.create_type(name="nope")
    token = cloud.token(u1, p1, proj1)
    base = f"{cloud.url('volume')}/v3/{one.current_project_id}"
    h = {"X-Auth-Token": token}
    r = httpx.post(f"{base}/volumes/{vol.id}/action", headers=h,
                   json={"os-reset_status": {"status": "error"}})
    assert r.status_code == 403 and "forbidden" in r.json()
    for body in ({"volume": {"size": 0}}, {"volume": {"size": "x"}}, {"volume": []},
                 {"volume": {"size": 1, "name": "n" * 300}},
                 {"volume": {"size": 1, "metadata": {"k": 5}}},
                 {"volume": {"size": 1, "volume_type": "nope"}}):
        r = httpx.post(f"{base}/volumes", headers=h, json=body)
        assert r.status_code in (400, 404), (body, r.text)
        assert set(r.json()) <= {"badRequest", "itemNotFound"}
    r = httpx.get(f"{base}/volumes", headers={**h, "OpenStack-API-Version": "volume 3.99"})
    assert r.status_code == 404
    assert [v.name for v in one.block_storage.volumes()] == ["mine"]  # nothing stored
    one.block_storage.delete_volume(vol)


def test_legacy_attach_actions(cloud: RunningCloud) -> None:
    conn = _conn(cloud)
    vol = conn.block_storage.create_volume(size=1, name="att")
    conn.block_storage.wait_for_status(vol, "available", wait=30)
    base = f"{cloud.url('volume')}/v3/{conn.current_project_id}/volumes/{vol.id}/action"
    h = {"X-Auth-Token": cloud.token()}

    def act(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(base, headers=h, json=body)

    assert act({"os-reserve": {}}).status_code == 202
    assert conn.block_storage.get_volume(vol.id).status == "attaching"
    assert act({"os-attach": {"instance_uuid": "6a3e4b5c-0000-4000-8000-000000000001",
                              "mountpoint": "/dev/vdb"}}).status_code == 202
    v = conn.block_storage.get_volume(vol.id)
    assert v.status == "in-use" and v.attachments[0]["device"] == "/dev/vdb"
    r = act({"os-initialize_connection": {"connector": {"host": "h1"}}})
    assert r.status_code == 200
    info = r.json()["connection_info"]
    assert info["driver_volume_type"] == "file"
    assert Path(info["data"]["path"]).exists()
    # Attached: not deleted.
    with pytest.raises(exc.BadRequestException):
        conn.block_storage.delete_volume(vol, ignore_missing=False)
    assert act({"os-begin_detaching": {}}).status_code == 202
    assert act({"os-detach": {}}).status_code == 202
    assert conn.block_storage.get_volume(vol.id).status == "available"
    assert act({"os-unreserve": {}}).status_code == 400  # not attaching
    conn.block_storage.delete_volume(vol)


def test_restart_reconciles(tmp_path: Path) -> None:
    """Rows left ``creating`` become available when their file exists, else error; files
    that no row names are removed on start."""
    from tests.conftest import start_cloud

    cloud = start_cloud(tmp_path / "data")
    try:
        conn = _conn(cloud)
        vol = conn.block_storage.create_volume(size=1, name="keep")
        conn.block_storage.wait_for_status(vol, "available", wait=30)
    finally:
        cloud.stop()
    orphan = tmp_path / "data" / "volumes" / "volume-00000000-0000-4000-8000-000000000000"
    orphan.write_bytes(b"")
    part = tmp_path / "data" / "volumes" / ".volume-x.part"
    part.write_bytes(b"half")
    cloud = start_cloud(tmp_path / "data")
    try:
        conn = _conn(cloud)
        assert conn.block_storage.get_volume(vol.id).status == "available"
        assert not orphan.exists() and not part.exists()
    finally:
        cloud.stop()


def test_backups_and_transfers(cloud: RunningCloud) -> None:
    """A full and an incremental backup restore what was written; a transfer hands the
    volume to another project; nothing is left on disk afterwards."""
    u1, p1, proj1 = cloud.make_member("vb1")
    u2, p2, proj2 = cloud.make_member("vb2")
    one, two = _conn(cloud, u1, p1, proj1), _conn(cloud, u2, p2, proj2)
    vol = one.block_storage.create_volume(size=1, name="data")
    one.block_storage.wait_for_status(vol, "available", wait=30)
    path = cloud.data_dir / "volumes" / f"volume-{vol.id}"
    with open(path, "r+b") as f:
        f.write(b"first")
        f.seek(40 << 20)
        f.write(b"far away")
    full = one.block_storage.create_backup(volume_id=vol.id, name="full")
    full = one.block_storage.wait_for_status(full, "available", wait=60)
    one.block_storage.wait_for_status(vol, "available", wait=30)
    with open(path, "r+b") as f:
        f.write(b"SECND")
    inc = one.block_storage.create_backup(volume_id=vol.id, name="inc", is_incremental=True)
    inc = one.block_storage.wait_for_status(inc, "available", wait=60)
    assert inc.is_incremental and inc.object_count == 1  # only the changed chunk
    with pytest.raises(exc.BadRequestException):  # the full one has a dependent
        one.block_storage.delete_backup(full, ignore_missing=False)
    # Restore the full backup into the volume: the first write comes back.
    one.block_storage.restore_backup(full, volume=vol.id)
    _wait(lambda: one.block_storage.get_backup(full.id), "available", 60)
    _wait(lambda: one.block_storage.get_volume(vol.id), "available", 60)
    with open(path, "rb") as f:
        assert f.read(5) == b"first"
        f.seek(40 << 20)
        assert f.read(8) == b"far away"
    # Restore the incremental one into a new volume.
    restored = one.block_storage.restore_backup(inc, name="restored")
    new_id = restored["volume_id"] if isinstance(restored, dict) else restored.volume_id
    _wait(lambda: one.block_storage.get_backup(inc.id), "available", 60)
    _wait(lambda: one.block_storage.get_volume(new_id), "available", 60)
    with open(cloud.data_dir / "volumes" / f"volume-{new_id}", "rb") as f:
        assert f.read(5) == b"SECND"
    one.block_storage.delete_backup(inc)
    one.block_storage.wait_for_delete(inc, wait=30)
    one.block_storage.delete_backup(full)
    one.block_storage.wait_for_delete(full, wait=30)
    # Transfer the restored volume to the other project.
    env1 = cloud.os_env(u1, p1, proj1)
    t = _json(cloud, "volume", "transfer", "request", "create", new_id, env=env1)
    assert one.block_storage.get_volume(new_id).status == "awaiting-transfer"
    env2 = cloud.os_env(u2, p2, proj2)
    cloud.openstack("volume", "transfer", "request", "accept", "--auth-key", t["auth_key"],
                    t["id"], env=env2)
    moved = two.block_storage.get_volume(new_id)
    assert moved.status == "available" and moved.project_id == two.current_project_id
    with pytest.raises(exc.NotFoundException):
        one.block_storage.get_volume(new_id)
    two.block_storage.delete_volume(moved)
    one.block_storage.delete_volume(vol)
    for conn, vid in ((two, new_id), (one, vol.id)):
        deadline = time.monotonic() + 30
        while conn.block_storage.find_volume(vid) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    backups = cloud.data_dir / "backups"
    assert not backups.exists() or not any(backups.iterdir())


def test_unmet_extra_specs_end_in_error_with_a_message(cloud: RunningCloud) -> None:
    """A type asking for a capability this backend lacks: no valid backend, the volume ends
    in ``error`` and a user message (3.3) says why, as Cinder's scheduler does."""
    conn = _conn(cloud)
    vt = conn.block_storage.create_type(name="iscsi-only",
                                        extra_specs={"storage_protocol": "iSCSI"})
    vol = conn.block_storage.create_volume(size=1, volume_type="iscsi-only", name="nowhere")
    deadline = time.monotonic() + 30
    while conn.block_storage.get_volume(vol.id).status != "error":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert f"volume-{vol.id}" not in _files(cloud)
    h = {"X-Auth-Token": cloud.token(), "OpenStack-API-Version": "volume 3.3"}
    base = f"{cloud.url('volume')}/v3/{conn.current_project_id}"
    msgs = httpx.get(f"{base}/messages", headers=h).json()["messages"]
    mine = [m for m in msgs if m["resource_uuid"] == vol.id]
    assert mine and mine[0]["event_id"] == "VOLUME_VOLUME_001_003"
    assert httpx.delete(f"{base}/messages/{mine[0]['id']}", headers=h).status_code == 204
    assert httpx.get(f"{base}/messages/{mine[0]['id']}", headers=h).status_code == 404
    conn.block_storage.delete_volume(vol)
    deadline = time.monotonic() + 30
    while conn.block_storage.find_volume(vol.id) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    conn.block_storage.delete_type(vt)


def test_volume_upload_to_image(cloud: RunningCloud) -> None:
    """``openstack image create --volume``: the volume's data becomes an active image."""
    conn = _conn(cloud)
    vol = conn.block_storage.create_volume(size=1, name="to-image")
    _wait(lambda: conn.block_storage.get_volume(vol.id), "available")
    with open(cloud.data_dir / "volumes" / f"volume-{vol.id}", "r+b") as f:
        f.write(b"UPLOADED")
    out = _json(cloud, "image", "create", "--volume", vol.id, "--disk-format", "raw",
                "--container-format", "bare", "vol-image")
    image_id = out.get("image_id") or out.get("id")
    img = _wait(lambda: conn.image.get_image(image_id), "active", 60)
    assert img.size == 1 << 30
    data = conn.image.download_image(img, stream=True)
    assert next(data.iter_content(8)) == b"UPLOADED"
    _wait(lambda: conn.block_storage.get_volume(vol.id), "available")
    conn.image.delete_image(img)
    # qcow2: converted by the backend, the image service's format inspection accepts it.
    out = _json(cloud, "image", "create", "--volume", vol.id, "--disk-format", "qcow2",
                "--container-format", "bare", "vol-image-qcow2")
    img = _wait(lambda: conn.image.get_image(out.get("image_id") or out.get("id")),
                "active", 60)
    assert img.disk_format == "qcow2" and img.size < 1 << 30
    _wait(lambda: conn.block_storage.get_volume(vol.id), "available")
    assert not any((cloud.data_dir / "volumes-scratch").iterdir())
    conn.image.delete_image(img)
    conn.block_storage.delete_volume(vol)


def test_groups_and_group_snapshots(cloud: RunningCloud) -> None:
    """Group type, group of volumes, group snapshot, a group made from it, deletes."""
    conn = _conn(cloud)
    base = f"{cloud.url('volume')}/v3/{conn.current_project_id}"
    h = {"X-Auth-Token": cloud.token(), "OpenStack-API-Version": "volume 3.25"}
    c = httpx.Client(headers=h, timeout=30)

    def status(url: str, key: str, want: str) -> None:
        deadline = time.monotonic() + 30
        while c.get(url).json()[key]["status"] != want:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    gt = c.post(f"{base}/group_types", json={"group_type": {"name": "gt1"}}).json()
    gt_id = gt["group_type"]["id"]
    default_type = c.get(f"{base}/types/default").json()["volume_type"]["id"]
    g = c.post(f"{base}/groups", json={"group": {"name": "g1", "group_type": gt_id,
                                                 "volume_types": [default_type]}}).json()
    gid = g["group"]["id"]
    status(f"{base}/groups/{gid}", "group", "available")
    vids = []
    for i in range(2):
        v = c.post(f"{base}/volumes", json={"volume": {"size": 1, "name": f"gv{i}",
                                                       "group_id": gid}}).json()["volume"]
        status(f"{base}/volumes/{v['id']}", "volume", "available")
        vids.append(v["id"])
    shown = c.get(f"{base}/groups/{gid}", params={"list_volume": "true"}).json()["group"]
    assert sorted(shown["volumes"]) == sorted(vids)
    # A volume of a group is not deleted on its own.
    assert c.delete(f"{base}/volumes/{vids[0]}").status_code == 400
    gs = c.post(f"{base}/group_snapshots", json={"group_snapshot": {
        "group_id": gid, "name": "gs1"}}).json()["group_snapshot"]
    status(f"{base}/group_snapshots/{gs['id']}", "group_snapshot", "available")
    g2 = c.post(f"{base}/groups/action", json={"create-from-src": {
        "group_snapshot_id": gs["id"], "name": "g2"}}).json()["group"]
    status(f"{base}/groups/{g2['id']}", "group", "available")
    g2_vols = c.get(f"{base}/groups/{g2['id']}",
                    params={"list_volume": "true"}).json()["group"]["volumes"]
    assert len(g2_vols) == 2
    # Deleting needs delete-volumes while volumes remain; group snapshots go first.
    r = c.post(f"{base}/groups/{gid}/action", json={"delete": {"delete-volumes": False}})
    assert r.status_code == 400
    assert c.delete(f"{base}/group_snapshots/{gs['id']}").status_code == 202
    for group in (gid, g2["id"]):
        r = c.post(f"{base}/groups/{group}/action", json={"delete": {"delete-volumes": True}})
        assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    ours = set(vids) | set(g2_vols)
    while ours & {v["id"] for v in c.get(f"{base}/volumes").json()["volumes"]}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert c.delete(f"{base}/group_types/{gt_id}").status_code == 202
    c.close()


def test_the_cinder_client(cloud: RunningCloud) -> None:
    """The legacy ``cinder`` CLI the seed notes use (python-cinderclient)."""
    import subprocess

    from tests.conftest import VENV_BIN

    user, password, project = cloud.make_member("cdr")
    env = cloud.os_env(user, password, project)

    def cinder(*args: str) -> str:
        res = subprocess.run([str(VENV_BIN / "cinder"), *args], env=env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    out = cinder("create", "1", "--name", "legacy-vol")
    assert "legacy-vol" in out
    deadline = time.monotonic() + 30
    while "available" not in cinder("show", "legacy-vol"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "legacy-vol" in cinder("list")
    cinder("delete", "legacy-vol")
