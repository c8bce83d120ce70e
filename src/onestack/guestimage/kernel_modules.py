"""The kernel modules of the guest: which it loads, resolving their dependencies from the
kernel package, and the ``lib/modules`` tree (with ``modules.dep``/``modules.alias`` for
busybox ``modprobe`` and the load lists ``/init`` reads) written into the initramfs."""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from onestack.guestimage.cpio import Cpio
from onestack.guestimage.elf import elf_sections
from onestack.guestimage.image import GuestImageError

#: Kernel modules the guest loads at boot (their dependencies are added automatically; any that
#: the Debian kernel has built in are skipped). Order does not matter.
GUEST_MODULES: tuple[str, ...] = (
    # virtio PCI transport, disks and NICs
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    # config drive filesystems: ISO9660 (with Rock Ridge/Joliet) or VFAT
    "isofs",
    "vfat",
    "nls_cp437",  # FAT codepage
    "nls_ascii",  # FAT default iocharset in Debian's kernel
    "nls_utf8",  # Joliet names
    # ACPI power button -> /dev/input/event* -> busybox acpid -> poweroff
    "button",
    "evdev",
)

#: Kernel modules for a CD-ROM config drive on IDE (pc machine) or AHCI/SATA (q35). Probing the
#: ATA ports is slow under TCG, so the guest loads these only when no virtio disk holds the
#: config drive (they are also available to ``modprobe``).
CDROM_MODULES: tuple[str, ...] = ("ata_piix", "ahci", "sr_mod")


def _modinfo(data: bytes) -> dict[str, list[str]]:
    """Return the ``.modinfo`` key/values of a kernel module image."""
    found = [sec for sec in elf_sections(data) if sec[0] == ".modinfo"]
    if not found:
        return {}
    _name, _type, offset, size, _link = found[0]
    info: dict[str, list[str]] = {}
    for item in data[offset : offset + size].split(b"\0"):
        if b"=" in item:
            key, _, value = item.decode(errors="replace").partition("=")
            info.setdefault(key, []).append(value)
    return info


def _load_module_file(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        raise GuestImageError(f"zstd-compressed modules are not supported: {path.name}")
    return data


_MODULE_SIG_MAGIC = b"~Module signature appended~\n"


def _strip_module_signature(data: bytes) -> bytes:
    """Drop the appended module signature (the kernel then skips its costly verification)."""
    if not data.endswith(_MODULE_SIG_MAGIC):
        return data
    info_end = len(data) - len(_MODULE_SIG_MAGIC)
    # struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], sig_len
    _a, _h, _i, signer_len, key_id_len, sig_len = struct.unpack_from(
        ">BBBBB3xI", data, info_end - 12
    )
    return data[: info_end - 12 - sig_len - signer_len - key_id_len]


def _module_name(filename: str) -> str:
    return filename.split(".ko", 1)[0].replace("-", "_")


@dataclass
class _Module:
    name: str
    relpath: str  # relative to lib/modules/<kver>/, always ending in .ko
    data: bytes
    depends: list[str]
    aliases: list[str]


def _resolve_modules(
    moddir: Path, groups: Iterable[Iterable[str]]
) -> tuple[list[list[_Module]], list[str]]:
    """Return (each group's modules in load order, wanted modules that are built in).

    A module needed by several groups is loaded with the first one.
    """
    builtin_file = moddir / "modules.builtin"
    builtin = set()
    if builtin_file.exists():
        builtin = {
            _module_name(PurePosixPath(line.strip()).name)
            for line in builtin_file.read_text().splitlines()
            if line.strip()
        }
    files: dict[str, Path] = {}
    for path in (moddir / "kernel").rglob("*.ko*"):
        files[_module_name(path.name)] = path

    loaded: dict[str, _Module] = {}
    order: list[_Module] = []
    builtin_wanted: list[str] = []
    result: list[list[_Module]] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in loaded or name in stack:
            return
        if name not in files:
            if name in builtin:
                if not stack:
                    builtin_wanted.append(name)
                return
            raise GuestImageError(f"kernel module {name} is neither built in nor in {moddir}")
        path = files[name]
        data = _strip_module_signature(_load_module_file(path))
        info = _modinfo(data)
        deps = [d for v in info.get("depends", []) for d in v.split(",") if d]
        for dep in deps:
            visit(dep, (*stack, name))
        rel = path.relative_to(moddir).as_posix()
        rel = rel[: rel.index(".ko") + 3]
        mod = _Module(name, rel, data, [d.replace("-", "_") for d in deps], info.get("alias", []))
        loaded[name] = mod
        order.append(mod)

    for wanted in groups:
        order = []
        for name in wanted:
            visit(name, ())
        result.append(order)
    return result, builtin_wanted


def add_modules(cpio: Cpio, moddir: Path, kver: str) -> dict[str, object]:
    """Add :data:`GUEST_MODULES` and :data:`CDROM_MODULES` with their dependencies from the
    kernel's module directory *moddir*; returns the manifest details (the modules of each
    group, those built in)."""
    (boot_modules, cdrom_modules), builtin = _resolve_modules(
        moddir, (GUEST_MODULES, CDROM_MODULES)
    )
    modules = boot_modules + cdrom_modules
    for mod in modules:
        cpio.file(f"lib/modules/{kver}/{mod.relpath}", mod.data, 0o644)
    by_name = {m.name: m for m in modules}

    def all_deps(mod: _Module) -> list[str]:
        out: list[str] = []
        for dep in mod.depends:
            if dep in by_name:
                for sub in [*all_deps(by_name[dep]), by_name[dep].relpath]:
                    if sub not in out:
                        out.append(sub)
        return out

    dep_lines = [f"{m.relpath}: {' '.join(reversed(all_deps(m)))}".rstrip() for m in modules]
    alias_lines = [f"alias {a} {m.name}" for m in modules for a in m.aliases]
    cpio.file(f"lib/modules/{kver}/modules.dep", ("\n".join(dep_lines) + "\n").encode())
    cpio.file(f"lib/modules/{kver}/modules.alias", ("\n".join(alias_lines) + "\n").encode())
    for list_name, group in (("modules.boot", boot_modules), ("modules.cdrom", cdrom_modules)):
        load_list = "".join(f"{m.relpath}\n" for m in group)
        cpio.file(f"usr/share/onestack-guest/{list_name}", load_list.encode())
    if (moddir / "modules.builtin").exists():
        builtin_list = (moddir / "modules.builtin").read_bytes()
        cpio.file(f"lib/modules/{kver}/modules.builtin", builtin_list)
    return {
        "modules": [m.name for m in boot_modules],
        "modules_cdrom": [m.name for m in cdrom_modules],
        "modules_builtin": builtin,
    }
