"""Assembling the guest's root filesystem, its initramfs: busybox and its applet links,
dropbear with the shared libraries it needs, the kernel modules, and the init and
configuration files."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path, PurePosixPath

from onestack.guestimage.cpio import Cpio
from onestack.guestimage.elf import elf_interpreter, elf_needed
from onestack.guestimage.guestfiles import guest_files
from onestack.guestimage.image import GuestImageError
from onestack.guestimage.kernel_modules import add_modules

#: dropbear-bin programs copied into the guest (with their shared libraries).
DROPBEAR_PROGRAMS = (
    "usr/sbin/dropbear",
    "usr/bin/dropbearkey",
    "usr/bin/dbclient",
    "usr/bin/dropbearconvert",
)

_LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")
_GUEST_LIB_DIR = "lib/x86_64-linux-gnu"


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


def _add_program(cpio: Cpio, roots: list[Path], binary: Path, guest_path: str) -> list[str]:
    """Copy an ELF program and, recursively, its shared libraries; return the libraries."""
    cpio.file(guest_path, binary.read_bytes(), 0o755)
    added: list[str] = []
    queue = [binary]
    seen: set[str] = set()
    interp = elf_interpreter(binary)
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
        for name in elf_needed(queue.pop()):
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


def build_initramfs(
    roots: dict[str, Path], moddir: Path, kver: str
) -> tuple[bytes, dict[str, object]]:
    """Assemble the initramfs from the extracted packages (*roots*: ``busybox``,
    ``dropbear`` and ``lib:<package>``) and the kernel's module directory *moddir*; return
    (gzip'd cpio, manifest details)."""
    cpio = Cpio()
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

    modules = add_modules(cpio, moddir, kver)

    for path, data, mode in guest_files():
        cpio.file(path, data, mode)

    archive = cpio.to_bytes()
    details: dict[str, object] = {
        **modules,
        "libraries": sorted(libraries),
        "cpio_bytes": len(archive),
    }
    return gzip.compress(archive, compresslevel=9, mtime=0), details
