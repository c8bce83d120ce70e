"""QEMU guests survive the death of onestack (kill -9) and are re-adopted by a new driver.

A child Python process spawns the test guest (with one port: a tap device) through a
``QemuDriver`` and is then killed with SIGKILL. A new driver object in this process must list
the guest, see it RUNNING, power it off through QMP, start it again and destroy it leaving no
process, tap or file behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from onestack.drivers.hypervisor.base import PowerState

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dataplane tests run as root only"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86_64 is not installed"),
    pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None,
                       reason="the test guest is built from Debian packages"),
]

CHILD = r"""
import asyncio, json, sys, time
from onestack.drivers.hypervisor.qemu import QemuDriver
spec = json.loads(sys.argv[2])
driver = QemuDriver("restart", data_dir=sys.argv[1])
asyncio.run(driver.init_host())
asyncio.run(driver.spawn(spec))
print("spawned", flush=True)
time.sleep(3600)
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="onestack-restart-"))
    try:
        yield path
    finally:
        out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            if str(path) in line:
                os.kill(int(line.split()[0]), signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)


def _qemu_pids(data_dir: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return [int(ln.split()[0]) for ln in out.splitlines() if str(data_dir) in ln]


def test_guest_survives_kill_9_and_is_readopted(data_dir: Path) -> None:
    from onestack.drivers.hypervisor.qemu import QemuDriver
    from onestack.drivers.hypervisor.testguest import guest_spec
    from onestack.guestimage import build_guest_image

    port_id = uuidlib.uuid4().hex
    tap = "tap" + port_id[:11]
    spec = guest_spec(build_guest_image(), "restart1",
                      networks=[{"id": port_id, "mac_address": "fa:16:3e:12:34:56",
                                 "network_id": "net", "mtu": 1450}])
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), json.dumps(spec)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "spawned", child.stderr.read() if child.stderr else ""
        pids = _qemu_pids(data_dir)
        assert len(pids) == 1
        assert Path(f"/sys/class/net/{tap}").exists()
        assert Path(f"/sys/class/net/{tap}/mtu").read_text().strip() == "1450"
    finally:
        child.send_signal(signal.SIGKILL)  # onestack dies hard
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    time.sleep(0.2)
    assert _qemu_pids(data_dir) == pids, "the guest must outlive onestack"

    async def scenario() -> None:
        driver = QemuDriver("restart", data_dir=data_dir)
        await driver.init_host()
        try:
            assert await driver.list_instances() == [spec["uuid"]]
            assert await driver.get_info(spec) == PowerState.RUNNING
            # MAC and tap reached QEMU.
            argv = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")
            assert any(b"mac=fa:16:3e:12:34:56" in a for a in argv)
            assert any(f"ifname={tap}".encode() in a for a in argv)
            await driver.power_off(spec)  # QMP quit through the re-adopted socket
            assert await driver.get_info(spec) == PowerState.SHUTDOWN
            assert _qemu_pids(data_dir) == []
            await driver.power_on(spec)
            assert await driver.get_info(spec) == PowerState.RUNNING
            assert len(_qemu_pids(data_dir)) == 1
            # A guest whose QEMU died (not through the driver) reports SHUTDOWN.
            os.kill(_qemu_pids(data_dir)[0], signal.SIGKILL)
            for _ in range(100):
                if await driver.get_info(spec) == PowerState.SHUTDOWN:
                    break
                await asyncio.sleep(0.05)
            assert await driver.get_info(spec) == PowerState.SHUTDOWN
            await driver.power_on(spec)
        finally:
            await driver.destroy(spec)
        assert await driver.list_instances() == []

    asyncio.run(scenario())
    assert _qemu_pids(data_dir) == []
    assert not Path(f"/sys/class/net/{tap}").exists()
    assert not (data_dir / "instances" / spec["uuid"]).exists()
