"""Issue 16: snapshots of a cloud with a real guest. A QEMU guest writes to its disk, the
running cloud is saved, the guest writes more, the snapshot is loaded (the cloud restarts in
place): the guest boots again from its disk as saved, answers SSH on its floating IP, has
the first file and not the second. ``onestack reset`` then leaves no guest running."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from tests.conftest import VENV_BIN
from tests.dataplane.lab import (  # noqa: F401 - pytestmark applies here
    Lab,
    _cloud_pids,
    _wait,
    pytestmark,
)


def _onestack(lab: Lab, *args: str) -> str:
    res = subprocess.run([str(VENV_BIN / "onestack"), *args, "--data-dir",
                          str(lab.cloud.data_dir)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _guest(lab: Lab, fip: str, command: str) -> str:
    res = lab.ssh(fip, command, timeout=60)
    assert res.returncode == 0, f"{command}: {res.stdout}\n{res.stderr}"
    return res.stdout


def test_snapshot_round_trip_with_a_real_guest(lab: Lab) -> None:
    lab.env = lab.cloud.os_env()
    lab.project_network("snap", "192.168.91.0/24")
    server = lab.boot("vm-snap", "snap-net", "snap-sg")
    fip = lab.reachable("vm-snap")
    _guest(lab, fip, "echo before-save > /disk/one && sync")
    assert "saved lab" in _onestack(lab, "snapshot", "save", "lab")
    _guest(lab, fip, "echo after-save > /disk/two && sync")

    assert "up again" in _onestack(lab, "snapshot", "load", "lab")
    shown = lab.json("server", "show", "vm-snap")
    assert shown["id"] == server["id"] and shown["status"] == "ACTIVE"
    _wait(lambda: lab.ssh(fip, "true").returncode == 0, "ssh after the load")
    assert _guest(lab, fip, "cat /disk/one").strip() == "before-save"
    assert _guest(lab, fip, "ls /disk").split().count("two") == 0

    assert "up again" in _onestack(lab, "reset")
    assert lab.json("server", "list") == []
    _wait(lambda: not _qemus(lab), "no QEMU of the cloud left", 30)


def _qemus(lab: Lab) -> list[int]:
    out = []
    for pid in _cloud_pids(lab.cloud.data_dir):
        with contextlib.suppress(OSError):
            if b"qemu" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
    return out
