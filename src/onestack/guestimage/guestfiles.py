"""The init and configuration files written into the guest: the busybox shell scripts shipped
in ``data/`` (``/init`` and the tools it uses) and the few ``/etc`` files a login needs."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources

#: Guest files shipped in ``data/`` of this package: name -> (path in the guest, mode).
DATA_FILES: dict[str, tuple[str, int]] = {
    "init.sh": ("init", 0o755),
    "jsonq.sh": ("usr/bin/jsonq", 0o755),
    "udhcpc.sh": ("usr/share/onestack-guest/udhcpc.sh", 0o755),
    "power-button.sh": ("etc/acpi/PWRF/00000080", 0o755),
    "sudo.sh": ("usr/bin/sudo", 0o755),
    "curl.sh": ("usr/bin/curl", 0o755),
    "blkid.sh": ("usr/bin/blkid", 0o755),
    "lsblk.sh": ("usr/bin/lsblk", 0o755),
    "mkfs.sh": ("usr/sbin/mkfs", 0o755),
}

#: Files of ``/etc``: path in the guest -> (contents, mode).
ETC_FILES: dict[str, tuple[str, int]] = {
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\nsshd:x:74:74::/var/empty:/bin/false\n", 0o644),
    "etc/shadow": ("root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n", 0o600),
    "etc/group": ("root:x:0:\ntty:x:5:\nsshd:x:74:\n", 0o644),
    "etc/shells": ("/bin/sh\n/bin/ash\n", 0o644),
    "etc/hosts": ("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n", 0o644),
    "etc/hostname": ("onestack\n", 0o644),
    "etc/resolv.conf": ("", 0o644),
    "etc/profile": (
        "export PATH=/sbin:/bin:/usr/sbin:/usr/bin\nexport HOME=/root\nPS1='\\u@\\h:\\w\\$ '\n",
        0o644,
    ),
    "etc/fstab": ("", 0o644),
    # /init boots the system, then execs busybox init for the console shell and shutdown:
    # `poweroff`/`reboot` (and the ACPI power button, via acpid) signal init, which runs the
    # shutdown actions, kills every process and powers off or reboots.
    "etc/inittab": (
        "::respawn:/bin/cttyhack /bin/sh -l\n"
        "::ctrlaltdel:/sbin/reboot\n"
        '::shutdown:/bin/echo "onestack-guest: shutting down"\n'
        "::shutdown:/bin/sync\n",
        0o644,
    ),
    "etc/os-release": (
        'NAME="onestack test guest"\nID=onestack-guest\nPRETTY_NAME="onestack test guest"\n',
        0o644,
    ),
}


def read_data(name: str) -> bytes:
    """The contents of ``data/<name>`` of this package."""
    return resources.files(__package__).joinpath("data", name).read_bytes()


def guest_files() -> Iterator[tuple[str, bytes, int]]:
    """Each file of both tables as (path in the guest, contents, mode)."""
    for path, (text, mode) in ETC_FILES.items():
        yield path, text.encode(), mode
    for name, (guest_path, mode) in DATA_FILES.items():
        yield guest_path, read_data(name), mode
