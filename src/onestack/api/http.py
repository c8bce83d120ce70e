"""The HTTP/1.1 protocol the services are served with: uvicorn's httptools protocol, but a
response's head and its body leave in one write.

uvicorn writes the status line and headers as soon as the app sends
``http.response.start`` and the body separately, so a client sees two TCP segments: it
wakes for the head, finds no body yet, sleeps and wakes again. One write halves the
wake-ups and context switches of each request on both sides (measured with a minimal ASGI
app: 2.0 -> 1.0 switches per request on each side), which is what bounds a sequential
client on a busy machine (``bench/network_bench.py``: faster in 7 of 8 back-to-back pairs,
by about a fifth at the median).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Largest header block held back for the body (anything bigger goes out at once).
_HEAD_MAX = 16384


class _HeadWithBody:
    """A transport proxy: a small write ending a header block (``\\r\\n\\r\\n``) is held
    until the next write, which carries it along, or until the loop's next iteration
    (a response without a body). Everything else is the transport's own."""

    __slots__ = ("inner", "_held", "_loop")

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self._held: bytes | None = None
        self._loop = loop

    def write(self, data: Any) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.inner.write(b"".join((held, data)))
        elif len(data) <= _HEAD_MAX and bytes(data[-4:]) == b"\r\n\r\n":
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self.inner.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self.inner.is_closing():  # (a peer gone meanwhile gets nothing)
                self.inner.write(held)

    def close(self) -> None:
        self.flush()
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each response's head together with its body."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _HeadWithBody(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes over the transport itself.
        proxy = self.transport
        if isinstance(proxy, _HeadWithBody):
            proxy.flush()
            self.transport = proxy.inner
        super().handle_websocket_upgrade()
