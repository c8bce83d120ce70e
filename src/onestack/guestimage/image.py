"""A built guest image: :class:`GuestImage`, reading one back from its directory, and the
error every step of a build raises."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

#: Kernel command line for direct kernel boot: serial console, quiet kernel log, and none of the
#: boot-time self-tests and tracing set-up the guest has no use for (together ~0.7 s under TCG).
DEFAULT_CMDLINE = (
    "console=ttyS0 quiet cryptomgr.notests initcall_blacklist=crypto_kdf108_init,init_kprobe_trace"
)


class GuestImageError(RuntimeError):
    """The guest image could not be built (missing tool, package or file)."""


@dataclass(frozen=True)
class GuestImage:
    """A built guest: kernel and initramfs paths plus what went into them.

    ``kernel`` is Debian's compressed bzImage (``vmlinuz``), bootable by anything.
    ``pvh_kernel`` is the same kernel uncompressed (``vmlinux``, ELF with a PVH entry point):
    QEMU boots it with ``-kernel`` seconds faster under TCG; None if it could not be made.
    """

    version: str
    directory: Path
    kernel: Path
    initrd: Path
    pvh_kernel: Path | None = None
    cmdline: str = DEFAULT_CMDLINE
    manifest: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def ready_marker(hostname: str) -> str:
        """Return the console line the guest prints once it is fully up."""
        return f"onestack-guest: {hostname} ready"

    def qemu_boot_args(self, cmdline: str | None = None, pvh: bool = True) -> list[str]:
        """Return the QEMU arguments for direct kernel boot of this image.

        Args:
            cmdline: kernel command line (default :attr:`cmdline`); keep ``console=ttyS0``.
            pvh: boot the uncompressed PVH kernel when there is one (faster under TCG).
        """
        kernel = self.pvh_kernel if pvh and self.pvh_kernel is not None else self.kernel
        return [
            "-kernel",
            str(kernel),
            "-initrd",
            str(self.initrd),
            "-append",
            cmdline if cmdline is not None else self.cmdline,
        ]


def load_built(out_dir: Path, version: str) -> GuestImage | None:
    """The image of *version* built in *out_dir*, or None if it holds no complete one (its
    ``manifest.json`` is written last)."""
    manifest_path = out_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    kernel, initrd, pvh = out_dir / "vmlinuz", out_dir / "initrd.img", out_dir / "vmlinux"
    if manifest.get("version") != version or not (kernel.is_file() and initrd.is_file()):
        return None
    return GuestImage(
        version=version,
        directory=out_dir,
        kernel=kernel,
        initrd=initrd,
        pvh_kernel=pvh if manifest.get("pvh_kernel") and pvh.is_file() else None,
        cmdline=str(manifest.get("cmdline", DEFAULT_CMDLINE)),
        manifest=manifest,
    )
