"""Suspend and resume of QEMU guests: the guest's memory saved to disk, no process left.

Suspend is a migration to a file: QEMU streams its state (``migrate``) over a unix socket
the driver listens on into ``suspend.state`` (written aside, fsynced, then renamed), and quits;
a guest whose save fails runs on. Resume starts QEMU from the same ``state.json`` waiting for
a stream (``-incoming defer``), feeds it the file (``migrate-incoming``), lets the vCPUs go on
and deletes the file. The saved state fixes the guest's device layout, so nothing may be
hot-plugged while it is saved (see ``hotplug.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from onestack.drivers.hypervisor.base import DriverError, InstanceSpec
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.process import GuestProcesses
from onestack.drivers.hypervisor.qemu.qmp import QMPClient, QMPError


class GuestSuspend:
    """Saves guests' memory to ``suspend.state`` and restores it (see the module
    docstring)."""

    def __init__(self, guests: QemuGuests, processes: GuestProcesses) -> None:
        self.guests = guests
        self.processes = processes

    async def suspend(self, instance: InstanceSpec) -> None:
        """Save the guest's memory to ``suspend.state`` (migration stream) and stop QEMU."""
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            self.guests.load_state(uuid)
            if await self.processes.status(uuid) is None:
                raise DriverError(f"instance {uuid} is not running")
            d = self.guests.dir(uuid)
            target = d / "suspend.state"
            tmp = d / "suspend.state.tmp"
            sock = self.guests.sock(uuid, "save.sock")
            with contextlib.suppress(OSError):
                os.unlink(sock)
            received = asyncio.get_running_loop().create_future()

            async def receive(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
                try:
                    with open(tmp, "wb") as fh:
                        while chunk := await reader.read(1 << 20):
                            fh.write(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
                    if not received.done():
                        received.set_result(True)
                except Exception as exc:  # noqa: BLE001
                    if not received.done():
                        received.set_exception(exc)
                finally:
                    writer.close()

            server = await asyncio.start_unix_server(receive, sock)
            try:
                async with QMPClient(self.guests.sock(uuid, "qmp.sock"), 10.0) as qmp:
                    await qmp.execute("migrate-set-parameters",
                                      {"max-bandwidth": 8 << 30, "downtime-limit": 2000})
                    await qmp.execute("migrate", {"uri": f"unix:{sock}"})
                    await _wait_migration(qmp, 300.0)
                await asyncio.wait_for(received, 60.0)
                os.replace(tmp, target)
                await self.processes.qmp(uuid, "quit")
                await self.processes.wait_exit(uuid, 10.0)
            except Exception as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                with contextlib.suppress(QMPError):
                    await self.processes.qmp(uuid, "cont")
                raise DriverError(f"suspend of {uuid} failed: {exc}") from exc
            finally:
                server.close()
                with contextlib.suppress(OSError):
                    os.unlink(sock)

    async def resume(self, instance: InstanceSpec) -> None:
        """Restore a suspended guest (nothing for one that runs)."""
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            if not (self.guests.dir(uuid) / "suspend.state").exists():
                if self.processes.pid(uuid) is None:
                    raise DriverError(f"instance {uuid} is not suspended")
                return
            await self.restore(uuid, state)

    async def restore(self, uuid: str, state: dict[str, Any]) -> None:
        """Start the guest from ``suspend.state`` (the caller holds its lock)."""
        d = self.guests.dir(uuid)
        saved = d / "suspend.state"
        await self.processes.start(uuid, state, incoming=True)
        sock = self.guests.sock(uuid, "incoming.sock")
        with contextlib.suppress(OSError):
            os.unlink(sock)
        try:
            async with QMPClient(self.guests.sock(uuid, "qmp.sock"), 10.0) as qmp:
                await qmp.execute("migrate-incoming", {"uri": f"unix:{sock}"})
                _reader, writer = await asyncio.open_unix_connection(sock)
                with open(saved, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        writer.write(chunk)
                        await writer.drain()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 120.0
                while loop.time() < deadline:
                    status = (await qmp.execute("query-status")).get("status")
                    if status != "inmigrate":
                        break
                    await asyncio.sleep(0.05)
                if status in ("paused", "postmigrate", "prelaunch"):
                    await qmp.execute("cont")
                elif status != "running":
                    raise DriverError(f"restored guest is {status}")
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self.processes.stop(uuid, 0)
            raise DriverError(f"resume of {uuid} failed: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(sock)
        saved.unlink()


async def _wait_migration(qmp: QMPClient, timeout: float) -> None:
    """Wait until QEMU's outgoing migration completed (``DriverError`` when it failed or
    did not finish within ``timeout`` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        info = await qmp.execute("query-migrate")
        status = info.get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise DriverError(f"migration {status}: {info.get('error-desc', '')}")
        await asyncio.sleep(0.05)
    raise DriverError("migration did not finish in time")
