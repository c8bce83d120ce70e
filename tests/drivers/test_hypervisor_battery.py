"""The hypervisor driver battery: one set of contract tests run over the fake and QEMU drivers.

One guest per driver is carried through the whole lifecycle (the module-scoped ``host``
fixture), so the QEMU variant boots only a handful of times. With QEMU the guest is the
onestack test guest with a config drive whose user-data script prints a nonce; the console
log must show it and the guest's ready line. The QEMU variant runs as root only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid as uuidlib
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from onestack.drivers.hypervisor.base import (
    DriverError,
    HostResources,
    HypervisorDriver,
    InstanceNotFound,
    PowerState,
)
from onestack.drivers.hypervisor.fake import FakeDriver

T = TypeVar("T")
READY_TIMEOUT = 120.0  # TCG on a loaded 2-CPU runner can be slow


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _qemu_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the QEMU driver battery runs as root only (taps, /dev/kvm)"
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        return "qemu-system-x86_64/qemu-img are not installed"
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "the test guest is built from Debian packages (apt-get, dpkg-deb)"
    return None


@dataclass
class Host:
    """A driver under test plus what the tests need to know about it."""

    kind: str
    driver: HypervisorDriver
    data_dir: Path | None = None
    guest: Any = None
    nonce: str = field(default_factory=lambda: uuidlib.uuid4().hex[:12])
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def spec(self, name: str) -> dict[str, Any]:
        if name not in self.specs:
            script = f'#!/bin/sh\necho "battery-user-data: $(hostname) {self.nonce}"\n'
            if self.kind == "qemu":
                from onestack.drivers.hypervisor.testguest import guest_spec

                self.specs[name] = guest_spec(self.guest, name, user_data=script)
            else:
                self.specs[name] = {"uuid": str(uuidlib.uuid4()), "name": name,
                                    "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1,
                                               "ephemeral_gb": 0, "swap": 0,
                                               "extra_specs": {}},
                                    "image": {"id": "img", "path": None, "properties": {}},
                                    "key_data": None, "user_data": None, "metadata": {},
                                    "admin_pass": None, "networks": [],
                                    "config_drive": True}
        return self.specs[name]

    def ready_count(self, name: str) -> int:
        text = run(self.driver.get_console_output(self.spec(name)))
        return text.count(f"onestack-guest: {name} ready")

    def wait_ready(self, name: str, count: int = 1) -> str:
        """Wait until the guest printed its ready line ``count`` times (QEMU only)."""
        if self.kind != "qemu":
            return ""
        deadline = time.monotonic() + READY_TIMEOUT
        text = ""
        while time.monotonic() < deadline:
            text = run(self.driver.get_console_output(self.spec(name)))
            if text.count(f"onestack-guest: {name} ready") >= count:
                return text
            time.sleep(0.1)
        pytest.fail(f"{name}: ready line #{count} not seen in {READY_TIMEOUT} s:\n{text[-3000:]}")

    def wait_console(self, text: str, count: int = 1) -> str:
        """Wait until the console of battery1 shows ``text`` ``count`` times."""
        deadline = time.monotonic() + READY_TIMEOUT
        log = ""
        while time.monotonic() < deadline:
            log = run(self.driver.get_console_output(self.spec("battery1")))
            if log.count(text) >= count:
                return log
            time.sleep(0.2)
        pytest.fail(f"{text!r} not seen {count} times on the console:\n{log[-3000:]}")

    def processes(self) -> list[str]:
        """QEMU processes of this host's data dir still alive."""
        if self.data_dir is None:
            return []
        out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True,
                             text=True).stdout
        return [ln for ln in out.splitlines() if str(self.data_dir) in ln]


