"""The in-memory twin of a volume backend (tests and benchmarks): the contract's rules with
dictionaries instead of files. Contents are byte strings, so copies can be checked."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from onestack.drivers.volume.base import Capacity, GiB, NoCapacity, VolumeDriver, VolumeDriverError


class FakeVolumeDriver(VolumeDriver):
    """Volumes as ``{location: (size_gb, content)}``; ``capacity_gb`` bounds the sum."""

    protocol = "fake"
    backend_name = "fake"

    def __init__(self, capacity_gb: int = 1000) -> None:
        self.capacity_gb = capacity_gb
        self.volumes: dict[str, tuple[int, bytes]] = {}
        self.snapshots: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def _used(self) -> int:
        return sum(s for s, _ in self.volumes.values()) + sum(
            s for s, _ in self.snapshots.values())

    def _add(self, location: str, size_gb: int, content: bytes) -> str:
        with self._lock:
            if self._used() + size_gb > self.capacity_gb:
                raise NoCapacity(f"{size_gb} GiB do not fit ({self.capacity_gb} GiB in all)")
            self.volumes[location] = (size_gb, content)
        return location

    def create_volume(self, volume_id: str, size_gb: int) -> str:
        return self._add(f"volume-{volume_id}", size_gb, b"")

    def clone_volume(self, volume_id: str, size_gb: int, source_location: str) -> str:
        size, content = self._get(self.volumes, source_location)
        return self._add(f"volume-{volume_id}", max(size, size_gb), content)

    def create_from_snapshot(self, volume_id: str, size_gb: int, snapshot_location: str) -> str:
        size, content = self._get(self.snapshots, snapshot_location)
        return self._add(f"volume-{volume_id}", max(size, size_gb), content)

    def create_from_image(self, volume_id: str, size_gb: int, image_path: str,
                          disk_format: str) -> str:
        with open(image_path, "rb") as fh:
            content = fh.read(1 << 20)
        return self._add(f"volume-{volume_id}", size_gb, content)

    @staticmethod
    def _get(table: dict[str, tuple[int, bytes]], location: str) -> tuple[int, bytes]:
        if location not in table:
            raise VolumeDriverError(f"no data at {location}")
        return table[location]

    def delete_volume(self, location: str) -> None:
        with self._lock:
            self.volumes.pop(location, None)

    def extend_volume(self, location: str, new_size_gb: int) -> None:
        with self._lock:
            size, content = self._get(self.volumes, location)
            if self._used() - size + new_size_gb > self.capacity_gb:
                raise NoCapacity(f"{new_size_gb} GiB do not fit")
            self.volumes[location] = (max(size, new_size_gb), content)

    def create_snapshot(self, snapshot_id: str, volume_location: str) -> str:
        with self._lock:
            size, content = self._get(self.volumes, volume_location)
            location = f"snapshot-{snapshot_id}"
            self.snapshots[location] = (size, content)
        return location

    def delete_snapshot(self, location: str) -> None:
        with self._lock:
            self.snapshots.pop(location, None)

    def exists(self, location: str) -> bool:
        return location in self.volumes or location in self.snapshots

    def locations(self) -> set[str]:
        return set(self.volumes) | set(self.snapshots)

    def size_gb(self, location: str) -> int:
        return self._get(self.volumes, location)[0]

    def connection_info(self, location: str, volume_id: str) -> dict[str, Any]:
        self._get(self.volumes, location)
        return {"driver_volume_type": "fake", "data": {"name": location,
                                                       "volume_id": volume_id}}

    def read_chunks(self, location: str, chunk_size: int) -> Iterator[bytes]:
        table = self.snapshots if location in self.snapshots else self.volumes
        size, content = self._get(table, location)
        total = size * GiB
        for off in range(0, total, chunk_size):
            piece = content[off:off + chunk_size]
            yield piece + b"\0" * (min(chunk_size, total - off) - len(piece))

    def write_chunks(self, location: str, chunks: Iterable[tuple[int, bytes]]) -> None:
        size, content = self._get(self.volumes, location)
        buf = bytearray(content)
        for off, data in chunks:
            if off + len(data) > size * GiB:
                raise VolumeDriverError("write beyond the end of the volume")
            if len(buf) < off + len(data):
                buf.extend(b"\0" * (off + len(data) - len(buf)))
            buf[off:off + len(data)] = data
        self.volumes[location] = (size, bytes(buf.rstrip(b"\0")))

    def export_file(self, location: str, path: str, disk_format: str) -> None:
        size, content = self._get(self.volumes, location)
        if disk_format != "raw":
            raise VolumeDriverError(f"the fake backend writes raw images only, not "
                                    f"{disk_format}")
        with open(path, "wb") as fh:
            fh.write(content)
            fh.truncate(size * GiB)

    def capacity(self) -> Capacity:
        used = self._used()
        return Capacity(float(self.capacity_gb), float(self.capacity_gb - used), float(used))

    # test helpers
    def write(self, location: str, content: bytes) -> None:
        size, _ = self._get(self.volumes, location)
        self.volumes[location] = (size, content)

    def read(self, location: str) -> bytes:
        return self._get(self.volumes, location)[1]
