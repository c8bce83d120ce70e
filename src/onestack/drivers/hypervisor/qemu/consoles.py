"""The consoles of QEMU guests: the serial console log and the VNC server.

QEMU appends the serial console to ``console.log``; past ``log_limit`` bytes it is copied
to ``console.log.0`` and truncated in place (at a read and whenever the driver lists its
guests), so the output offered is the last two generations. VNC listens on loopback only,
``127.0.0.1:5900+N``; the console proxy connects to it (``onestack.console``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from onestack.drivers.hypervisor.base import DriverError, InstanceSpec
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.process import GuestProcesses


class GuestConsoles:
    """Serial log and VNC console of guests (see the module docstring)."""

    def __init__(self, guests: QemuGuests, processes: GuestProcesses,
                 log_limit: int = 1 << 20) -> None:
        self.guests = guests
        self.processes = processes
        self.log_limit = log_limit

    def rotate(self, uuid: str) -> None:
        """Start a new generation of the console log once it outgrew ``log_limit``."""
        log = self.guests.dir(uuid) / "console.log"
        if log.stat().st_size <= self.log_limit:
            return
        # QEMU appends (O_APPEND): copy the log aside, then truncate it in place.
        shutil.copyfile(log, log.with_suffix(".log.0"))
        os.truncate(log, 0)

    async def output(self, instance: InstanceSpec) -> str:
        """The guest's serial console log (the last two generations)."""
        uuid = instance["uuid"]
        self.guests.load_state(uuid)
        d = self.guests.dir(uuid)
        with contextlib.suppress(OSError):
            self.rotate(uuid)
        data = b""
        for name in ("console.log.0", "console.log"):
            with contextlib.suppress(OSError):
                data += (d / name).read_bytes()
        return data[-2 * self.log_limit:].decode(errors="replace")

    async def vnc(self, instance: InstanceSpec) -> dict[str, Any]:
        """Where the guest's VNC server listens: ``{"host": "127.0.0.1", "port": 59xx}``
        (loopback only; the console proxy connects to it)."""
        uuid = instance["uuid"]
        self.guests.load_state(uuid)
        if self.processes.pid(uuid) is None:
            raise DriverError(f"instance {uuid} is not running")
        info = await self.processes.qmp(uuid, "query-vnc")
        if not info.get("enabled"):
            raise DriverError("the guest has no VNC server")
        return {"host": info.get("host") or "127.0.0.1", "port": int(info["service"])}
