"""``onestack up`` with real guests: register the test guest image and a flavor that fits it.

When this host's compute driver is QEMU, the cached test guest (``onestack.guestimage``, built
once) is registered in the image service as three public images, AKI/ARI style (what boots
fastest: direct kernel boot, no bootloader, no root file system to read):

* ``onestack-guest-kernel`` (``aki``): the kernel (uncompressed PVH ``vmlinux`` when built);
* ``onestack-guest-ramdisk`` (``ari``): the initramfs holding the whole guest;
* ``onestack-guest`` (``qcow2``, 64 MiB): the root disk, with ``kernel_id``,
  ``ramdisk_id`` and ``os_command_line`` properties; it holds an empty FAT file system
  labelled ``GUESTDISKFS`` that the guest mounts at ``/disk`` (what it writes there stays on
  its disk, or on the root volume it was booted from; the rest of its file system lives in
  memory);

and the flavor ``m1.guest`` (1 vCPU, 256 MB, 1 GB) is created. ``openstack server create
--image onestack-guest --flavor m1.guest --config-drive true vm1`` then boots in seconds.
Everything is idempotent (names are checked first); failures are logged, never fatal.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from onestack.common.context import RequestContext

LOG = logging.getLogger(__name__)

GUEST_IMAGE_NAME = "onestack-guest"
GUEST_FLAVOR = {"id": "m1.guest", "name": "m1.guest", "ram": 256, "vcpus": 1, "disk": 1,
                "description": "fits the onestack test guest"}


def _upload(images: Any, ctx: RequestContext, body: dict[str, Any], path: Path) -> str:
    from onestack.image.setup import create_from_file

    return create_from_file(images, ctx, body, path)


def create_guest_flavor(compute: Any) -> None:
    """The flavor ``m1.guest`` (idempotent)."""
    if compute is not None:
        try:
            compute.create_flavor(dict(GUEST_FLAVOR))
        except Exception as exc:  # noqa: BLE001 - exists already (Conflict) or no compute
            LOG.debug("flavor m1.guest not created: %s", exc)


def register_guest(images: Any, compute: Any, owner: str | None,
                   cache_root: Path | None = None, progress: Any = None,
                   aliases: tuple[str, ...] = ()) -> str | None:
    """Register the guest images and flavor (see the module docstring); the image id or None
    (already registered, or the image could not be built: logged). ``aliases``: more names
    the root disk is registered under (same kernel, ramdisk and properties)."""
    create_guest_flavor(compute)
    if images is None or images.has_images(GUEST_IMAGE_NAME):
        return None
    try:
        from onestack.guestimage import build_guest_image

        guest = build_guest_image(cache_root=cache_root, progress=progress)
    except Exception as exc:  # noqa: BLE001 - e.g. not Debian, no network for apt
        LOG.warning("the test guest image could not be built (%s); no default image", exc)
        return None
    ctx = RequestContext.admin()
    ctx.project_id = owner
    common = {"visibility": "public", "owner": owner}
    kernel = guest.pvh_kernel or guest.kernel
    kernel_id = _upload(images, ctx, {"name": f"{GUEST_IMAGE_NAME}-kernel", "disk_format": "aki",
                                      "container_format": "aki", **common}, kernel)
    ramdisk_id = _upload(images, ctx, {"name": f"{GUEST_IMAGE_NAME}-ramdisk",
                                       "disk_format": "ari", "container_format": "ari",
                                       **common}, guest.initrd)
    with tempfile.TemporaryDirectory(prefix="onestack-guest-") as tmp:
        disk = Path(tmp) / "root.qcow2"
        root_disk(disk)
        props = {"disk_format": "qcow2", "container_format": "bare",
                 "kernel_id": kernel_id, "ramdisk_id": ramdisk_id,
                 "os_command_line": guest.cmdline, "hw_qemu_guest_agent": "no",
                 "onestack_guest_version": guest.version, **common}
        for alias in aliases:
            if not images.has_images(alias):
                _upload(images, ctx, {"name": alias, **props}, disk)
        image_id = _upload(images, ctx, {"name": GUEST_IMAGE_NAME, **props}, disk)
    LOG.info("registered the test guest as image %s (kernel %s, ramdisk %s)", image_id,
             kernel_id, ramdisk_id)
    return image_id


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


def real_guests(agents: Any) -> bool:
    """Whether an agent of this process runs real (QEMU) guests."""
    drivers = [a.driver for a in getattr(agents, "agents", None) or []]
    return any(d.hypervisor_type == "QEMU" for d in drivers)
