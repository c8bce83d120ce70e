"""The QEMU process of each guest: the accelerator it runs under, starting it from the
guest's state, talking to it over QMP, its run state, and stopping it.

QEMU runs in its own session (``setsid``) with a pidfile in the instance directory, so it
outlives the agent: a guest's pid is read from ``qemu.pid`` and checked against ``/proc``
(any driver object finds it again); the ``Popen`` objects of the processes this driver
object started are kept only so they are reaped. A start plugs the guest's taps and waits
until the data plane wired them, then launches QEMU on a free VNC display and returns once
its monitor answers. A stop asks the guest (ACPI power button) for up to ``timeout`` s, then
QEMU (``quit``), then kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import time
from typing import Any

from onestack.drivers.hypervisor.base import DriverError, PowerState
from onestack.drivers.hypervisor.qemu.cmdline import guest_argv
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.host import KvmProbe, free_vnc_display, pid_alive
from onestack.drivers.hypervisor.qemu.nics import GuestNics, QmpCall, ports_of
from onestack.drivers.hypervisor.qemu.qmp import QMPClient, QMPError

#: QEMU's run states (``query-status``) as the power states the contract reports.
_RUNSTATES = {
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED,
    "postmigrate": PowerState.PAUSED,
    "finish-migrate": PowerState.PAUSED,
    "save-vm": PowerState.PAUSED,
    "restore-vm": PowerState.PAUSED,
    "prelaunch": PowerState.PAUSED,
    "inmigrate": PowerState.PAUSED,
    "debug": PowerState.PAUSED,
    "io-error": PowerState.PAUSED,
    "watchdog": PowerState.PAUSED,
    "colo": PowerState.PAUSED,
    "suspended": PowerState.SUSPENDED,
    "shutdown": PowerState.SHUTDOWN,
    "internal-error": PowerState.CRASHED,
    "guest-panicked": PowerState.CRASHED,
}


class GuestProcesses:
    """Starts, watches and stops the guests' QEMU processes (see the module docstring).

    ``accel``: ``auto`` (KVM when a time-boxed probe, ``kvm_probe_timeout`` s, boots under
    it; TCG otherwise), ``kvm`` or ``tcg``.
    """

    def __init__(self, guests: QemuGuests, nics: GuestNics, qemu_binary: str,
                 accel: str = "auto", kvm_probe_timeout: float = 3.0) -> None:
        self.guests = guests
        self.nics = nics
        self.qemu_binary = qemu_binary
        self.requested_accel = accel
        self.kvm_probe_timeout = kvm_probe_timeout
        self._accel: str | None = None
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def accel(self) -> str:
        """``kvm`` or ``tcg`` (probed on first use when ``auto``; probed again while the
        verdict is a provisional one, see ``KvmProbe``)."""
        if self._accel is None:
            if self.requested_accel in ("kvm", "tcg"):
                self._accel = self.requested_accel
            else:
                accel, final = KvmProbe.verdict(self.qemu_binary,
                                                self.guests.root / "_accel.json",
                                                self.kvm_probe_timeout)
                if not final:
                    return accel
                self._accel = accel
        return self._accel

    # ------------------------------------------------------------------ watching
    def pid(self, uuid: str) -> int | None:
        """The pid of the guest's live QEMU, or None."""
        child = self._children.get(uuid)
        if child is not None and child.poll() is not None:
            self._children.pop(uuid, None)  # reaped
        try:
            pid = int((self.guests.dir(uuid) / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid, uuid) else None

    def suspended(self, uuid: str) -> bool:
        """Whether the guest is saved to ``suspend.state`` with no QEMU running."""
        return (self.guests.dir(uuid) / "suspend.state").exists() and self.pid(uuid) is None

    def reap(self, uuid: str) -> None:
        """Collect the exit of a QEMU this object started (after a stop)."""
        child = self._children.pop(uuid, None)
        if child is not None:
            with contextlib.suppress(Exception):
                child.wait(timeout=1)

    async def qmp(self, uuid: str, command: str, arguments: dict[str, Any] | None = None,
                  timeout: float = 10.0) -> Any:
        """Run one QMP command on the guest's monitor."""
        async with QMPClient(self.guests.sock(uuid, "qmp.sock"), timeout) as qmp:
            try:
                return await qmp.execute(command, arguments)
            except QMPError as exc:
                # QEMU may close the socket before it answers ``quit``.
                if command == "quit" and exc.error_class == "Disconnected":
                    return None
                raise

    def monitor(self, uuid: str) -> QmpCall:
        """``qmp(command, arguments)`` on the guest's monitor, for the hot-plug helpers."""
        return functools.partial(self.qmp, uuid)

    async def status(self, uuid: str) -> str | None:
        """QEMU's run state, or None when no QEMU runs for the guest."""
        if self.pid(uuid) is None:
            return None
        try:
            result = await self.qmp(uuid, "query-status", timeout=5.0)
        except QMPError:
            return "unknown" if self.pid(uuid) is not None else None
        return str(result.get("status"))

    async def power_state(self, uuid: str) -> PowerState:
        status = await self.status(uuid)
        if status is None:
            # Suspended (memory saved in suspend.state) or stopped: no process, SHUTDOWN
            # either way, as libvirt reports a managed-saved domain (Nova shows power_state
            # 4 for a SUSPENDED server). SUSPENDED is the guest's own ACPI S3 sleep.
            return PowerState.SHUTDOWN
        return _RUNSTATES.get(status, PowerState.NOSTATE)

    async def wait_exit(self, uuid: str, timeout: float) -> bool:
        """Whether the guest's QEMU is gone within ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.pid(uuid) is None:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ start
    async def start(self, uuid: str, state: dict[str, Any], incoming: bool = False) -> None:
        """Start the guest's QEMU from ``state`` (nothing when it runs already)."""
        d = self.guests.dir(uuid)
        if self.pid(uuid) is not None:
            return
        for stale in ("qemu.pid", "qmp.sock"):
            with contextlib.suppress(OSError):
                (d / stale).unlink()
        ports = ports_of(state["spec"])
        await asyncio.to_thread(self.nics.plug, ports)
        await self.nics.wait_plugged(ports)
        for attempt in range(4):
            try:
                await self._launch(uuid, state, incoming, free_vnc_display(uuid))
                return
            except DriverError as exc:
                # Another process took the VNC port between our check and QEMU's bind.
                if "VNC" not in str(exc) or attempt == 3:
                    raise

    def argv(self, uuid: str, state: dict[str, Any], incoming: bool = False,
             vnc_display: int = 0) -> list[str]:
        return guest_argv(self.qemu_binary, self.accel, uuid, self.guests.dir(uuid),
                          self.guests.sock(uuid, "qmp.sock"), state, vnc_display, incoming)

    async def _launch(self, uuid: str, state: dict[str, Any], incoming: bool,
                      vnc_display: int) -> None:
        d = self.guests.dir(uuid)
        argv = self.argv(uuid, state, incoming, vnc_display)
        log = open(d / "qemu.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    cwd=d, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise DriverError(f"cannot start QEMU: {exc}") from exc
        finally:
            log.close()
        self._children[uuid] = proc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30.0
        while loop.time() < deadline:
            if proc.poll() is not None:
                self._children.pop(uuid, None)
                raise DriverError(f"QEMU exited ({proc.returncode}): {self._qemu_error(uuid)}")
            if (d / "qemu.pid").exists():
                try:
                    async with QMPClient(self.guests.sock(uuid, "qmp.sock"), 2.0) as qmp:
                        await qmp.execute("query-status")
                    return
                except QMPError:
                    pass
            await asyncio.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise DriverError("QEMU did not come up within 30 s")

    def _qemu_error(self, uuid: str) -> str:
        try:
            text = (self.guests.dir(uuid) / "qemu.log").read_text(errors="replace")
        except OSError:
            return "no log"
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("--- ")]
        return "; ".join(lines[-3:])[-500:] or "no error message"

    # ------------------------------------------------------------------ stop
    async def stop(self, uuid: str, timeout: float = 0.0) -> None:
        """Stop the guest's QEMU: ACPI power button for ``timeout`` s, then quit, then kill."""
        if self.pid(uuid) is None:
            return
        if timeout > 0:
            with contextlib.suppress(QMPError):
                status = await self.status(uuid)
                if status == "running":
                    await self.qmp(uuid, "system_powerdown")
                    if await self.wait_exit(uuid, timeout):
                        return
        with contextlib.suppress(QMPError):
            await self.qmp(uuid, "quit", timeout=3.0)
        if await self.wait_exit(uuid, 3.0):
            return
        pid = self.pid(uuid)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not await self.wait_exit(uuid, 5.0):
            raise DriverError(f"QEMU of {uuid} does not die")
