"""The volume driver contract: what the volume service asks of a storage backend.

A driver keeps each volume's and snapshot's data under a *location* it chooses (returned by
the create calls and stored by the service as ``provider_location``). Every call is blocking
(the service runs it in a worker thread) and either completes or raises ``VolumeDriverError``
leaving nothing behind: a failed create leaves no data, a failed delete leaves the data as it
was. Calls are idempotent where the service may repeat them after a crash: deleting what is
already gone succeeds, ``exists`` tells whether a create finished.

Sizes are in GiB, as the Cinder API counts them. The fake twin (``fake.py``) keeps the same
rules in memory; ``tests/drivers/test_volume_battery.py`` runs one battery over both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

GiB = 1 << 30


class VolumeDriverError(Exception):
    """A backend operation failed; nothing was changed."""


class NoCapacity(VolumeDriverError):
    """The backend has no room for the request."""


@dataclass(frozen=True)
class Capacity:
    """What the backend reports to the scheduler (Cinder's pool stats, in GiB)."""

    total_gb: float
    free_gb: float
    #: GiB promised to volumes (thin volumes may promise more than is used).
    provisioned_gb: float


class VolumeDriver(ABC):
    """A storage backend (see the module docstring for the rules every method keeps)."""

    #: ``driver_volume_type`` of the connection info this backend hands out.
    protocol: str = "file"
    #: Backend name shown in ``host`` (``<host>@<backend>#<pool>``) and pools.
    backend_name: str = "file"

    @abstractmethod
    def create_volume(self, volume_id: str, size_gb: int) -> str:
        """Create an empty volume of ``size_gb``; return its location. ``NoCapacity`` when
        it does not fit."""

    @abstractmethod
    def clone_volume(self, volume_id: str, size_gb: int, source_location: str) -> str:
        """A new volume with the content of the volume at ``source_location``, grown to
        ``size_gb`` (never smaller than the source); return its location."""

    @abstractmethod
    def create_from_snapshot(self, volume_id: str, size_gb: int, snapshot_location: str) -> str:
        """A new volume with a snapshot's content, grown to ``size_gb``; its location."""

    @abstractmethod
    def create_from_image(self, volume_id: str, size_gb: int, image_path: str,
                          disk_format: str) -> str:
        """A new volume holding the image's disk (converted to the volume's format), grown
        to ``size_gb``; ``VolumeDriverError`` when the image's disk does not fit."""

    @abstractmethod
    def delete_volume(self, location: str) -> None:
        """Remove the volume's data (nothing to do when it is already gone)."""

    @abstractmethod
    def extend_volume(self, location: str, new_size_gb: int) -> None:
        """Grow the volume to ``new_size_gb`` (the content is kept)."""

    @abstractmethod
    def create_snapshot(self, snapshot_id: str, volume_location: str) -> str:
        """A point-in-time copy of the volume's content; return the snapshot's location."""

    @abstractmethod
    def delete_snapshot(self, location: str) -> None:
        """Remove a snapshot's data (nothing to do when it is already gone)."""

    @abstractmethod
    def exists(self, location: str) -> bool:
        """Whether data is kept at ``location`` (reconciliation after a crash)."""

    @abstractmethod
    def locations(self) -> set[str]:
        """Every location holding data (a start-up reconcile removes what no row names)."""

    @abstractmethod
    def size_gb(self, location: str) -> int:
        """The volume's size in GiB, rounded up."""

    @abstractmethod
    def connection_info(self, location: str, volume_id: str) -> dict[str, Any]:
        """What a hypervisor needs to open the volume (``{"driver_volume_type", "data"}``,
        Cinder's shape)."""

    @abstractmethod
    def read_chunks(self, location: str, chunk_size: int) -> Iterator[bytes]:
        """The content of the volume (or snapshot) at ``location`` in ``chunk_size``
        pieces (the last may be shorter)."""

    @abstractmethod
    def write_chunks(self, location: str, chunks: Iterable[tuple[int, bytes]]) -> None:
        """Write ``(offset, data)`` pieces into the volume (a restore)."""

    @abstractmethod
    def export_file(self, location: str, path: str, disk_format: str) -> None:
        """Write the volume's disk to ``path`` in ``disk_format`` (an upload to an image);
        ``VolumeDriverError`` for a format this backend cannot write."""

    @abstractmethod
    def capacity(self) -> Capacity:
        """The backend's capacity now."""
