"""A guest's QEMU command line, built from its ``state.json`` alone (the driver gives only
the binary, the accelerator, the paths and the VNC display): machine and CPU, the monitor,
serial console and VNC, direct kernel boot, the local disks, the stable-device rescue disk on
the bus the rescue image names, the config drive, then the NICs (``nics.py``) and volumes
(``disks.py``)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from onestack.drivers.hypervisor.base import DriverError
from onestack.drivers.hypervisor.qemu.disks import GuestDisks
from onestack.drivers.hypervisor.qemu.host import DEFAULT_KERNEL_CMDLINE, QBOOT, SANDBOX
from onestack.drivers.hypervisor.qemu.nics import LEGACY_SLOTS, GuestNics, ports_of

#: ``hw_rescue_bus`` → the QEMU devices of a rescue disk (``{drive}``: its drive id);
#: ``ide``/``sata`` use the AHCI controller q35 (and pc's IDE) already has.
_RESCUE_BUS = {
    "virtio": ([], "virtio-blk-pci,drive={drive}", None),
    "scsi": (["-device", "virtio-scsi-pci,id=rescue-scsi"],
             "scsi-{kind},bus=rescue-scsi.0,drive={drive}", ("hd", "cd")),
    "usb": (["-device", "qemu-xhci,id=rescue-usb",
             "-device", "usb-bot,id=rescue-bot,bus=rescue-usb.0"],
            "scsi-{kind},bus=rescue-bot.0,drive={drive}", ("hd", "cd")),
    "ide": ([], "ide-{kind},bus=ide.1,drive={drive}", ("hd", "cd")),
    "sata": ([], "ide-{kind},bus=ide.1,drive={drive}", ("hd", "cd")),
}


def rescue_device_argv(path: Path, bus: str, device: str) -> list[str]:
    """QEMU arguments of a stable-device rescue disk (``hw_rescue_bus`` ``bus``,
    ``hw_rescue_device`` ``disk`` or ``cdrom``); ``DriverError`` for what this driver
    cannot attach (Nova's "unsupported rescue bus/device")."""
    if bus not in _RESCUE_BUS:
        raise DriverError(f"Unsupported rescue bus {bus!r}")
    if device not in ("disk", "cdrom"):
        raise DriverError(f"Unsupported rescue device {device!r}")
    if device == "cdrom" and bus == "virtio":
        raise DriverError("A virtio rescue bus cannot carry a cdrom")
    extra, dev, kinds = _RESCUE_BUS[bus]
    kind = (kinds[1] if device == "cdrom" else kinds[0]) if kinds else ""

    cd = ",media=cdrom,readonly=on" if device == "cdrom" else ""
    return ["-drive", f"file={path},if=none,id=rescue,format=qcow2{cd}", *extra,
            "-device", dev.format(drive="rescue", kind=kind)]


def guest_argv(binary: str, accel: str, uuid: str, instance_dir: Path, qmp_sock: str,
               state: dict[str, Any], vnc_display: int = 0,
               incoming: bool = False) -> list[str]:
    """The command line of guest ``uuid`` from its ``state`` (``incoming``: it waits for a
    migration stream, the restore of a suspended guest)."""
    spec = state["spec"]
    d = instance_dir
    flavor = spec.get("flavor") or {}
    image = spec.get("image") or {}
    props = image.get("properties") or {}
    boot = state.get("boot") or {}
    rescue = state.get("rescue")
    if rescue is not None:
        boot = rescue.get("boot") or {}
    vcpus = max(1, int(flavor.get("vcpus") or 1))
    memory = max(64, int(flavor.get("memory_mb") or 256))
    machine = str(props.get("hw_machine_type") or "q35")
    name = re.sub(r"[^0-9A-Za-z_.-]", "_", str(spec.get("name") or uuid))[:64]
    argv = [
        binary, "-name", f"guest={name}", "-uuid", uuid,
        "-machine", f"{machine},accel={accel}",
        "-cpu", "host" if accel == "kvm" else "max",
        "-m", str(memory), "-smp", str(vcpus),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-sandbox", SANDBOX,
        "-chardev", f"socket,id=qmp,path={qmp_sock},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev", f"file,id=serial0,path={d / 'console.log'},append=on",
        "-serial", "chardev:serial0",
        "-vnc", f"127.0.0.1:{vnc_display}",
        "-pidfile", os.fspath(d / "qemu.pid"),
        "-rtc", "base=utc",
        "-msg", "timestamp=on",
    ]
    if boot.get("kernel"):
        if QBOOT.exists():
            argv += ["-bios", os.fspath(QBOOT)]
        argv += ["-kernel", boot["kernel"], "-append", boot.get("cmdline") or
                 DEFAULT_KERNEL_CMDLINE]
        if boot.get("ramdisk"):
            argv += ["-initrd", boot["ramdisk"]]
    volumes = list(spec.get("block_devices") or [])
    root = [b for b in volumes if b.get("boot_index") == 0]
    # Stable device rescue (the rescue image names hw_rescue_bus/device): the guest's
    # disks keep their places and the rescue disk comes last; otherwise the rescue disk
    # is first and the guest's own disks follow.
    stable = (rescue or {}).get("stable")
    legacy = rescue is not None and not stable
    if root and not legacy:  # volume-backed: the root volume is the first disk
        argv += GuestDisks.argv(root, {})
    disks = [d / "disk.rescue", d / "disk"] if legacy else [d / "disk"]
    disks += [d / "disk.local", d / "disk.swap"]
    for n, disk in enumerate(disks):
        if not disk.exists():
            continue
        argv += ["-drive", f"file={disk},if=none,id=disk{n},format=qcow2,cache=writeback,"
                           "discard=unmap",
                 "-device", f"virtio-blk-pci,drive=disk{n}"
                 + (",bootindex=1" if n == 0 and not stable else "")]
    if stable and (d / "disk.rescue").exists():
        argv += rescue_device_argv(d / "disk.rescue", stable["bus"], stable["device"])
    if (d / "config.iso").exists():
        argv += ["-drive", f"file={d / 'config.iso'},if=none,id=config,format=raw,"
                           "readonly=on",
                 "-device", "virtio-blk-pci,drive=config"]
    argv += GuestNics.argv(ports_of(spec), machine, state.get("nic_slots") or {},
                           int(state.get("root_ports") or LEGACY_SLOTS))
    argv += GuestDisks.argv([b for b in volumes if b.get("boot_index") != 0 or legacy],
                            state.get("disk_slots") or {})
    if incoming:
        argv += ["-incoming", "defer"]
    return argv
