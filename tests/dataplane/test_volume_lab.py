"""Issue 14 "Done when" 1: block storage with real guests, through the ``openstack`` CLI.

onestack runs in a network namespace of its own (as in ``test_lab.py``) with QEMU guests and
the Linux data plane. As a project member: a 1 GiB volume, listed and shown, is attached to a
running guest; over SSH the guest finds it by its serial (``/dev/disk/by-id/virtio-…``),
puts a FAT file system on it and writes a file. The volume is detached (the guest lets go
of the disk), attached to a second guest, and the file is there. While attached it grows
(microversion 3.42) and the guest sees the new size. Then a snapshot, a volume from it, a
backup restored into a new volume (the file again, read by a third guest booted *from a
volume* made of the test image; what it writes under ``/disk`` is read again by a fourth
guest booted from the same volume), a transfer to another project, and deleting everything
leaves no file in the volume directory.

A guest's ``/disk`` also survives a shelve and unshelve. Root, QEMU and the data-plane
tools only; everything the test made is removed afterwards.
"""

from __future__ import annotations

import time
from typing import Any

from tests.dataplane.lab import (  # noqa: F401 - pytestmark applies here
    GUEST_FLAVOR,
    GUEST_IMAGE,
    Lab,
    _wait,
    pytestmark,
)

V342 = ("--os-volume-api-version", "3.42")


def _volume(lab: Lab, name: str) -> dict[str, Any]:
    return lab.json("volume", "show", name)  # type: ignore[no-any-return]