@pytest.fixture(scope="module", params=["fake", "qemu"])
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    if request.param == "fake":
        yield Host("fake", FakeDriver(f"battery-{uuidlib.uuid4().hex[:6]}"))
        return
    reason = _qemu_skip_reason()
    if reason:
        pytest.skip(reason)
    from onestack.drivers.hypervisor.qemu import QemuDriver
    from onestack.guestimage import build_guest_image

    guest = build_guest_image()
    data_dir = Path(tempfile.mkdtemp(prefix="onestack-battery-"))
    driver = QemuDriver("battery", data_dir=data_dir, soft_reboot_timeout=30.0)
    h = Host("qemu", driver, data_dir, guest)
    run(driver.init_host())
    try:
        yield h
    finally:
        for uuid in run(driver.list_instances()):
            run(driver.destroy({"uuid": uuid}))
        for line in h.processes():  # belt and braces: nothing may outlive the test
            os.kill(int(line.split()[0]), 9)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_available_resource(host: Host) -> None:
    res = run(host.driver.get_available_resource())
    assert isinstance(res, HostResources)
    assert res.vcpus >= 1 and res.memory_mb > 0 and res.local_gb > 0
    if host.kind == "qemu":
        assert res.hypervisor_type == "QEMU"
        assert res.cpu_info["accel"] in ("kvm", "tcg")
        assert res.vcpus == os.cpu_count()


def test_unknown_instance(host: Host) -> None:
    ghost = {"uuid": str(uuidlib.uuid4())}
    for op in ("power_off", "power_on", "get_info"):
        with pytest.raises(InstanceNotFound):
            run(getattr(host.driver, op)(ghost))
    with pytest.raises(InstanceNotFound):
        run(host.driver.reboot(ghost, True))
    run(host.driver.destroy(ghost))  # idempotent: unknown is fine


def test_spawn_running_and_console(host: Host) -> None:
    spec = host.spec("battery1")
    run(host.driver.spawn(spec))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING
    assert spec["uuid"] in run(host.driver.list_instances())
    if host.kind == "qemu":
        log = host.wait_ready("battery1")
        assert f"battery-user-data: battery1 {host.nonce}" in log, log[-3000:]
        assert "config drive found" in log

    async def vnc_banner() -> tuple[dict[str, Any], bytes]:
        # One loop for the fake driver's console server, the connection and its cleanup.
        vnc = await host.driver.get_vnc_console(spec)
        reader, writer = await asyncio.open_connection(vnc["host"], vnc["port"])
        try:
            return vnc, await asyncio.wait_for(reader.readexactly(12), 30)
        finally:
            writer.close()
            await host.driver.cleanup_host()

    assert host.driver.capabilities.supports_remote_console
    vnc, banner = run(vnc_banner())
    assert vnc["host"] == "127.0.0.1" and banner == b"RFB 003.008\n"
    if host.kind == "qemu":
        assert 5900 <= vnc["port"] < 6900


def test_diagnostics(host: Host) -> None:
    """Nova's 2.48 fields; the driver name is one of Nova's (clients validate the enum)."""
    spec = host.spec("battery1")
    diag = run(host.driver.get_diagnostics(spec))
    assert diag["driver"] == "libvirt" and diag["state"] == "running"
    assert diag["num_cpus"] == spec["flavor"]["vcpus"]
    if host.kind == "qemu":
        assert diag["hypervisor"] in ("kvm", "qemu")
        assert diag["hypervisor"] == ("kvm" if host.driver.accel == "kvm" else "qemu")
        assert diag["memory_details"]["used"] > 0 and diag["uptime"] >= 0
        # The guest booted, so its vCPU thread has run and its root disk has been read.
        assert [c["id"] for c in diag["cpu_details"]] == list(range(diag["num_cpus"]))
        assert all(c["time"] and c["time"] > 0 for c in diag["cpu_details"])
        assert diag["num_disks"] == len(diag["disk_details"]) >= 2  # root + config drive
        assert diag["disk_details"][0]["read_bytes"] > 0
        assert diag["disk_details"][0]["errors_count"] == 0


