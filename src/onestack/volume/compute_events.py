"""``ComputeEvents``: what the volume service tells compute about the servers that use its
volumes (Cinder's ``os-server-external-events`` to Nova: ``volume-extended``; pausing a
guest's I/O around a snapshot or backup of an in-use volume; whether a server really uses an
attachment). ``onestack up`` gives the volume API compute's attachment routes
(``compute/api_volumes.py``), which have these methods; on other hosts a client of Nova's
external events API would stand behind the same protocol."""

from __future__ import annotations

from typing import Protocol


class ComputeEvents(Protocol):
    """Compute as the volume service sees it (see the module docstring)."""

    async def volume_extended(self, volume_id: str, servers: list[str],
                              new_size: int) -> None:
        """The volume grew: the servers' guests see the new size."""
        ...

    async def pause_io(self, volume_id: str, servers: list[str]) -> list[str]:
        """Pause the I/O of the running guests using the volume; returns those paused."""
        ...

    async def resume_io(self, volume_id: str, servers: list[str]) -> None: ...

    def uses_volume(self, server_id: str, volume_id: str) -> bool:
        """Whether the server has the volume among its block devices."""
        ...
