"""Build the onestack test guest: a tiny CirrOS-like Linux made from Debian packages.

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

Outputs are cached per :func:`image_version` (:data:`IMAGE_VERSION` plus a digest of this module
and the guest scripts) in ``<cache>/<version>/``, where ``<cache>`` is
``$ONESTACK_GUEST_IMAGE_DIR`` or else
``${ONESTACK_DATA_DIR:-${XDG_DATA_HOME:-~/.local/share}/onestack}/cache/guest-image``; the
downloaded .debs are kept in ``<cache>/debs/``.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

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

#: Bump to force every cached image to be rebuilt (the input digest covers most changes).
IMAGE_VERSION = "1"

#: Kernel command line for direct kernel boot: serial console, quiet kernel log, and none of the
#: boot-time self-tests and tracing set-up the guest has no use for (together ~0.7 s under TCG).
DEFAULT_CMDLINE = (
    "console=ttyS0 quiet cryptomgr.notests initcall_blacklist=crypto_kdf108_init,init_kprobe_trace"
)

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

#: Debian packages the image is made of (the kernel metapackage is resolved to its image).
KERNEL_METAPACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
DROPBEAR_PACKAGE = "dropbear-bin"

#: dropbear-bin programs copied into the guest (with their shared libraries).
DROPBEAR_PROGRAMS = (
    "usr/sbin/dropbear",
    "usr/bin/dropbearkey",
    "usr/bin/dbclient",
    "usr/bin/dropbearconvert",
)

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

_LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")
_GUEST_LIB_DIR = "lib/x86_64-linux-gnu"
_EPOCH = 1_700_000_000  # fixed mtime for reproducible archives


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


# --------------------------------------------------------------------------------------------
# locations and versioning


def _data_dir() -> Path:
    """The onestack data directory (same rule as ``onestack.config.default_data_dir``)."""
    env = os.environ.get("ONESTACK_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "onestack"


def default_cache_dir() -> Path:
    """Return the guest-image cache root (outputs per version, plus downloaded .debs).

    ``$ONESTACK_GUEST_IMAGE_DIR`` if set (lets tests that give each cloud its own temporary
    data directory share one image), else ``<data dir>/cache/guest-image``.
    """
    env = os.environ.get("ONESTACK_GUEST_IMAGE_DIR")
    if env:
        return Path(env).expanduser()
    return _data_dir() / "cache" / "guest-image"


def _read_data(name: str) -> bytes:
    return resources.files(__package__).joinpath("data", name).read_bytes()


def image_version() -> str:
    """Return the version of the image this code builds: IMAGE_VERSION plus an input digest."""
    digest = hashlib.sha256()
    digest.update(IMAGE_VERSION.encode())
    digest.update(Path(__file__).read_bytes())
    for name in sorted(DATA_FILES):
        digest.update(name.encode() + b"\0" + _read_data(name))
    return f"{IMAGE_VERSION}-{digest.hexdigest()[:12]}"


def default_output_dir() -> Path:
    """Return the default output directory for the current image version."""
    return default_cache_dir() / image_version()


# --------------------------------------------------------------------------------------------
# Debian packages


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise GuestImageError(
            f"{argv[0]} not found: the guest is built with Debian's tools"
        ) from exc
    if proc.returncode != 0:
        raise GuestImageError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


class _DebCache:
    """A directory of .deb files filled by ``apt-get download``, reused across builds."""

    def __init__(self, directory: Path, refresh: bool = False,
                 on_get: Callable[[str], None] | None = None) -> None:
        self.directory = directory
        self.refresh = refresh
        self.on_get = on_get
        self._updated = False
        directory.mkdir(parents=True, exist_ok=True)

    def _cached(self, name: str) -> Path | None:
        found = [p for p in self.directory.glob("*.deb") if p.name.split("_", 1)[0] == name]
        if not found:
            return None
        return max(found, key=lambda p: p.stat().st_mtime)

    def get(self, name: str) -> Path:
        """Return the cached .deb of package *name*, downloading it first if needed."""
        if self.on_get is not None:
            self.on_get(name)
        if not self.refresh:
            cached = self._cached(name)
            if cached is not None:
                return cached
        try:
            _run(["apt-get", "download", name], cwd=self.directory)
        except GuestImageError:
            if self._updated or os.geteuid() != 0:
                raise
            # Package lists may be missing or stale on a fresh machine.
            _run(["apt-get", "update"])
            self._updated = True
            _run(["apt-get", "download", name], cwd=self.directory)
        cached = self._cached(name)
        if cached is None:
            raise GuestImageError(f"apt-get download {name} left no .deb in {self.directory}")
        for path in self.directory.glob(f"{name}_*.deb"):
            if path != cached and path.name.split("_", 1)[0] == name:
                path.unlink()  # keep one version per package
        return cached


def _deb_field(deb: Path, name: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), name]).strip()


def _kernel_package(metapackage_deb: Path) -> str:
    """Return the versioned kernel image package the metapackage depends on."""
    for alternative in _deb_field(metapackage_deb, "Depends").split(","):
        pkg = alternative.split("|")[0].split("(")[0].strip()
        if pkg.startswith("linux-image-"):
            return pkg
    raise GuestImageError(f"{metapackage_deb.name} depends on no linux-image package")


def _depends(deb: Path) -> list[str]:
    """Return the first alternative of each Pre-Depends/Depends entry of *deb*."""
    text = _deb_field(deb, "Pre-Depends") + "," + _deb_field(deb, "Depends")
    names = [d.split("|")[0].split("(")[0].split(":")[0].strip() for d in text.split(",")]
    return [name for name in names if name]


def _extract(deb: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
    return dest


# --------------------------------------------------------------------------------------------
# ELF inspection (shared library needs, kernel module info)


_Section = tuple[str, int, int, int, int]  # name, sh_type, offset, size, sh_link


def _elf_sections(data: bytes) -> list[_Section]:
    """Return the section headers of a little-endian ELF64 file, in index order."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise GuestImageError("not a little-endian 64-bit ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_off = headers[shstrndx][4]
    sections: list[_Section] = []
    for name_idx, sh_type, _flags, _addr, offset, size, link, *_ in headers:
        end = data.index(b"\0", names_off + name_idx)
        name = data[names_off + name_idx : end].decode()
        sections.append((name, sh_type, offset, size, link))
    return sections


