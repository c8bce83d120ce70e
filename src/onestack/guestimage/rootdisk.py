"""The test guest's root disk: a qcow2 image holding an empty FAT file system labelled
:data:`DISK_LABEL`, which the guest's init mounts at ``/disk`` (what the guest writes there
stays on its disk, or on the root volume it was booted from)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

LOG = logging.getLogger(__name__)

#: Label of the test guest's disk file system (exactly 11 characters: FAT pads shorter
#: ones); the guest's init mounts a disk with it at ``/disk``.
DISK_LABEL = "GUESTDISKFS"


def root_disk(path: Path, size_mb: int = 64) -> None:
    """The test guest's root disk at ``path`` (qcow2): a FAT file system labelled
    :data:`DISK_LABEL`, made with the host's busybox (installed by the project's scripts);
    without busybox, an empty disk (the guest then keeps nothing on it)."""
    qemu_img = shutil.which("qemu-img") or "qemu-img"
    busybox = shutil.which("busybox")
    raw = path.with_suffix(".raw")
    try:
        if busybox is None:
            raise OSError("busybox is not installed")
        with open(raw, "wb") as fh:
            fh.truncate(size_mb << 20)
        subprocess.run([busybox, "mkdosfs", "-n", DISK_LABEL, str(raw)], check=True,
                       capture_output=True)
        subprocess.run([qemu_img, "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
                        str(path)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        LOG.warning("the test guest's disk has no file system (%s)", exc)
        subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), f"{size_mb}M"],
                       check=True)
    finally:
        raw.unlink(missing_ok=True)
