"""A small asyncio client of the QEMU Machine Protocol (QMP) over a unix socket.

QMP is line-delimited JSON: on connect QEMU sends a greeting (``{"QMP": {...}}``), the client
answers ``{"execute": "qmp_capabilities"}``, then each ``{"execute": cmd, "arguments": {...},
"id": n}`` gets ``{"return": ...}`` or ``{"error": {"class", "desc"}}`` with the same id.
Asynchronous ``{"event": ...}`` messages may arrive at any time; they are kept in
``events`` (bounded) so callers can wait for e.g. ``SHUTDOWN``.

One QEMU monitor socket serves one client at a time, so callers open a connection per
operation (``async with QMPClient(path) as qmp: ...``); that is also what makes the driver
restart-safe: nothing but the socket path is needed to talk to a guest again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

#: ``qmp(command, arguments)`` on one guest's monitor (what the hot-plug helpers are given).
QmpCall = Callable[..., Awaitable[Any]]


class QMPError(Exception):
    """A QMP command failed, or the monitor could not be reached."""

    def __init__(self, message: str, error_class: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class


class QMPClient:
    """One QMP session (see the module docstring)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.events: deque[dict[str, Any]] = deque(maxlen=256)
        self.greeting: dict[str, Any] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._next_id = 0

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path, limit=1 << 22), self.timeout)
            self.greeting = await self._read()
        except (TimeoutError, OSError, ValueError) as exc:
            await self.close()
            raise QMPError(f"cannot reach the QMP socket {self.path}: {exc!r}") from exc
        if "QMP" not in self.greeting:
            await self.close()
            raise QMPError(f"{self.path} did not greet like QMP: {self.greeting!r}")
        await self.execute("qmp_capabilities")

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def __aenter__(self) -> QMPClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self, timeout: float | None = None) -> dict[str, Any]:
        if self._reader is None:
            raise QMPError("QMP session is closed")
        line = await asyncio.wait_for(self._reader.readline(),
                                      self.timeout if timeout is None else timeout)
        if not line:
            raise QMPError("QEMU closed the QMP connection", "Disconnected")
        message: dict[str, Any] = json.loads(line)
        return message

    async def execute(self, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float | None = None) -> Any:
        """Run ``command``; return its ``return`` value or raise ``QMPError``."""
        if self._writer is None:
            raise QMPError("QMP session is closed")
        self._next_id += 1
        msg_id = self._next_id
        request: dict[str, Any] = {"execute": command, "id": msg_id}
        if arguments:
            request["arguments"] = arguments
        try:
            self._writer.write(json.dumps(request).encode() + b"\n")
            await self._writer.drain()
            while True:
                reply = await self._read(timeout)
                if "event" in reply:
                    self.events.append(reply)
                    continue
                if reply.get("id") != msg_id:
                    continue
                if "error" in reply:
                    err = reply["error"]
                    raise QMPError(f"{command}: {err.get('desc', err)}", err.get("class"))
                return reply.get("return")
        except (TimeoutError, OSError, ValueError) as exc:
            raise QMPError(f"{command}: QMP connection failed: {exc!r}",
                           "Disconnected") from exc

    async def wait_event(self, name: str, timeout: float) -> dict[str, Any] | None:
        """Wait up to ``timeout`` s for event ``name`` (None on timeout or disconnect)."""
        for event in self.events:
            if event.get("event") == name:
                return event
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                message = await self._read(left)
            except (TimeoutError, QMPError, OSError, ValueError):
                return None
            if "event" in message:
                self.events.append(message)
                if message["event"] == name:
                    return message
        return None


async def qmp_command(path: str, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float = 5.0) -> Any:
    """Open a session, run one command, close."""
    async with QMPClient(path, timeout) as qmp:
        return await qmp.execute(command, arguments)


async def unplug_device(qmp: QmpCall, device_id: str, timeout: float, what: str) -> None:
    """Hot-unplug device ``device_id`` through ``qmp(command, arguments)`` and return once
    the guest released it: ``device_del`` (asked again every 10 s: the guest may miss a
    request), polling until QEMU no longer has the device. ``DriverError`` naming ``what``
    after ``timeout`` s; a device QEMU does not have is no error."""
    from onestack.drivers.hypervisor.base import DriverError

    path = f"/machine/peripheral/{device_id}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    asked = -1e9
    while True:
        try:
            await qmp("qom-get", {"path": path, "property": "type"})
        except QMPError as exc:
            if exc.error_class in ("DeviceNotFound", "GenericError"):
                return  # gone (or never there)
            raise DriverError(f"QMP: {exc}") from exc
        now = loop.time()
        if now >= deadline:
            raise DriverError(f"the guest did not release {what} within {timeout:g} s")
        if now - asked >= 10.0:
            with contextlib.suppress(QMPError):
                await qmp("device_del", {"id": device_id})
            asked = now
        await asyncio.sleep(0.1)


async def add_device(qmp: QmpCall, args: dict[str, Any],
                     drop_backend: tuple[str, dict[str, Any]], refused: str) -> None:
    """Hot-plug a device through ``qmp(command, arguments)`` (``device_add`` with ``args``)
    whose backend is already added. When QEMU refuses the device the backend is deleted again
    (``drop_backend``: that QMP command and its arguments) and ``DriverError`` says
    ``refused`` with QEMU's reason."""
    from onestack.drivers.hypervisor.base import DriverError

    try:
        await qmp("device_add", args)
    except QMPError as exc:
        with contextlib.suppress(QMPError):
            await qmp(*drop_backend)
        raise DriverError(f"{refused}: {exc}") from exc


async def remove_device(qmp: QmpCall, device_id: str, timeout: float, what: str,
                        drop_backend: tuple[str, dict[str, Any]]) -> None:
    """``unplug_device``, then delete the device's backend (``drop_backend``: that QMP
    command and its arguments; a backend QEMU does not have is no error)."""
    await unplug_device(qmp, device_id, timeout, what)
    with contextlib.suppress(QMPError):
        await qmp(*drop_backend)