def _status(lab: Lab, name: str, want: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        vol = _volume(lab, name)
        assert vol["status"] not in ("error", "error_extending"), vol
        return vol if vol["status"] == want else None
    return _wait(check, f"volume {name} {want}", timeout)  # type: ignore[no-any-return]


def _disk(vid: str) -> str:
    return f"/dev/disk/by-id/virtio-{vid[:20]}"


def _in_guest(lab: Lab, fip: str, command: str) -> str:
    res = lab.ssh(fip, command, timeout=60)
    assert res.returncode == 0, f"{command}: {res.stdout}\n{res.stderr}"
    return res.stdout


def test_volumes_with_real_guests(lab: Lab) -> None:
    member, password, project = lab.cloud.make_member("vlab")
    lab.env = lab.cloud.os_env(member, password, project)
    lab.project_network("vlab", "192.168.87.0/24")
    lab.boot("vm-a", "vlab-net", "vlab-sg")
    lab.boot("vm-b", "vlab-net", "vlab-sg")
    fip_a, fip_b = lab.reachable("vm-a"), lab.reachable("vm-b")
    # ---- what a guest keeps on its disk (/disk) survives a shelve (offloaded: the guest
    # comes back from the shelve's snapshot, which is deleted afterwards)
    _in_guest(lab, fip_b, "echo kept-by-the-shelve > /disk/stamp && sync")
    lab.run("server", "shelve", "--wait", "vm-b")
    assert lab.json("server", "show", "vm-b")["status"] == "SHELVED_OFFLOADED"
    assert [i["Name"] for i in lab.json("image", "list")].count("vm-b-shelved") == 1
    lab.run("server", "unshelve", "--wait", "vm-b")
    _wait(lambda: lab.ssh(fip_b, "true").returncode == 0, "ssh to the unshelved guest")
    assert "kept-by-the-shelve" in _in_guest(lab, fip_b, "cat /disk/stamp")
    _wait(lambda: "vm-b-shelved" not in [i["Name"] for i in lab.json("image", "list")],
          "the shelve's snapshot to go")

    vol = lab.json("volume", "create", "--size", "1", "data")
    assert vol["size"] == 1
    _status(lab, "data", "available")
    assert [v["Name"] for v in lab.json("volume", "list")] == ["data"]
    disk = _disk(vol["id"])

    # ---- attach to a running guest: it sees the disk by its serial; a file system + file
    before = _in_guest(lab, fip_a, "lsblk -b --nodeps").count(" disk ")
    started = time.monotonic()
    lab.run("server", "add", "volume", "vm-a", "data")
    _wait(lambda: lab.ssh(fip_a, f"test -b {disk}").returncode == 0,
          "the disk in the guest", timeout=30)
    print(f"attach -> disk visible in the guest: {time.monotonic() - started:.2f} s")
    assert _in_guest(lab, fip_a, "lsblk -b --nodeps").count(" disk ") == before + 1
    assert f"{1 << 30}" in _in_guest(lab, fip_a, "lsblk -b --nodeps")
    assert _status(lab, "data", "in-use")["attachments"][0]["server_id"] == lab.json(
        "server", "show", "vm-a")["id"]
    _in_guest(lab, fip_a, f"mkdosfs {disk} >/dev/null && mkdir -p /mnt/v && "
                          f"mount -t vfat {disk} /mnt/v && echo written-by-vm-a > /mnt/v/note "
                          "&& umount /mnt/v && sync")

    # ---- grows while attached (3.42): the guest sees the new size
    lab.run(*V342, "volume", "set", "--size", "2", "data")
    _wait(lambda: _volume(lab, "data")["size"] == 2, "the volume to grow")
    _wait(lambda: str(2 << 30) in lab.ssh(fip_a, "lsblk -b --nodeps").stdout,
          "the guest to see 2 GiB", timeout=30)

    # ---- detach; attach to the second guest: the file is there
    lab.run("server", "remove", "volume", "vm-a", "data")
    _status(lab, "data", "available")
    _wait(lambda: lab.ssh(fip_a, f"test -b {disk}").returncode != 0,
          "the disk to leave the first guest", timeout=30)
    lab.run("server", "add", "volume", "vm-b", "data")
    _wait(lambda: lab.ssh(fip_b, f"test -b {disk}").returncode == 0,
          "the disk in the second guest", timeout=30)
    out = _in_guest(lab, fip_b, f"mkdir -p /mnt/v && mount -t vfat {disk} /mnt/v && "
                                "cat /mnt/v/note && umount /mnt/v")
    assert "written-by-vm-a" in out
    lab.run("server", "remove", "volume", "vm-b", "data")
    _status(lab, "data", "available")

    # ---- snapshot, volume from it, backup restored into a new volume
    lab.run("volume", "snapshot", "create", "--volume", "data", "snap")
    _wait(lambda: lab.json("volume", "snapshot", "show", "snap")["status"] == "available",
          "the snapshot")
    lab.run("volume", "create", "--snapshot", "snap", "from-snap")
    _status(lab, "from-snap", "available")
    lab.run("volume", "backup", "create", "--name", "bk", "data")
    _wait(lambda: lab.json("volume", "backup", "show", "bk")["status"] == "available",
          "the backup")
    lab.run("volume", "create", "--size", "2", "restored")
    _status(lab, "restored", "available")
    lab.run("volume", "backup", "restore", "--force", "bk", "restored")
    _status(lab, "restored", "available")

    # ---- a guest booted from a volume made of the test image reads the restored file
    lab.run("volume", "create", "--image", GUEST_IMAGE, "--size", "1", "--bootable", "root")
    _status(lab, "root", "available")
    server = lab.json("server", "create", "--volume", "root", "--flavor", GUEST_FLAVOR,
                      "--network", "vlab-net", "--security-group", "vlab-sg",
                      "--key-name", "lab-key", "--wait", "vm-c")
    assert server["status"] == "ACTIVE"
    assert server["image"] in ("", "N/A (booted from volume)")  # volume-backed
    fip_c = lab.reachable("vm-c")
    lab.run("server", "add", "volume", "vm-c", "restored")
    restored = _disk(_volume(lab, "restored")["id"])
    _wait(lambda: lab.ssh(fip_c, f"test -b {restored}").returncode == 0,
          "the restored disk in the third guest", timeout=30)
    out = _in_guest(lab, fip_c, f"mkdir -p /mnt/v && mount -t vfat {restored} /mnt/v && "
                                "cat /mnt/v/note && umount /mnt/v")
    assert "written-by-vm-a" in out
    lab.run("server", "remove", "volume", "vm-c", "restored")
    # What the guest writes under /disk (its root disk's file system) is on the root volume:
    # a new guest booted from the same volume reads it.
    assert "/disk" in _in_guest(lab, fip_c, "grep ' /disk ' /proc/mounts")
    _in_guest(lab, fip_c, "echo kept-on-the-root-volume > /disk/stamp && sync")
    lab.run("server", "delete", "--wait", "vm-c")
    _status(lab, "root", "available")
    lab.json("server", "create", "--volume", "root", "--flavor", GUEST_FLAVOR, "--network",
             "vlab-net", "--security-group", "vlab-sg", "--key-name", "lab-key", "--wait",
             "vm-d")
    fip_d = lab.reachable("vm-d")
    assert "kept-on-the-root-volume" in _in_guest(lab, fip_d, "cat /disk/stamp")

    # ---- transfer to another project
    other, other_pw, other_project = lab.cloud.make_member("vlab2")
    env2 = lab.cloud.os_env(other, other_pw, other_project)
    transfer = lab.json("volume", "transfer", "request", "create", "from-snap")
    lab.run("volume", "transfer", "request", "accept", "--auth-key", transfer["auth_key"],
            transfer["id"], env=env2)
    assert [v["Name"] for v in lab.json("volume", "list", env=env2)] == ["from-snap"]
    lab.run("volume", "delete", "from-snap", env=env2)

    # ---- delete everything: nothing left in the volume directory
    lab.run("server", "delete", "--wait", "vm-a", "vm-b", "vm-d")
    lab.run("volume", "backup", "delete", "bk")
    lab.run("volume", "snapshot", "delete", "snap")
    _wait(lambda: not lab.json("volume", "snapshot", "list"), "the snapshot to go")
    lab.run("volume", "delete", "data", "restored", "root")
    _wait(lambda: not lab.json("volume", "list") and not lab.json(
        "volume", "list", env=env2), "every volume to go")
    left = [p.name for p in (lab.cloud.data_dir / "volumes").iterdir()
            if not p.name.startswith(".")]
    assert left == [], left
    backups = lab.cloud.data_dir / "backups"
    assert not backups.exists() or not [p for p in backups.rglob("*") if p.is_file()]
