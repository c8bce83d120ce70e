"""The onestack test guest image: a tiny CirrOS-like Linux built offline from Debian packages.

``build_guest_image()`` returns a :class:`GuestImage` (``kernel``, ``initrd``,
``ready_marker(hostname)``), building it on first use and caching it per version. Command line:
``python -m onestack.guestimage`` or ``tools/build-guest-image``.

The guest is a Debian kernel (``linux-image-amd64``) plus a small gzip'd initramfs holding
``busybox-static``, ``dropbear`` (with the shared libraries it needs), the few kernel modules a
QEMU guest needs, and a busybox shell ``/init`` (``data/init.sh``). Everything comes from
``apt-get download`` of the host's Debian repositories into a cache, extracted with
``dpkg-deb -x``; the initramfs is written by pure Python (newc cpio + gzip).

Boot it directly, e.g. under TCG with no network::

    qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 256 -nodefaults -display none \\
        -nic none -serial file:console.log -bios /usr/share/qemu/qboot.rom \\
        -kernel vmlinux -initrd initrd.img -append "console=ttyS0 quiet ..." \\
        -drive file=config.iso,if=none,id=cfg,format=raw,readonly=on \\
        -device virtio-blk-pci,drive=cfg

(:meth:`GuestImage.qemu_boot_args` gives the ``-kernel/-initrd/-append`` part.) The guest reads
its config drive (label ``config-2``: virtio disk, IDE or SATA CD-ROM) or else the metadata
service, sets the hostname, installs ``public_keys`` for root, starts dropbear on port 22, runs a
``#!`` user-data script and prints ``onestack-guest: <hostname> ready`` on the serial console
(:meth:`GuestImage.ready_marker`). ``poweroff`` and the ACPI power button power it off.

Modules: ``builder`` (the build and its cache lock), ``cache`` (locations and versions),
``packages`` (the Debian packages), ``rootfs`` (the initramfs's contents), ``kernel_modules``,
``guestfiles`` (init and ``/etc`` files), ``cpio`` (the archive writer), ``elf``, ``pvh``
(the uncompressed kernel) and ``image`` (:class:`GuestImage`).
"""

from onestack.guestimage.builder import build_guest_image
from onestack.guestimage.cache import (
    IMAGE_VERSION,
    default_cache_dir,
    default_output_dir,
    image_version,
)
from onestack.guestimage.image import DEFAULT_CMDLINE, GuestImage, GuestImageError
from onestack.guestimage.kernel_modules import CDROM_MODULES, GUEST_MODULES

__all__ = [
    "CDROM_MODULES",
    "DEFAULT_CMDLINE",
    "GUEST_MODULES",
    "IMAGE_VERSION",
    "GuestImage",
    "GuestImageError",
    "build_guest_image",
    "default_cache_dir",
    "default_output_dir",
    "image_version",
]
