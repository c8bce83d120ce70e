"""The onestack test guest image: a tiny CirrOS-like Linux built offline from Debian packages.

``build_guest_image()`` returns a :class:`GuestImage` (``kernel``, ``initrd``,
``ready_marker(hostname)``), building it on first use and caching it per version. Command line:
``python -m onestack.guestimage`` or ``tools/build-guest-image``.
"""

from onestack.guestimage.builder import (
    CDROM_MODULES,
    DEFAULT_CMDLINE,
    GUEST_MODULES,
    IMAGE_VERSION,
    GuestImage,
    GuestImageError,
    build_guest_image,
    default_cache_dir,
    default_output_dir,
    image_version,
)

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
