"""The record a QEMU guest keeps on the host, shared by every part of the driver: its
instance directory ``DATA/instances/<uuid>/`` (what it holds: ``driver.py``), the
``state.json`` in it, the short paths of its unix sockets, and the lock each operation on
the guest holds.

``state.json`` is the spec the guest was built from (``admin_pass`` left out) with what the
driver decided for it: the boot files (``boot``), the rescue state (``rescue``), the spare
root ports (``root_ports``) and the slots hot-plugged NICs and volumes sit on
(``nic_slots``, ``disk_slots``). It is the source of truth that lets a new driver object
(after the agent restarts, even ``kill -9``) re-adopt and restart the guest.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from onestack.drivers.hypervisor.base import InstanceNotFound
from onestack.drivers.hypervisor.qemu.host import drop_socket_link, socket_path


class QemuGuests:
    """The guests' records under ``root`` (``DATA/instances``; ``_``-names are the driver's
    own: the base image cache, the KVM probe's answer)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ paths
    def dir(self, uuid: str) -> Path:
        """The guest's instance directory (``InstanceNotFound`` for a uuid that cannot be
        one)."""
        if not re.fullmatch(r"[0-9A-Za-z-]{1,64}", uuid) or uuid.startswith("_"):
            raise InstanceNotFound(f"Instance {uuid} could not be found.")
        return self.root / uuid

    def sock(self, uuid: str, name: str) -> str:
        """Path of a unix socket in the instance dir, short enough for ``sun_path``."""
        return socket_path(self.dir(uuid), name)

    def drop_sock_link(self, uuid: str) -> None:
        drop_socket_link(self.dir(uuid))

    # ------------------------------------------------------------------ state.json
    def has_record(self, uuid: str) -> bool:
        return (self.root / uuid / "state.json").exists()

    def uuids(self) -> list[str]:
        """The guests that have a record here."""
        if not self.root.is_dir():
            return []
        return [entry.name for entry in sorted(self.root.iterdir())
                if not entry.name.startswith("_") and (entry / "state.json").is_file()]

    def load_state(self, uuid: str) -> dict[str, Any]:
        """The guest's ``state.json`` (``InstanceNotFound`` when it has none)."""
        try:
            state: dict[str, Any] = json.loads((self.dir(uuid) / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise InstanceNotFound(f"Instance {uuid} could not be found.") from exc
        return state

    def save_state(self, uuid: str, state: dict[str, Any]) -> None:
        path = self.dir(uuid) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    # ------------------------------------------------------------------ locks
    def lock(self, uuid: str) -> asyncio.Lock:
        """The lock every operation on the guest holds (one at a time per guest)."""
        lock = self._locks.get(uuid)
        if lock is None:
            lock = self._locks[uuid] = asyncio.Lock()
        return lock

    def forget(self, uuid: str) -> None:
        """Drop the lock of a destroyed guest."""
        self._locks.pop(uuid, None)
