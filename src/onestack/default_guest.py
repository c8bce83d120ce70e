"""The default image of a fresh cloud, in every mode, and the background build of the guest.

Scripts written for DevStack find its CirrOS image by name (``cirros-*``, ``grep cirros``):
onestack registers :data:`DEFAULT_IMAGE_NAME` (``cirros-onestack-x86_64-disk``), public.

- With real guests (QEMU), it is onestack's test guest (``onestack.guestimage``: a tiny
  Linux with SSH, root login by key; not CirrOS, which onestack cannot download here), also
  registered as ``onestack-guest`` with its kernel and ramdisk. The guest is built from
  Debian packages on the first start (about 30 s, then cached per version) *in the
  background*: the APIs answer meanwhile, ``onestack up`` shows a progress bar and
  ``onestack status`` the step (``DATA/guest-image.json``); the images appear once built.
  The cache is ``DATA/cache/guest-image`` (``$ONESTACK_GUEST_IMAGE_DIR`` overrides it).
  The guest is registered AKI/ARI style (what boots fastest: direct kernel boot, no
  bootloader): ``onestack-guest-kernel`` (``aki``, the uncompressed PVH ``vmlinux`` when
  built), ``onestack-guest-ramdisk`` (``ari``, the initramfs holding the whole guest) and the
  64 MiB qcow2 root disk (``guestimage/rootdisk.py``) with ``kernel_id``, ``ramdisk_id`` and
  ``os_command_line`` properties; the flavor ``m1.guest`` (1 vCPU, 256 MB, 1 GB) fits it.
  Everything is idempotent (names are checked first); failures are logged, never fatal.
- With the fake driver, it is a 1 MiB raw disk of zeros (property
  ``onestack_placeholder=true``): enough for fake guests, which boot anything.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onestack.agents.pool import ComputeAgentPool
from onestack.common.context import RequestContext
from onestack.common.timeutils import isotime, utcnow
from onestack.compute.manager import ComputeManager
from onestack.config import Settings
from onestack.guestimage.rootdisk import root_disk
from onestack.image.manager import ImageManager

LOG = logging.getLogger(__name__)

DEFAULT_IMAGE_NAME = "cirros-onestack-x86_64-disk"
GUEST_IMAGE_NAME = "onestack-guest"
GUEST_FLAVOR = {"id": "m1.guest", "name": "m1.guest", "ram": 256, "vcpus": 1, "disk": 1,
                "description": "fits the onestack test guest"}
PROGRESS_FILE = "guest-image.json"
INSTALL_HINT = ("QEMU is not usable here, so servers are fake (install it with: sudo "
                "apt-get install qemu-system-x86 qemu-utils, or scripts/install)")


def guest_cache_root(settings: Settings) -> Path:
    """Where the guest image is built and cached (see the module docstring)."""
    env = os.environ.get("ONESTACK_GUEST_IMAGE_DIR")
    return Path(env).expanduser() if env else settings.data_dir / "cache" / "guest-image"


@dataclass
class GuestProgress:
    """``DATA/guest-image.json``: the state of the guest image job."""

    state: str  # building, ready, failed
    step: str = ""
    done: int = 0
    total: int = 0
    started_at: str = ""
    finished_at: str = ""
    error: str = ""

    @classmethod
    def read(cls, data_dir: Path) -> GuestProgress | None:
        try:
            return cls(**json.loads((Path(data_dir) / PROGRESS_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, data_dir: Path) -> None:
        path = Path(data_dir) / PROGRESS_FILE
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".guest-image.")
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh)
        os.replace(tmp, path)


class GuestImageJob:
    """Builds (or finds in the cache) and registers the test guest; ``run`` blocks, so the
    composition root runs it in a thread once the APIs answer."""

    def __init__(self, settings: Settings, images: ImageManager | None,
                 compute: ComputeManager | None, owner: str | None) -> None:
        self.settings = settings
        self.images = images
        self.compute = compute
        self.owner = owner
        self.progress = GuestProgress("building", "looking for the guest image",
                                      started_at=isotime(utcnow()))
        # Written before the APIs answer, so whoever waits for the image sees it coming.
        self.progress.write(settings.data_dir)

    @property
    def needed(self) -> bool:
        """Whether there is anything to do (the guest is not registered yet)."""
        return self.images is not None and not self.images.has_images(GUEST_IMAGE_NAME)

    def _step(self, text: str, done: int, total: int) -> None:
        self.progress.step, self.progress.done, self.progress.total = text, done, total
        self.progress.write(self.settings.data_dir)

    def run(self) -> str | None:
        self.progress.write(self.settings.data_dir)
        try:
            image_id = register_guest(self.images, self.compute, self.owner,
                                      cache_root=guest_cache_root(self.settings),
                                      progress=self._step, aliases=(DEFAULT_IMAGE_NAME,))
        except Exception as exc:  # noqa: BLE001 - reported, the cloud runs on
            LOG.exception("registering the guest image failed")
            self.progress.state, self.progress.error = "failed", str(exc)
            image_id = None
        else:
            if image_id is None and self.needed:
                self.progress.state = "failed"
                self.progress.error = "the guest image could not be built (see the log)"
            else:
                self.progress.state, self.progress.step = "ready", "registered"
                self.progress.done = self.progress.total = max(self.progress.total, 1)
        self.progress.finished_at = isotime(utcnow())
        self.progress.write(self.settings.data_dir)
        return image_id


def register_placeholder(images: ImageManager | None, owner: str | None) -> str | None:
    """The fake driver's default image (see the module docstring), once."""

    if images is None or images.has_images(DEFAULT_IMAGE_NAME):
        return None
    try:
        return _register_placeholder(images, owner)
    except Exception as exc:  # noqa: BLE001 - e.g. an image quota too small: start anyway
        LOG.warning("the default image %s was not registered: %s", DEFAULT_IMAGE_NAME, exc)
        return None


