"""Local files of images, for the compute agent (``image["path"]``, ``kernel_path``, …).

Drivers get image files, never image ids to look up (see ``base.py``). ``ImageFiles`` turns
the spec's ``image`` (``{"id", "properties"}``) into the driver's view: ``path`` of the
image's data, ``disk_format``, ``checksum`` and, for AKI/ARI-style images (``kernel_id`` /
``ramdisk_id`` properties), ``kernel_path``/``kernel_checksum`` and
``ramdisk_path``/``ramdisk_checksum``.

A store that has the data as a local file (the file stores of this host) is read in place.
Otherwise the data is streamed from the image service's store into ``cache_dir`` once
(checksum verified, atomic rename) and that copy is used by every later guest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from onestack.drivers.hypervisor.base import DriverError
from onestack.drivers.imagestore.base import ImageStore

LOG = logging.getLogger(__name__)


class ImageRecord(Protocol):
    """What is read of an image's record (the image service's ``ImageInfo``)."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def disk_format(self) -> str | None: ...
    @property
    def checksum(self) -> str | None: ...
    @property
    def os_hash_algo(self) -> str | None: ...
    @property
    def os_hash_value(self) -> str | None: ...
    @property
    def properties(self) -> Mapping[str, str]: ...


class ImageStores(Protocol):
    """The image service's stores, by id (its ``StoreSet``)."""

    def get(self, store_id: str) -> ImageStore:
        """The store ``store_id``."""
        ...

    def open(self, location: str) -> Iterator[bytes]:
        """The data at ``location``, in chunks."""
        ...


class ImageCatalog(Protocol):
    """What the compute host reads of the image service (its ``ImageManager``, in process)."""

    stores: ImageStores

    def get_internal(self, image_id: str) -> ImageRecord | None:
        """The image's record whoever owns it; None when there is none."""
        ...

    def locations(self, img: ImageRecord) -> dict[str, str]:
        """The image's data location in each store holding it, by store id."""
        ...

    def store_ids(self, img: ImageRecord) -> list[str]:
        """The ids of the stores holding the image, in the order to read them."""
        ...


class ImageFiles:
    """``resolve(image) -> image`` with local files (see the module docstring), over the
    image service (``ImageCatalog``)."""

    def __init__(self, images: ImageCatalog, cache_dir: str | Path) -> None:
        self.images = images
        self.cache_dir = Path(cache_dir)

    def __call__(self, image: dict[str, Any]) -> dict[str, Any]:
        return self.resolve(image)

    def resolve(self, image: dict[str, Any]) -> dict[str, Any]:
        out = dict(image)
        image_id = out.get("id")
        if not image_id:
            return out
        info = self.images.get_internal(str(image_id))
        if info is None:
            raise DriverError(f"Image {image_id} could not be found.")
        if not out.get("properties"):
            out["properties"] = dict(info.properties)
        out["disk_format"] = info.disk_format
        out["checksum"] = info.os_hash_value or info.checksum
        out["path"] = self._local_file(info)
        props = out.get("properties") or {}
        for kind, prop in (("kernel", "kernel_id"), ("ramdisk", "ramdisk_id")):
            ref = props.get(prop)
            if not ref:
                continue
            sub = self.images.get_internal(str(ref))
            if sub is None:
                raise DriverError(f"Image {image_id} needs its {prop} {ref}, which could "
                                  "not be found.")
            path = self._local_file(sub)
            if path is None:
                raise DriverError(f"Image {ref} ({prop} of {image_id}) has no data.")
            out[f"{kind}_path"] = path
            out[f"{kind}_checksum"] = sub.os_hash_value or sub.checksum
        return out

    def _local_file(self, info: ImageRecord) -> str | None:
        """A local file holding the image's data (None when it has none)."""
        if info.status not in ("active", "deactivated"):
            return None
        locations = self.images.locations(info)
        if not locations:
            return None
        for store_id in self.images.store_ids(info):
            location = locations[store_id]
            with contextlib.suppress(Exception):
                path = self.images.stores.get(store_id).local_path(location)
                if path and os.path.isfile(path):
                    return str(path)
        # No store has it as a file of this host: download once into the cache.
        return self._download(info, locations)

    def _download(self, info: ImageRecord, locations: dict[str, str]) -> str:
        checksum = str(info.os_hash_value or info.checksum or "")
        ident = re.sub(r"[^0-9A-Za-z-]", "", str(info.id))[:64] or "image"
        dest = self.cache_dir / f"{ident}-{hashlib.sha256(checksum.encode()).hexdigest()[:16]}"
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.cache_dir / f".{dest.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if dest.is_file():
                return str(dest)
            last: Exception | None = None
            for store_id in self.images.store_ids(info):
                tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}")
                try:
                    algo = info.os_hash_algo if info.os_hash_value else "md5"
                    digest = hashlib.new(algo or "md5") if checksum else None
                    with open(tmp, "wb") as fh:
                        for chunk in self.images.stores.open(locations[store_id]):
                            fh.write(chunk)
                            if digest is not None:
                                digest.update(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
                    if digest is not None and digest.hexdigest() != checksum:
                        raise DriverError(f"checksum mismatch downloading image {info.id}")
                    os.chmod(tmp, 0o400)
                    os.replace(tmp, dest)
                    LOG.info("downloaded image %s into %s", info.id, dest)
                    return str(dest)
                except Exception as exc:  # noqa: BLE001 - try the next store
                    last = exc
                    with contextlib.suppress(OSError):
                        tmp.unlink()
            raise DriverError(f"cannot download image {info.id}: {last}")
