"""The Debian packages the guest is made of: downloaded with ``apt-get download`` into a cache
reused across builds, inspected and extracted with ``dpkg-deb``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from onestack.guestimage.image import GuestImageError

#: Debian packages the image is made of (the kernel metapackage is resolved to its image).
KERNEL_METAPACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
DROPBEAR_PACKAGE = "dropbear-bin"


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


class DebCache:
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


def fetch_packages(debs: DebCache) -> dict[str, Path]:
    """The .debs of the image: ``kernel`` (the image the metapackage names), ``busybox``,
    ``dropbear`` and ``lib:<package>`` for each transitive dependency of dropbear (its shared
    libraries)."""
    try:
        kernel_deb = debs.get(_kernel_package(debs.get(KERNEL_METAPACKAGE)))
    except GuestImageError:
        # The cached metapackage may name a kernel the archive no longer has: ask again.
        refresh, debs.refresh = debs.refresh, True
        kernel_deb = debs.get(_kernel_package(debs.get(KERNEL_METAPACKAGE)))
        debs.refresh = refresh
    packages = {
        "kernel": kernel_deb,
        "busybox": debs.get(BUSYBOX_PACKAGE),
        "dropbear": debs.get(DROPBEAR_PACKAGE),
    }
    queue = _depends(packages["dropbear"])
    while queue:
        dep = queue.pop(0)
        if f"lib:{dep}" not in packages:
            packages[f"lib:{dep}"] = debs.get(dep)
            queue.extend(_depends(packages[f"lib:{dep}"]))
    return packages


def deb_field(deb: Path, name: str) -> str:
    """The control field *name* of *deb* (empty if it has none)."""
    return _run(["dpkg-deb", "-f", str(deb), name]).strip()


def _kernel_package(metapackage_deb: Path) -> str:
    """Return the versioned kernel image package the metapackage depends on."""
    for alternative in deb_field(metapackage_deb, "Depends").split(","):
        pkg = alternative.split("|")[0].split("(")[0].strip()
        if pkg.startswith("linux-image-"):
            return pkg
    raise GuestImageError(f"{metapackage_deb.name} depends on no linux-image package")


def _depends(deb: Path) -> list[str]:
    """Return the first alternative of each Pre-Depends/Depends entry of *deb*."""
    text = deb_field(deb, "Pre-Depends") + "," + deb_field(deb, "Depends")
    names = [d.split("|")[0].split("(")[0].split(":")[0].strip() for d in text.split(",")]
    return [name for name in names if name]


def extract(deb: Path, dest: Path) -> Path:
    """Unpack *deb* into *dest* (made if needed); returns *dest*."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
    return dest
