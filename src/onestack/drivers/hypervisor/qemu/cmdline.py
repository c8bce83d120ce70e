"""Pieces of a guest's QEMU command line that do not depend on the driver's state: the
stable-device rescue disk on the bus the rescue image names."""

from __future__ import annotations

from pathlib import Path

from onestack.drivers.hypervisor.base import DriverError

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
