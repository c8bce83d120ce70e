"""``ImageFiles``: the compute agent's image id -> local file resolution."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from onestack.drivers.hypervisor.base import DriverError
from onestack.drivers.hypervisor.imagefiles import ImageFiles


@dataclass
class Info:
    id: str
    data: bytes | None
    status: str = "active"
    disk_format: str = "qcow2"
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def checksum(self) -> str | None:
        return hashlib.md5(self.data).hexdigest() if self.data else None  # noqa: S324

    @property
    def os_hash_value(self) -> str | None:
        return hashlib.sha512(self.data).hexdigest() if self.data else None

    os_hash_algo = "sha512"


class Store:
    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.blobs: dict[str, bytes] = {}
        self.opens = 0

    def local_path(self, location: str) -> str | None:
        return str(self.root / location) if self.root is not None else None

    def open(self, location: str) -> Iterator[bytes]:
        self.opens += 1
        data = self.blobs[location]
        for i in range(0, len(data), 7):
            yield data[i:i + 7]


class Stores:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, store_id: str) -> Store:
        return self.store

    def open(self, location: str) -> Iterator[bytes]:
        return self.store.open(location)


class Images:
    def __init__(self, store: Store) -> None:
        self.infos: dict[str, Info] = {}
        self.stores = Stores(store)

    def add(self, info: Info) -> None:
        self.infos[info.id] = info
        if info.data is not None:
            self.stores.store.blobs[info.id] = info.data
            if self.stores.store.root is not None:
                (self.stores.store.root / info.id).write_bytes(info.data)

    def get_internal(self, image_id: str) -> Info | None:
        return self.infos.get(image_id)

    def locations(self, info: Info) -> dict[str, str]:
        return {"file": info.id} if info.data is not None else {}

    def store_ids(self, info: Info) -> list[str]:
        return list(self.locations(info))


def _aki_ari(images: Images) -> dict[str, Any]:
    images.add(Info("kern", b"kernel-bytes", disk_format="aki"))
    images.add(Info("ram", b"ramdisk-bytes", disk_format="ari"))
    images.add(Info("root", b"root-disk", properties={"kernel_id": "kern", "ramdisk_id": "ram",
                                                       "os_command_line": "console=ttyS0"}))
    return {"id": "root", "properties": {}}


def test_local_store_files_are_used_in_place(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    images = Images(Store(tmp_path / "store"))
    image = ImageFiles(images, tmp_path / "cache").resolve(_aki_ari(images))
    assert image["path"] == str(tmp_path / "store" / "root")
    assert image["kernel_path"] == str(tmp_path / "store" / "kern")
    assert image["ramdisk_path"] == str(tmp_path / "store" / "ram")
    assert image["properties"]["os_command_line"] == "console=ttyS0"
    assert image["disk_format"] == "qcow2"
    assert image["checksum"] == images.infos["root"].os_hash_value
    assert image["kernel_checksum"] == images.infos["kern"].os_hash_value
    assert not (tmp_path / "cache").exists()


def test_remote_store_data_is_downloaded_once(tmp_path: Path) -> None:
    store = Store(None)  # no local files: data only through open()
    images = Images(store)
    files = ImageFiles(images, tmp_path / "cache")
    first = files.resolve(_aki_ari(images))
    assert Path(first["path"]).read_bytes() == b"root-disk"
    assert Path(first["kernel_path"]).read_bytes() == b"kernel-bytes"
    assert Path(first["ramdisk_path"]).read_bytes() == b"ramdisk-bytes"
    assert Path(first["path"]).parent == tmp_path / "cache"
    assert store.opens == 3
    again = files.resolve({"id": "root", "properties": {}})
    assert again["path"] == first["path"] and store.opens == 3


def test_corrupt_download_is_refused(tmp_path: Path) -> None:
    store = Store(None)
    images = Images(store)
    images.add(Info("root", b"root-disk"))
    store.blobs["root"] = b"tampered!"
    with pytest.raises(DriverError, match="checksum mismatch"):
        ImageFiles(images, tmp_path / "cache").resolve({"id": "root"})
    assert [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_missing_images(tmp_path: Path) -> None:
    images = Images(Store(None))
    files = ImageFiles(images, tmp_path / "cache")
    with pytest.raises(DriverError, match="could not be found"):
        files.resolve({"id": "nope"})
    images.add(Info("root", None, properties={"kernel_id": "gone"}))
    with pytest.raises(DriverError, match="kernel_id gone"):
        files.resolve({"id": "root"})
    images.add(Info("queued", None, status="queued"))
    assert files.resolve({"id": "queued", "properties": {}})["path"] is None
    assert files.resolve({"id": None}) == {"id": None}