def _volume_file(host: Host, name: str) -> Path:
    base = host.data_dir if host.data_dir is not None else Path(tempfile.gettempdir())
    path = base / f"vol-{name}-{host.nonce}"
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)
    return path


def test_attach_detach_volume(host: Host) -> None:
    """A volume's disk hot-plugged into the running guest (the guest's kernel sees a new
    virtio disk), kept across a restart, then hot-unplugged (the guest lets go of it)."""
    spec = host.spec("battery1")
    path = _volume_file(host, "a")
    vol = {"volume_id": str(uuidlib.uuid4()), "device": "/dev/vdb", "mode": "rw",
           "connection_info": {"driver_volume_type": "file",
                               "data": {"path": str(path), "format": "raw"}}}
    try:
        disks = run(host.driver.get_diagnostics(spec))["num_disks"]
        run(host.driver.attach_volume(spec, vol))
        run(host.driver.attach_volume(spec, vol))  # again: nothing changes
        # A snapshot of the volume holds the guest's writes meanwhile.
        assert run(host.driver.pause_volume_io(spec, vol)) is True
        assert run(host.driver.get_info(spec)) == PowerState.PAUSED
        run(host.driver.resume_volume_io(spec, vol))
        assert run(host.driver.get_info(spec)) == PowerState.RUNNING
        if host.kind == "fake":
            run(host.driver.extend_volume(spec, vol, 1))
        assert run(host.driver.get_diagnostics(spec))["num_disks"] == disks + 1
        serial = vol["volume_id"][:20]
        if host.kind == "qemu":  # the guest sees the disk, by its serial
            host.wait_console(f"(serial {serial}, {64 << 20} bytes)")
            # The volume grows: the guest is told (block_resize) and sees the new size.
            with open(path, "r+b") as fh:
                fh.truncate(1 << 30)
            run(host.driver.extend_volume(spec, vol, 1))
            host.wait_console(f"resized ({1 << 30} bytes)")
            # A restart keeps the disk (it is on the command line now).
            run(host.driver.power_off(spec, 30))
            run(host.driver.power_on(spec))
            host.wait_ready("battery1", 2)
            assert run(host.driver.get_diagnostics(spec))["num_disks"] == disks + 1
        if host.kind == "qemu":
            before = run(host.driver.get_console_output(spec)).count("removed")
        run(host.driver.detach_volume(spec, vol))
        if host.kind == "qemu":  # the guest let go of it
            host.wait_console("removed", before + 1)
        run(host.driver.detach_volume(spec, vol))  # not attached: fine
        assert run(host.driver.get_diagnostics(spec))["num_disks"] == disks
        bad = dict(vol, volume_id=str(uuidlib.uuid4()),
                   connection_info={"driver_volume_type": "iscsi", "data": {}})
        if host.kind == "qemu":
            with pytest.raises(DriverError):
                run(host.driver.attach_volume(spec, bad))
            assert run(host.driver.get_diagnostics(spec))["num_disks"] == disks
    finally:
        path.unlink(missing_ok=True)


def test_pause_unpause(host: Host) -> None:
    spec = host.spec("battery1")
    run(host.driver.pause(spec))
    assert run(host.driver.get_info(spec)) == PowerState.PAUSED
    run(host.driver.unpause(spec))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING


def test_suspend_resume(host: Host) -> None:
    spec = host.spec("battery1")
    run(host.driver.suspend(spec))
    # Saved to disk, no guest running: SHUTDOWN, as Nova/libvirt report a suspended server.
    assert run(host.driver.get_info(spec)) == PowerState.SHUTDOWN
    if host.kind == "qemu":
        assert not host.processes(), "a suspended guest has no QEMU process"
        assert host.data_dir is not None
        assert (host.data_dir / "instances" / spec["uuid"] / "suspend.state").is_file()
    run(host.driver.resume(spec))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING


