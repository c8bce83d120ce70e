"""The services' HTTP protocol: a response's head leaves with its body, in one write."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn

from onestack.api.http import HttpProtocol, _HeadWithBody


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_head_waits_for_the_body() -> None:
    inner = _Transport()
    t = _HeadWithBody(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
    assert inner.writes == []
    t.write(b"{}")
    assert inner.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
    t.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # no body: out on the loop's next turn
    await asyncio.sleep(0)
    assert inner.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"
    big = b"x" * 100_000 + b"\r\n\r\n"  # (not a head: never held)
    t.write(big)
    assert inner.writes[-1] == big
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.close()  # a held head goes out before the close
    assert inner.writes[-1] == b"HTTP/1.1 200 OK\r\n\r\n" and inner.closed
    assert t.get_extra_info("peername") == "info:peername"
    t2 = _HeadWithBody(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    t2.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await asyncio.sleep(0)  # the transport closed meanwhile: dropped, no error
    assert len(inner.writes) == 4


def test_served_responses_arrive_in_one_segment() -> None:
    """Through uvicorn: head and body of each response come in one read, keep-alive works,
    and bodies bigger than a segment still arrive whole."""
    body = b'{"ok": true}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        payload = body if scope["path"] == "/small" else b"y" * 1_000_000
        status = 204 if scope["path"] == "/empty" else 200
        headers = [(b"content-type", b"application/json")]
        if status != 204:
            headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if status == 204 else payload})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", access_log=False,
                                           log_level="warning", http=HttpProtocol))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        with socket.create_connection(("127.0.0.1", port)) as c:
            for path in ("/small", "/empty", "/small"):
                c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                data = c.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                if path == "/small":
                    assert head.startswith(b"HTTP/1.1 200") and rest == body
                else:
                    assert head.startswith(b"HTTP/1.1 204") and rest == b""
            c.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"y" * 10) or len(data) < 1_000_000:
                chunk = c.recv(1 << 20)
                assert chunk
                data += chunk
            assert data.partition(b"\r\n\r\n")[2] == b"y" * 1_000_000
    finally:
        server.should_exit = True
        thread.join(10)
