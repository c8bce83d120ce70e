"""Building the test guest image: fetch the packages, assemble the initramfs, write the
kernels and the manifest into the versioned cache, under a lock so that concurrent builds make
it once (see ``__init__.py`` for what the image is, ``cache.py`` for where it goes)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from onestack.guestimage.cache import default_cache_dir, image_version
from onestack.guestimage.image import DEFAULT_CMDLINE, GuestImage, GuestImageError, load_built
from onestack.guestimage.packages import DebCache, deb_field, extract, fetch_packages
from onestack.guestimage.pvh import pvh_kernel
from onestack.guestimage.rootfs import build_initramfs

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
    if not force and (existing := load_built(out_dir, version)) is not None:
        return existing
    cache_root.mkdir(parents=True, exist_ok=True)
    with _locked(cache_root / ".lock"):
        if not force and (existing := load_built(out_dir, version)) is not None:
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

    debs = DebCache(deb_dir, refresh=refresh, on_get=lambda name: step(f"fetching {name}"))
    packages = fetch_packages(debs)

    step("building the initramfs")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir.parent) as tmp:
        work = Path(tmp)
        roots = {key: extract(deb, work / key.replace(":", "_")) for key, deb in packages.items()}
        kroot = roots.pop("kernel")
        moddirs = sorted((kroot / "lib" / "modules").iterdir())
        vmlinuz = sorted((kroot / "boot").glob("vmlinuz-*"))
        if len(moddirs) != 1 or len(vmlinuz) != 1:
            raise GuestImageError(f"unexpected layout of {packages['kernel'].name}")
        kver = moddirs[0].name
        initrd, details = build_initramfs(roots, moddirs[0], kver)

        stage = work / "out"
        stage.mkdir()
        shutil.copyfile(vmlinuz[0], stage / "vmlinuz")
        (stage / "initrd.img").write_bytes(initrd)
        pvh = pvh_kernel(vmlinuz[0].read_bytes())
        outputs = ["vmlinuz", "initrd.img"]
        if pvh is not None:
            (stage / "vmlinux").write_bytes(pvh)
            outputs.append("vmlinux")
        manifest: dict[str, object] = {
            "version": version,
            "kernel_release": kver,
            "cmdline": DEFAULT_CMDLINE,
            "packages": {
                deb_field(deb, "Package"): deb_field(deb, "Version") for deb in packages.values()
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
    image = load_built(out_dir, version)
    if image is None:
        raise GuestImageError(f"build finished but {out_dir} holds no complete image")
    return image


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