def _register_placeholder(images: ImageManager, owner: str | None) -> str:
    from onestack.image.setup import create_from_file

    ctx = RequestContext.admin()
    ctx.project_id = owner
    with tempfile.NamedTemporaryFile(prefix="onestack-placeholder-") as fh:
        fh.truncate(1 << 20)
        fh.flush()
        image_id = create_from_file(images, ctx, {
            "name": DEFAULT_IMAGE_NAME, "disk_format": "raw", "container_format": "bare",
            "visibility": "public", "owner": owner, "onestack_placeholder": "true"},
            Path(fh.name))
    LOG.info("registered the placeholder image %s", image_id)
    return image_id


def setup_default_guest(settings: Settings, agents: ComputeAgentPool | None,
                        images: ImageManager | None, compute: ComputeManager | None,
                        owner: str | None) -> GuestImageJob | None:
    """First-start work: with real guests, the ``m1.guest`` flavor and the job that
    builds and registers the guest (returned, to run in the background); otherwise the
    placeholder image."""
    if real_guests(agents):
        create_guest_flavor(compute)
        if images is None or images.has_images(GUEST_IMAGE_NAME):
            return None
        return GuestImageJob(settings, images, compute, owner)
    if settings.compute_driver in ("auto", "qemu"):
        LOG.warning(INSTALL_HINT)
    register_placeholder(images, owner)
    return None


def real_guests(agents: ComputeAgentPool | None) -> bool:
    """Whether an agent of this process runs real (QEMU) guests."""
    drivers = [a.driver for a in getattr(agents, "agents", None) or []]
    return any(d.hypervisor_type == "QEMU" for d in drivers)


def create_guest_flavor(compute: ComputeManager | None) -> None:
    """The flavor ``m1.guest`` (idempotent)."""
    if compute is not None:
        try:
            compute.create_flavor(dict(GUEST_FLAVOR))
        except Exception as exc:  # noqa: BLE001 - exists already (Conflict) or no compute
            LOG.debug("flavor m1.guest not created: %s", exc)


def register_guest(images: ImageManager | None, compute: ComputeManager | None,
                   owner: str | None,
                   cache_root: Path | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   aliases: tuple[str, ...] = ()) -> str | None:
    """Register the guest images and flavor (see the module docstring); the image id or None
    (already registered, or the image could not be built: logged). ``aliases``: more names
    the root disk is registered under (same kernel, ramdisk and properties)."""
    create_guest_flavor(compute)
    if images is None or images.has_images(GUEST_IMAGE_NAME):
        return None
    try:
        from onestack.guestimage import build_guest_image

        guest = build_guest_image(cache_root=cache_root, progress=progress)
    except Exception as exc:  # noqa: BLE001 - e.g. not Debian, no network for apt
        LOG.warning("the test guest image could not be built (%s); no default image", exc)
        return None
    ctx = RequestContext.admin()
    ctx.project_id = owner
    common = {"visibility": "public", "owner": owner}
    kernel = guest.pvh_kernel or guest.kernel
    kernel_id = _upload(images, ctx, {"name": f"{GUEST_IMAGE_NAME}-kernel", "disk_format": "aki",
                                      "container_format": "aki", **common}, kernel)
    ramdisk_id = _upload(images, ctx, {"name": f"{GUEST_IMAGE_NAME}-ramdisk",
                                       "disk_format": "ari", "container_format": "ari",
                                       **common}, guest.initrd)
    with tempfile.TemporaryDirectory(prefix="onestack-guest-") as tmp:
        disk = Path(tmp) / "root.qcow2"
        root_disk(disk)
        props = {"disk_format": "qcow2", "container_format": "bare",
                 "kernel_id": kernel_id, "ramdisk_id": ramdisk_id,
                 "os_command_line": guest.cmdline, "hw_qemu_guest_agent": "no",
                 "onestack_guest_version": guest.version, **common}
        for alias in aliases:
            if not images.has_images(alias):
                _upload(images, ctx, {"name": alias, **props}, disk)
        image_id = _upload(images, ctx, {"name": GUEST_IMAGE_NAME, **props}, disk)
    LOG.info("registered the test guest as image %s (kernel %s, ramdisk %s)", image_id,
             kernel_id, ramdisk_id)
    return image_id


def _upload(images: ImageManager, ctx: RequestContext, body: dict[str, Any],
            path: Path) -> str:
    from onestack.image.setup import create_from_file

    return create_from_file(images, ctx, body, path)