def test_power_off_on(host: Host) -> None:
    spec = host.spec("battery1")
    started = time.monotonic()
    run(host.driver.power_off(spec, 30))  # clean: the guest's acpid powers it off
    assert run(host.driver.get_info(spec)) == PowerState.SHUTDOWN
    if host.kind == "qemu":
        assert time.monotonic() - started < 30, "the ACPI shutdown timed out"
        assert not host.processes()
    run(host.driver.power_on(spec))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING
    host.wait_ready("battery1", 2)


def test_reboot_soft_and_hard(host: Host) -> None:
    spec = host.spec("battery1")
    run(host.driver.reboot(spec, False))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING
    host.wait_ready("battery1", 3)
    run(host.driver.reboot(spec, True))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING
    host.wait_ready("battery1", 4)


def test_rescue_unrescue(host: Host) -> None:
    spec = host.spec("battery1")
    run(host.driver.rescue(spec, {"id": None}))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING
    if host.kind == "qemu":
        state = json.loads((host.data_dir / "instances" / spec["uuid"] / "state.json")
                           .read_text())
        assert state["rescue"] is not None
        host.wait_ready("battery1", 5)
    run(host.driver.unrescue(spec))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING
    if host.kind == "qemu":
        state = json.loads((host.data_dir / "instances" / spec["uuid"] / "state.json")
                           .read_text())
        assert state["rescue"] is None
        host.wait_ready("battery1", 6)
    # Stable device rescue (Nova 2.87 with hw_rescue_bus/hw_rescue_device): the guest's
    # disks keep their places, the rescue disk is added on the bus the image names.
    image = dict(spec["image"], properties={**(spec["image"].get("properties") or {}),
                                            "hw_rescue_bus": "scsi",
                                            "hw_rescue_device": "disk"})
    run(host.driver.rescue(spec, image))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING
    if host.kind == "qemu":
        d = host.data_dir / "instances" / spec["uuid"]
        state = json.loads((d / "state.json").read_text())
        assert state["rescue"]["stable"] == {"bus": "scsi", "device": "disk"}
        argv = (Path("/proc") / (d / "qemu.pid").read_text().strip() / "cmdline"
                ).read_bytes().split(b"\0")
        devices = [a.decode() for a in argv if a.startswith((b"virtio-blk", b"scsi-"))]
        assert devices[0].startswith("virtio-blk-pci,drive=disk0")
        assert "scsi-hd,bus=rescue-scsi.0,drive=rescue" in devices
        host.wait_ready("battery1", 7)
    run(host.driver.unrescue(spec))
    assert run(host.driver.get_info(spec)) == PowerState.RUNNING


def test_snapshot_is_bootable(host: Host) -> None:
    spec = host.spec("battery1")
    path = run(host.driver.snapshot(spec))
    try:
        assert os.path.getsize(path) > 0
        if host.kind != "qemu":
            return
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", path],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["format"] == "qcow2" and "backing-filename" not in info
        assert run(host.driver.get_info(spec)) == PowerState.RUNNING  # resumed after copy
        # Boot a second guest from the snapshot as its root disk.
        clone = host.spec("battery2")
        clone["image"] = dict(clone["image"], id="snap", path=path, disk_format="qcow2")
        run(host.driver.spawn(clone))
        assert run(host.driver.get_info(clone)) == PowerState.RUNNING
        host.wait_ready("battery2")
        run(host.driver.destroy(clone))
    finally:
        os.unlink(path)


def test_list_and_destroy_leave_nothing(host: Host) -> None:
    spec = host.spec("battery1")
    assert spec["uuid"] in run(host.driver.list_instances())
    run(host.driver.destroy(spec))
    run(host.driver.destroy(spec))  # idempotent
    assert spec["uuid"] not in run(host.driver.list_instances())
    with pytest.raises(InstanceNotFound):
        run(host.driver.get_info(spec))
    if host.kind == "qemu":
        assert host.data_dir is not None
        assert not host.processes()
        left = [p.name for p in (host.data_dir / "instances").iterdir()
                if not p.name.startswith("_")]
        assert left == []