def _elf_needed(path: Path) -> list[str]:
    """Return the DT_NEEDED shared libraries of an ELF executable or library."""
    data = path.read_bytes()
    sections = _elf_sections(data)
    needed: list[str] = []
    for _name, sh_type, offset, size, link in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        str_off = sections[link][2]
        for pos in range(offset, offset + size, 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", str_off + val)
                needed.append(data[str_off + val : end].decode())
    return needed


def _elf_interpreter(path: Path) -> str | None:
    """Return the PT_INTERP program interpreter of an ELF executable, if any."""
    data = path.read_bytes()
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 3:  # PT_INTERP
            return data[offset : offset + filesz].rstrip(b"\0").decode()
    return None


def _modinfo(data: bytes) -> dict[str, list[str]]:
    """Return the ``.modinfo`` key/values of a kernel module image."""
    found = [sec for sec in _elf_sections(data) if sec[0] == ".modinfo"]
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


# --------------------------------------------------------------------------------------------
# uncompressed PVH kernel


def _pvh_kernel(bzimage: bytes) -> bytes | None:
    """Return the kernel's uncompressed ELF (``vmlinux``) if it has a PVH entry point.

    QEMU boots such an ELF directly (``-kernel vmlinux``), skipping the real-mode setup and the
    in-guest decompression of the bzImage, which costs seconds under TCG. Trailing zero bytes of
    each loadable segment (.bss) are left out of the file; the loader zero-fills them.
    Returns None when the payload's compression is not supported or there is no PVH note.
    """
    if bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            elf = zlib.decompressobj(wbits=31).decompress(payload)
        elif payload.startswith(b"BZh"):
            elf = bz2.BZ2Decompressor().decompress(payload)
        else:
            return None
    except (lzma.LZMAError, zlib.error, OSError, EOFError):
        return None
    if elf[:4] != b"\x7fELF" or not _has_pvh_note(elf):
        return None
    out = bytearray(elf)
    phoff = struct.unpack_from("<Q", out, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", out, 0x36)
    file_end = 0
    for i in range(phnum):
        ph = phoff + i * phentsize
        p_type, _flags, offset = struct.unpack_from("<IIQ", out, ph)
        filesz = struct.unpack_from("<Q", out, ph + 0x20)[0]
        if p_type == 1:  # PT_LOAD
            segment = out[offset : offset + filesz]
            filesz = len(segment.rstrip(b"\0"))
            struct.pack_into("<Q", out, ph + 0x20, filesz)
        file_end = max(file_end, offset + filesz)
    struct.pack_into("<QHHH", out, 0x28, 0, 0, 0, 0)  # drop the section headers
    struct.pack_into("<H", out, 0x3C, 0)
    return bytes(out[: max(file_end, phoff + phnum * phentsize)])


def _has_pvh_note(elf: bytes) -> bool:
    """Tell whether an ELF kernel carries XEN_ELFNOTE_PHYS32_ENTRY (the PVH entry point)."""
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        pos = offset
        while pos + 12 <= offset + filesz:
            namesz, descsz, n_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and n_type == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


# --------------------------------------------------------------------------------------------
# initramfs (newc cpio, gzip)


class _Cpio:
    """An in-memory newc cpio archive of an initramfs."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, bytes, int, int]] = {}

    def _parents(self, path: str) -> None:
        parent = PurePosixPath(path).parent
        while str(parent) not in (".", "/", ""):
            self._entries.setdefault(str(parent), (0o040755, b"", 0, 0))
            parent = parent.parent

    def directory(self, path: str, mode: int = 0o755) -> None:
        """Add a directory (and its parents)."""
        self._parents(path)
        self._entries[path] = (0o040000 | mode, b"", 0, 0)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Add a regular file."""
        self._parents(path)
        self._entries[path] = (0o100000 | mode, data, 0, 0)

    def symlink(self, path: str, target: str) -> None:
        """Add a symbolic link."""
        self._parents(path)
        self._entries[path] = (0o120777, target.encode(), 0, 0)

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        """Add a character device node."""
        self._parents(path)
        self._entries[path] = (0o020000 | mode, b"", major, minor)

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def to_bytes(self) -> bytes:
        """Serialise the archive (parents before children, then the trailer)."""
        out = bytearray()

        def record(ino: int, name: str, mode: int, data: bytes, rmaj: int, rmin: int) -> None:
            encoded = name.encode() + b"\0"
            nlink = 2 if mode & 0o170000 == 0o040000 else 1
            fields = (ino, mode, 0, 0, nlink, _EPOCH, len(data), 0, 0, rmaj, rmin)
            header = "070701" + "".join(f"{v:08x}" for v in fields)
            header += f"{len(encoded):08x}{0:08x}"
            out.extend(header.encode() + encoded)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        for ino, path in enumerate(sorted(self._entries, key=lambda p: p.split("/")), 1):
            mode, data, rmaj, rmin = self._entries[path]
            record(ino, path, mode, data, rmaj, rmin)
        record(0, "TRAILER!!!", 0, b"", 0, 0)
        return bytes(out)


def _busybox_links(busybox: Path) -> list[str] | None:
    """Return busybox's applet install paths (``bin/sh`` ...), or None if it cannot run here."""
    try:
        proc = subprocess.run(
            [str(busybox), "--list-full"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    links = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    return links if proc.returncode == 0 and links else None


def _find_in_roots(roots: list[Path], name: str) -> Path | None:
    for root in roots:
        for libdir in _LIB_DIRS:
            candidate = root / libdir / name
            if candidate.exists() or candidate.is_symlink():
                return _resolve_in_root(root, candidate)
    return None


def _resolve_in_root(root: Path, path: Path) -> Path:
    """Follow symlinks of *path*, resolving absolute targets inside *root*."""
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    raise GuestImageError(f"symlink loop at {path}")


def _add_program(cpio: _Cpio, roots: list[Path], binary: Path, guest_path: str) -> list[str]:
    """Copy an ELF program and, recursively, its shared libraries; return the libraries."""
    cpio.file(guest_path, binary.read_bytes(), 0o755)
    added: list[str] = []
    queue = [binary]
    seen: set[str] = set()
    interp = _elf_interpreter(binary)
    if interp:
        name = PurePosixPath(interp).name
        lib = _find_in_roots(roots, name)
        if lib is None:
            raise GuestImageError(f"program interpreter {interp} not found in the packages")
        cpio.file(f"{_GUEST_LIB_DIR}/{name}", lib.read_bytes(), 0o755)
        guest_interp = interp.lstrip("/")
        if guest_interp != f"{_GUEST_LIB_DIR}/{name}":
            depth = len(PurePosixPath(guest_interp).parts) - 1
            cpio.symlink(guest_interp, "../" * depth + f"{_GUEST_LIB_DIR}/{name}")
        seen.add(name)
    while queue:
        for name in _elf_needed(queue.pop()):
            if name in seen:
                continue
            seen.add(name)
            lib = _find_in_roots(roots, name)
            if lib is None:
                raise GuestImageError(f"shared library {name} not found in the packages")
            cpio.file(f"{_GUEST_LIB_DIR}/{name}", lib.read_bytes(), 0o755)
            added.append(name)
            queue.append(lib)
    return added


_ETC_FILES: dict[str, tuple[str, int]] = {
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


def _build_initramfs(
    roots: dict[str, Path], moddir: Path, kver: str
) -> tuple[bytes, dict[str, object]]:
    """Assemble the initramfs; return (gzip'd cpio, manifest details)."""
    cpio = _Cpio()
    for path in ("proc", "sys", "dev", "run", "tmp", "mnt", "var/log", "var/empty", "etc/dropbear"):
        cpio.directory(path)
    cpio.directory("root", 0o700)
    cpio.directory("tmp", 0o1777)
    cpio.chardev("dev/console", 5, 1, 0o600)
    cpio.chardev("dev/null", 1, 3, 0o666)

    busybox = roots["busybox"] / "bin" / "busybox"
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    links = _busybox_links(busybox)
    if links is None:
        raise GuestImageError("cannot run busybox --list-full on this host")
    for link in links:
        link = link.lstrip("/")
        if link != "bin/busybox" and link not in cpio:
            depth = len(PurePosixPath(link).parts) - 1
            cpio.symlink(link, "../" * depth + "bin/busybox")

    lib_roots = [roots["dropbear"], *(roots[k] for k in sorted(roots) if k.startswith("lib:"))]
    libraries: set[str] = set()
    for program in DROPBEAR_PROGRAMS:
        binary = roots["dropbear"] / program
        if binary.exists():
            libraries.update(_add_program(cpio, lib_roots, binary, program))

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

    for path, (text, mode) in _ETC_FILES.items():
        cpio.file(path, text.encode(), mode)
    for name, (guest_path, mode) in DATA_FILES.items():
        cpio.file(guest_path, _read_data(name), mode)

    archive = cpio.to_bytes()
    details: dict[str, object] = {
        "modules": [m.name for m in boot_modules],
        "modules_cdrom": [m.name for m in cdrom_modules],
        "modules_builtin": builtin,
        "libraries": sorted(libraries),
        "cpio_bytes": len(archive),
    }
    return gzip.compress(archive, compresslevel=9, mtime=0), details


# --------------------------------------------------------------------------------------------
# public entry point


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_existing(out_dir: Path, version: str) -> GuestImage | None:
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


#: ``progress(step, done, total)``: what the build is doing (``done`` of about ``total``).
Progress = Callable[[str, int, int], None]


def build_guest_image(
    out_dir: Path | None = None,
    force: bool = False,
    *,
    deb_cache: Path | None = None,
    refresh_packages: bool = False,
    cache_root: Path | None = None,
    progress: Progress | None = None,
) -> GuestImage:
    """Build the test guest image, or return the cached one.

    Args:
        out_dir: where to put ``vmlinuz``, ``initrd.img`` and ``manifest.json``; defaults to
            one directory per image version under *cache_root*.
        force: rebuild even if *out_dir* already holds this version.
        deb_cache: directory of downloaded .deb files (default ``<cache_root>/debs``).
        refresh_packages: download the packages again (picks up a newer Debian kernel).
        cache_root: the cache (default :func:`default_cache_dir`; ``onestack up`` passes
            its data dir's, unless ``$ONESTACK_GUEST_IMAGE_DIR`` is set).
        progress: called at each step of a build (not for a cached image).

    Returns:
        The built :class:`GuestImage`.

    Raises:
        GuestImageError: a Debian tool, package, library or kernel module is missing.
    """
    version = image_version()
    cache_root = Path(cache_root) if cache_root is not None else default_cache_dir()
    out_dir = Path(out_dir) if out_dir is not None else cache_root / version
    if not force and (existing := _load_existing(out_dir, version)) is not None:
        return existing
    cache_root.mkdir(parents=True, exist_ok=True)
    with _locked(cache_root / ".lock"):
        if not force and (existing := _load_existing(out_dir, version)) is not None:
            return existing
        image = _build(out_dir, version, deb_cache or cache_root / "debs", refresh_packages,
                       progress or (lambda _step, _done, _total: None))
        if out_dir.parent == cache_root:
            _prune_versions(out_dir)
        return image


def _prune_versions(keep: Path) -> None:
    """Remove the cached images of other versions (called with the cache lock held)."""
    for other in keep.parent.iterdir():
        if other != keep and other.is_dir() and (other / "manifest.json").exists():
            shutil.rmtree(other, ignore_errors=True)


def _build(out_dir: Path, version: str, deb_dir: Path, refresh: bool,
           progress: Progress) -> GuestImage:
    started = time.monotonic()
    steps = [0, 14]  # done, about how many (packages, then the image itself)

    def step(text: str) -> None:
        steps[0] += 1
        steps[1] = max(steps[1], steps[0] + 2)
        progress(text, steps[0], steps[1])

    debs = _DebCache(deb_dir, refresh=refresh, on_get=lambda name: step(f"fetching {name}"))
    try:
        kernel_deb = debs.get(_kernel_package(debs.get(KERNEL_METAPACKAGE)))
    except GuestImageError:
        # The cached metapackage may name a kernel the archive no longer has: ask again.
        debs.refresh = True
        kernel_deb = debs.get(_kernel_package(debs.get(KERNEL_METAPACKAGE)))
        debs.refresh = refresh
    packages = {
        "kernel": kernel_deb,
        "busybox": debs.get(BUSYBOX_PACKAGE),
        "dropbear": debs.get(DROPBEAR_PACKAGE),
    }
    # dropbear's shared libraries: the transitive dependencies of dropbear-bin.
    queue = _depends(packages["dropbear"])
    while queue:
        dep = queue.pop(0)
        if f"lib:{dep}" not in packages:
            packages[f"lib:{dep}"] = debs.get(dep)
            queue.extend(_depends(packages[f"lib:{dep}"]))

    step("building the initramfs")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir.parent) as tmp:
        work = Path(tmp)
        roots = {key: _extract(deb, work / key.replace(":", "_")) for key, deb in packages.items()}
        kroot = roots.pop("kernel")
        moddirs = sorted((kroot / "lib" / "modules").iterdir())
        vmlinuz = sorted((kroot / "boot").glob("vmlinuz-*"))
        if len(moddirs) != 1 or len(vmlinuz) != 1:
            raise GuestImageError(f"unexpected layout of {packages['kernel'].name}")
        kver = moddirs[0].name
        initrd, details = _build_initramfs(roots, moddirs[0], kver)

        stage = work / "out"
        stage.mkdir()
        shutil.copyfile(vmlinuz[0], stage / "vmlinuz")
        (stage / "initrd.img").write_bytes(initrd)
        pvh = _pvh_kernel(vmlinuz[0].read_bytes())
        outputs = ["vmlinuz", "initrd.img"]
        if pvh is not None:
            (stage / "vmlinux").write_bytes(pvh)
            outputs.append("vmlinux")
        manifest: dict[str, object] = {
            "version": version,
            "kernel_release": kver,
            "cmdline": DEFAULT_CMDLINE,
            "packages": {
                _deb_field(deb, "Package"): _deb_field(deb, "Version") for deb in packages.values()
            },
            "kernel_bytes": (stage / "vmlinuz").stat().st_size,
            "pvh_kernel": pvh is not None,
            "pvh_kernel_bytes": len(pvh) if pvh is not None else 0,
            "initrd_bytes": len(initrd),
            "build_seconds": round(time.monotonic() - started, 1),
            **details,
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

        out_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (out_dir / "manifest.json").unlink()
        for name in (*outputs, "manifest.json"):  # manifest last: it marks the image complete
            os.replace(stage / name, out_dir / name)
    image = _load_existing(out_dir, version)
    if image is None:
        raise GuestImageError(f"build finished but {out_dir} holds no complete image")
    return image
