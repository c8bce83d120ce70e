"""Instance specs that boot the onestack test guest (``onestack.guestimage``) on a driver.

Used by the driver test battery, the QEMU restart test and ``bench/qemu_bench.py``: the guest is
an AKI/ARI-style image (kernel + initramfs, PVH kernel when available) with an empty root disk,
the guest image's kernel command line in ``os_command_line``, and a config drive.
"""

from __future__ import annotations

import base64
import uuid as uuidlib
from typing import Any

from onestack.guestimage import GuestImage

#: The flavor ``onestack up`` creates for the test guest.
GUEST_FLAVOR = {"id": "m1.guest", "name": "m1.guest", "vcpus": 1, "memory_mb": 256,
                "root_gb": 1, "ephemeral_gb": 0, "swap": 0, "extra_specs": {}}


def guest_image_dict(guest: GuestImage) -> dict[str, Any]:
    """The spec's ``image`` for the test guest (kernel/ramdisk already resolved)."""
    kernel = guest.pvh_kernel or guest.kernel
    return {"id": f"onestack-guest-{guest.version}", "path": None,
            "kernel_path": str(kernel), "ramdisk_path": str(guest.initrd),
            "properties": {"kernel_id": f"onestack-guest-kernel-{guest.version}",
                           "ramdisk_id": f"onestack-guest-ramdisk-{guest.version}",
                           "os_command_line": guest.cmdline}}


def guest_spec(guest: GuestImage, name: str, *, uuid: str | None = None,
               user_data: str | None = None, networks: list[dict[str, Any]] | None = None,
               config_drive: bool = True, key_data: str | None = None) -> dict[str, Any]:
    """A driver ``InstanceSpec`` booting the test guest named ``name``."""
    return {
        "uuid": uuid or str(uuidlib.uuid4()),
        "name": name,
        "hostname": name,
        "flavor": dict(GUEST_FLAVOR),
        "image": guest_image_dict(guest),
        "key_data": key_data,
        "key_name": "test" if key_data else None,
        "user_data": base64.b64encode(user_data.encode()).decode() if user_data else None,
        "metadata": {},
        "admin_pass": None,
        "networks": list(networks or []),
        "config_drive": config_drive,
    }
