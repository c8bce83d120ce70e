"""The local disks and boot files of QEMU guests, made from images.

Image files are cached host-wide in ``DATA/instances/_base`` (``<image id>-<kind>-<key>``,
the key from the image's checksum; hard-linked when the file system allows, read-only). A
guest's root disk is a qcow2 overlay on its image's cached base (raw or qcow2), grown to the
flavor's ``root_gb``; an image with no data (kernel/ramdisk only) gets an empty one. The
flavor's ephemeral and swap disks are thin, unformatted qcow2 files. AKI/ARI-style images
boot their cached kernel and ramdisk directly. Files the agent left out of a spec's image are
found in the local image store (``DATA/images/<id>``, the file store of an all-in-one host).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

from onestack.drivers.hypervisor.base import DriverError
from onestack.drivers.hypervisor.qemu.host import DEFAULT_KERNEL_CMDLINE, QEMU_IMG, GiB, run


class GuestImages:
    """Makes guests' local disks and boot files from images (see the module docstring);
    blocking: callers run it in a thread."""

    def __init__(self, data_dir: Path, base_dir: Path) -> None:
        self.data_dir = data_dir
        self.base_dir = base_dir
        self._base_lock = threading.Lock()

    # ------------------------------------------------------------------ images
    def resolve(self, image: dict[str, Any]) -> dict[str, Any]:
        """Fill ``path``/``kernel_path``/``ramdisk_path`` the agent left out from the local
        image store (``DATA/images/<id>``, the file store of an all-in-one host)."""
        image = dict(image)
        props = image.get("properties") or {}
        store = self.data_dir / "images"
        if not image.get("path") and image.get("id") and (store / str(image["id"])).is_file():
            image["path"] = os.fspath(store / str(image["id"]))
        for key, prop in (("kernel_path", "kernel_id"), ("ramdisk_path", "ramdisk_id")):
            ref = props.get(prop)
            if not image.get(key) and ref and (store / str(ref)).is_file():
                image[key] = os.fspath(store / str(ref))
        return image

    def cache_file(self, src: Path, image: dict[str, Any], kind: str) -> Path:
        """A host-wide cached copy of an image file (keyed by image id + checksum)."""
        if not src.is_file():
            raise DriverError(f"image file {src} does not exist")
        st = src.stat()
        checksum = str(image.get("checksum") or image.get("os_hash_value")
                       or f"{st.st_size}-{int(st.st_mtime)}")
        ident = re.sub(r"[^0-9A-Za-z-]", "", str(image.get("id") or src.name))[:64] or "image"
        key = hashlib.sha256(f"{kind}:{checksum}".encode()).hexdigest()[:16]
        dest = self.base_dir / f"{ident}-{kind}-{key}"
        with self._base_lock:
            self.base_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock_path = self.base_dir / f".{dest.name}.lock"
            with open(lock_path, "w") as lock_fh:
                fcntl.flock(lock_fh, fcntl.LOCK_EX)
                if not dest.exists():
                    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}")
                    try:
                        os.link(src, tmp)
                    except OSError:
                        shutil.copyfile(src, tmp)
                    os.chmod(tmp, 0o400)
                    os.replace(tmp, dest)
        return dest

    def boot_files(self, image: dict[str, Any]) -> dict[str, str]:
        """The cached ``kernel``/``ramdisk`` of an AKI/ARI-style image and its kernel
        ``cmdline`` (empty for an image that boots from its disk)."""
        props = image.get("properties") or {}
        out: dict[str, str] = {}
        for kind, key, prop in (("kernel", "kernel_path", "kernel_id"),
                                ("ramdisk", "ramdisk_path", "ramdisk_id")):
            path = image.get(key)
            if path:
                cached = self.cache_file(Path(path), {"id": props.get(prop) or kind,
                                                      "checksum": image.get(f"{kind}_checksum")},
                                         kind)
                out[kind] = os.fspath(cached)
            elif props.get(prop):
                raise DriverError(f"image {image.get('id')} needs its {prop} "
                                  f"({props[prop]}) but the spec has no image.{key}")
        if out.get("ramdisk") and not out.get("kernel"):
            raise DriverError("a ramdisk needs a kernel")
        if out.get("kernel"):
            out["cmdline"] = str(props.get("os_command_line") or DEFAULT_KERNEL_CMDLINE)
        return out

    # ------------------------------------------------------------------ disks
    @staticmethod
    def image_info(path: Path) -> dict[str, Any]:
        """``qemu-img info`` of a disk file."""
        info: dict[str, Any] = json.loads(
            run([QEMU_IMG, "info", "-U", "--output=json", os.fspath(path)]))
        return info

    def make_root_disk(self, disk: Path, image: dict[str, Any], root_gb: int) -> None:
        path = image.get("path")
        if path:
            base = self.cache_file(Path(path), image, "disk")
            info = self.image_info(base)
            fmt = str(info.get("format") or image.get("disk_format") or "raw")
            if fmt not in ("raw", "qcow2"):
                raise DriverError(f"disk format {fmt} is not supported (raw, qcow2)")
            run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", os.fspath(base), "-F", fmt,
                 os.fspath(disk)])
            if root_gb and root_gb * GiB > int(info.get("virtual-size") or 0):
                run([QEMU_IMG, "resize", "-q", os.fspath(disk), f"{root_gb}G"])
        else:
            # Kernel/ramdisk-only image (e.g. the test guest): an empty root disk.
            size = f"{root_gb}G" if root_gb else "64M"
            run([QEMU_IMG, "create", "-q", "-f", "qcow2", os.fspath(disk), size])
        os.chmod(disk, 0o600)

    def grow_root_disk(self, disk: Path, root_gb: int) -> None:
        """Grow ``disk`` to ``root_gb`` GiB (a qcow2 never shrinks)."""
        if root_gb * GiB > int(self.image_info(disk).get("virtual-size") or 0):
            run([QEMU_IMG, "resize", "-q", os.fspath(disk), f"{root_gb}G"])

    def make_flavor_disks(self, instance_dir: Path, flavor: dict[str, Any]) -> None:
        """The flavor's ephemeral (``disk.local``, ``ephemeral_gb``) and swap
        (``disk.swap``, ``swap`` MiB) disks: thin qcow2, unformatted, made or grown to the
        flavor's sizes (never shrunk), as Nova's libvirt driver attaches them after the
        root disk."""
        for name, size in (("disk.local", int(flavor.get("ephemeral_gb") or 0) * GiB),
                           ("disk.swap", int(flavor.get("swap") or 0) << 20)):
            disk = instance_dir / name
            if size <= 0:
                continue
            if not disk.exists():
                run([QEMU_IMG, "create", "-q", "-f", "qcow2", os.fspath(disk), str(size)])
                os.chmod(disk, 0o600)
            elif size > int(self.image_info(disk).get("virtual-size") or 0):
                run([QEMU_IMG, "resize", "-q", os.fspath(disk), str(size)])
