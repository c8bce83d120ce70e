"""A minimal VNC (RFB 3.3/3.7/3.8) server on loopback: the fake driver's remote console.

It answers the RFB handshake like a real VNC server without authentication (security type
None): version banner, security negotiation, then ``ServerInit`` for a 1x1 true-colour
desktop named after the server. Client messages after that are read and ignored (no screen
updates are ever sent). Enough for the console proxy, noVNC's handshake and Tempest's
``test_novnc``; it is also the test double of the proxy tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

LOG = logging.getLogger(__name__)

BANNER = b"RFB 003.008\n"
_SECURITY_NONE = 1


def server_init(name: str, width: int = 1, height: int = 1) -> bytes:
    """The ``ServerInit`` message: size, 32-bit true-colour pixel format, desktop name."""
    pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    raw = name.encode()
    return struct.pack(">HH", width, height) + pixel_format + struct.pack(">I", len(raw)) + raw


class FakeVncServer:
    """``await start()`` listens on ``127.0.0.1`` (an ephemeral port unless given);
    ``await stop()`` closes the listener and every open session."""

    def __init__(self, name: str = "onestack fake console", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return (self._server is not None and self._server.is_serving()
                and self._loop is asyncio.get_running_loop())

    async def start(self) -> tuple[str, int]:
        """Listen (once; later calls return the same address)."""
        if not self.running:
            if self._server is not None:  # left behind by a loop that has ended
                for sock in self._server.sockets:
                    sock.close()
                self._server = None
            self._server = await asyncio.start_server(self._session, self.host, self.port)
            self._loop = asyncio.get_running_loop()
            self.port = self._server.sockets[0].getsockname()[1]
        return self.host, self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._sessions):
            writer.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        self._sessions.add(writer)
        try:
            writer.write(BANNER)
            await writer.drain()
            version = await reader.readexactly(12)
            if version == b"RFB 003.003\n":
                # 3.3: the server picks the security type (a 32-bit word).
                writer.write(struct.pack(">I", _SECURITY_NONE))
            else:
                writer.write(bytes((1, _SECURITY_NONE)))
                await writer.drain()
                if (await reader.readexactly(1))[0] != _SECURITY_NONE:
                    return
                if version >= b"RFB 003.008\n":
                    writer.write(struct.pack(">I", 0))  # SecurityResult: OK
            await writer.drain()
            await reader.readexactly(1)  # ClientInit (shared flag)
            writer.write(server_init(self.name))
            await writer.drain()
            while await reader.read(4096):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._sessions.discard(writer)
            writer.close()
