"""Volumes as files in one directory (Cinder's NFS driver without the mount): sparse raw
files ``volume-<id>``, snapshots as copies ``snapshot-<id>`` (reflinked where the file system
allows, sparse otherwise). Every file appears under its final name by a rename, so a crash
leaves either nothing or a whole file; leftovers of interrupted copies (``.*.part``) are
removed when the driver starts. The directory can later be an NFS export shared by hosts:
the connection info names it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from onestack.drivers.volume.base import Capacity, GiB, NoCapacity, VolumeDriver, VolumeDriverError


class FileVolumeDriver(VolumeDriver):
    """Sparse raw files under ``directory``; thin provisioning up to ``oversubscription``
    times the file system's size (Cinder's ``max_over_subscription_ratio``, default 20)."""

    protocol = "file"
    backend_name = "file"

    def __init__(self, directory: Path, oversubscription: float = 20.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.oversubscription = oversubscription
        for leftover in self.dir.glob(".*.part"):
            leftover.unlink(missing_ok=True)

    # ------------------------------------------------------------------ helpers
    def _path(self, location: str) -> Path:
        if "/" in location or location.startswith("."):
            raise VolumeDriverError(f"invalid location {location!r}")
        return self.dir / location

    def _provisioned(self) -> int:
        total = 0
        for p in self.dir.iterdir():
            if not p.name.startswith("."):
                try:
                    total += p.stat().st_size
                except FileNotFoundError:
                    continue
        return total

    def _reserve(self, size_gb: int) -> None:
        st = os.statvfs(self.dir)
        total = st.f_blocks * st.f_frsize
        if self._provisioned() + size_gb * GiB > total * self.oversubscription:
            raise NoCapacity(f"{size_gb} GiB do not fit in {self.dir}")

    def _finish(self, part: Path, location: str) -> str:
        os.replace(part, self._path(location))
        return location

    def _copy(self, source: Path, location: str, size_gb: int) -> str:
        if not source.exists():
            raise VolumeDriverError(f"no data at {source.name}")
        self._reserve(size_gb)
        part = self.dir / f".{location}.part"
        try:
            subprocess.run(["cp", "--reflink=auto", "--sparse=always", str(source), str(part)],
                           check=True, capture_output=True)
            if part.stat().st_size < size_gb * GiB:
                os.truncate(part, size_gb * GiB)
            return self._finish(part, location)
        except (OSError, subprocess.CalledProcessError) as exc:
            part.unlink(missing_ok=True)
            raise VolumeDriverError(f"copy of {source.name} failed: {exc}") from exc

    # ------------------------------------------------------------------ contract
    def create_volume(self, volume_id: str, size_gb: int) -> str:
        self._reserve(size_gb)
        location = f"volume-{volume_id}"
        part = self.dir / f".{location}.part"
        try:
            with open(part, "wb") as f:
                f.truncate(size_gb * GiB)
            return self._finish(part, location)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise VolumeDriverError(f"cannot create {location}: {exc}") from exc

    def clone_volume(self, volume_id: str, size_gb: int, source_location: str) -> str:
        return self._copy(self._path(source_location), f"volume-{volume_id}", size_gb)

    def create_from_snapshot(self, volume_id: str, size_gb: int, snapshot_location: str) -> str:
        return self._copy(self._path(snapshot_location), f"volume-{volume_id}", size_gb)

    def create_from_image(self, volume_id: str, size_gb: int, image_path: str,
                          disk_format: str) -> str:
        if disk_format == "raw":
            if os.path.getsize(image_path) > size_gb * GiB:
                raise VolumeDriverError(f"the image's {os.path.getsize(image_path)} bytes "
                                        f"do not fit in {size_gb} GiB")
            return self._copy(Path(image_path), f"volume-{volume_id}", size_gb)
        self._reserve(size_gb)
        location = f"volume-{volume_id}"
        part = self.dir / f".{location}.part"
        try:
            info = subprocess.run(["qemu-img", "info", "--output=json", "-f", disk_format,
                                   image_path], check=True, capture_output=True, text=True)
            virtual = int(json.loads(info.stdout).get("virtual-size") or 0)
            if virtual > size_gb * GiB:
                raise VolumeDriverError(f"the image's disk ({virtual} bytes) does not fit in "
                                        f"{size_gb} GiB")
            subprocess.run(["qemu-img", "convert", "-q", "-f", disk_format, "-O", "raw",
                            "-S", "4k", image_path, str(part)], check=True,
                           capture_output=True)
            os.truncate(part, size_gb * GiB)
            return self._finish(part, location)
        except (OSError, ValueError, subprocess.CalledProcessError) as exc:
            part.unlink(missing_ok=True)
            raise VolumeDriverError(f"image conversion failed: {exc}") from exc
        except VolumeDriverError:
            part.unlink(missing_ok=True)
            raise

    def delete_volume(self, location: str) -> None:
        self._path(location).unlink(missing_ok=True)

    def extend_volume(self, location: str, new_size_gb: int) -> None:
        path = self._path(location)
        if not path.exists():
            raise VolumeDriverError(f"no data at {location}")
        grow = new_size_gb * GiB - path.stat().st_size
        if grow <= 0:
            return
        self._reserve(-(-grow // GiB))
        os.truncate(path, new_size_gb * GiB)

    def create_snapshot(self, snapshot_id: str, volume_location: str) -> str:
        source = self._path(volume_location)
        size = -(-source.stat().st_size // GiB) if source.exists() else 0
        return self._copy(source, f"snapshot-{snapshot_id}", size)

    def delete_snapshot(self, location: str) -> None:
        self._path(location).unlink(missing_ok=True)

    def exists(self, location: str) -> bool:
        return self._path(location).exists()

    def locations(self) -> set[str]:
        return {p.name for p in self.dir.iterdir() if not p.name.startswith(".")}

    def size_gb(self, location: str) -> int:
        path = self._path(location)
        if not path.exists():
            raise VolumeDriverError(f"no data at {location}")
        return -(-path.stat().st_size // GiB)

    def connection_info(self, location: str, volume_id: str) -> dict[str, Any]:
        path = self._path(location)
        if not path.exists():
            raise VolumeDriverError(f"no data at {location}")
        return {"driver_volume_type": "file",
                "data": {"export": str(self.dir), "name": location, "path": str(path),
                         "format": "raw", "volume_id": volume_id}}

    def read_chunks(self, location: str, chunk_size: int) -> Iterator[bytes]:
        path = self._path(location)
        if not path.exists():
            raise VolumeDriverError(f"no data at {location}")
        with open(path, "rb") as fh:
            while piece := fh.read(chunk_size):
                yield piece

    def write_chunks(self, location: str, chunks: Iterable[tuple[int, bytes]]) -> None:
        path = self._path(location)
        if not path.exists():
            raise VolumeDriverError(f"no data at {location}")
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            for off, data in chunks:
                if off + len(data) > size:
                    raise VolumeDriverError("write beyond the end of the volume")
                fh.seek(off)
                fh.write(data)

    def export_file(self, location: str, path: str, disk_format: str) -> None:
        src = self._path(location)
        if not src.exists():
            raise VolumeDriverError(f"no data at {location}")
        if disk_format not in ("raw", "qcow2", "vmdk", "vdi", "vhdx"):
            raise VolumeDriverError(f"cannot write a {disk_format} image")
        fmt = {"vhdx": "vhdx", "vdi": "vdi", "vmdk": "vmdk"}.get(disk_format, disk_format)
        try:
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", fmt, str(src),
                            path], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise VolumeDriverError(f"image conversion failed: {exc}") from exc

    def capacity(self) -> Capacity:
        st = os.statvfs(self.dir)
        total = st.f_blocks * st.f_frsize / GiB
        free = st.f_bavail * st.f_frsize / GiB
        return Capacity(round(total, 2), round(free, 2), round(self._provisioned() / GiB, 2))
