"""The services' HTTP protocol: a response's head leaves with its body, in one write; a sized
request body can be read from the socket directly (``onestack.body_reader``); a response body
can be a file range sent with ``sendfile`` (``http.response.zerocopy``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.concurrency import run_in_threadpool

from onestack.api.http import (
    BODY_READER,
    ZEROCOPY,
    BodyGone,
    BodyReader,
    HttpProtocol,
    _HeadWithBody,
)


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

    with _serve(app) as port, socket.create_connection(("127.0.0.1", port)) as c:
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


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[int]:
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
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _response(c: socket.socket) -> tuple[bytes, bytes]:
    """Read one response with a Content-Length: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = c.recv(65536)
        assert piece, data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        piece = c.recv(1 << 20)
        assert piece
        body += piece
    return head, body


def _upload_app(results: list[Any]) -> Any:
    """Reads a sized body with the body reader (any other body with receive()), answers its
    md5; records what it saw."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        reader: BodyReader | None = scope.get("extensions", {}).get(BODY_READER)
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            if reader is not None:
                head, rest = reader.take()
                md5.update(head)
                buf = memoryview(bytearray(1 << 16))

                def pump() -> None:
                    while n := reader.readinto(buf):
                        md5.update(buf[:n])

                try:
                    await run_in_threadpool(pump)
                finally:
                    reader.close()
                results.append(("direct", len(head), rest))
            else:
                more = True
                while more:
                    msg = await receive()
                    md5.update(msg.get("body", b""))
                    more = msg.get("more_body", False)
                results.append(("receive",))
        except BodyGone as exc:
            results.append(("gone", str(exc)))
            return
        out = md5.hexdigest().encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    return app


def test_body_reader_reads_sized_bodies_from_the_socket() -> None:
    results: list[Any] = []
    body = os.urandom(3 << 20)
    want = hashlib.md5(body, usedforsecurity=False).hexdigest().encode()
    with _serve(_upload_app(results)) as port:
        # A sized body: read directly, whatever already arrived with the head counted once.
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body[:1000])
            threading.Event().wait(0.05)
            c.sendall(body[1000:])
            head, got = _response(c)
            assert head.startswith(b"HTTP/1.1 200") and got == want
            assert b"connection: close" in head.lower()  # the parser never saw the rest
            assert c.recv(10) == b""
        assert results[-1][0] == "direct" and results[-1][1] + results[-1][2] == len(body)
        # Expect: 100-continue is answered before the body is read.
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            assert c.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            c.sendall(body)
            assert _response(c)[1] == want
        # Chunked bodies are not offered a reader: receive() as ever, keep-alive kept.
        with socket.create_connection(("127.0.0.1", port)) as c:
            for _ in range(2):
                c.sendall(b"PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n")
                head, got = _response(c)
                assert got == hashlib.md5(b"hello", usedforsecurity=False).hexdigest().encode()
                assert results[-1] == ("receive",)


def test_body_reader_reports_a_client_that_stops_short() -> None:
    results: list[Any] = []
    with _serve(_upload_app(results)) as port:
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                      + b"z" * 300_000)
            threading.Event().wait(0.2)
        for _ in range(200):
            if results:
                break
            threading.Event().wait(0.02)
        assert results and results[0][0] == "gone", results
        assert "outstanding" in results[0][1] or "connection" in results[0][1]


def test_zerocopy_sends_file_ranges() -> None:
    data = os.urandom(5 << 20)
    with tempfile.TemporaryFile() as fh:
        fh.write(data)
        fh.flush()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            assert ZEROCOPY in scope["extensions"]
            offset, count = (1000, 70_000) if scope["path"] == "/part" else (0, len(data))
            if scope["path"] == "/short":
                count = len(data) + 10  # the file ends first: the response is cut off
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(count).encode())]})
            await send({"type": ZEROCOPY, "file": fh.fileno(), "offset": offset,
                        "count": count, "more_body": False})

        with _serve(app) as port, socket.create_connection(("127.0.0.1", port)) as c:
            # keep-alive holds across zero-copy responses, heads stay in order
            for path, want in (("/all", data), ("/part", data[1000:71_000]), ("/all", data)):
                c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head, body = _response(c)
                assert head.startswith(b"HTTP/1.1 200") and body == want
            c.sendall(b"HEAD /part HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.recv(65536).endswith(b"content-length: 70000\r\n\r\n")
            # A client that leaves mid-body costs the server nothing but that connection.
            with socket.create_connection(("127.0.0.1", port)) as gone:
                gone.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                gone.sendall(b"GET /all HTTP/1.1\r\nHost: x\r\n\r\n")
                assert gone.recv(1000)
                gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            threading.Event().wait(0.2)
            c.sendall(b"GET /part HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(c)[1] == data[1000:71_000]
            c.sendall(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while piece := c.recv(1 << 20):
                got += piece
            assert len(got.partition(b"\r\n\r\n")[2]) == len(data)  # then closed


def test_zerocopy_refuses_chunked_responses() -> None:
    errors: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": ZEROCOPY, "file": 0, "offset": 0, "count": 1})
        except RuntimeError as exc:
            errors.append(str(exc))
        await send({"type": "http.response.body", "body": b"ok"})

    with _serve(app) as port, socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(65536).endswith(b"2\r\nok\r\n0\r\n\r\n")
    assert errors and "Content-Length" in errors[0]


# ---------------------------------------------------------------------- head limits, keep-alive
def _echo_app(seen: list[str]) -> Any:
    """Answers 200 with the path; ``/fail`` raises; ``/early`` answers 413 without reading;
    ``/raise-after`` raises after its response."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope["path"])
        if scope["path"] == "/fail":
            raise RuntimeError("boom")
        status = 413 if scope["path"] == "/early" else 200
        if status == 200:
            more = True
            while more:
                more = (await receive()).get("more_body", False)
        out = scope["path"].encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
        if scope["path"] == "/raise-after":  # what Starlette's error layer does after its 500
            raise RuntimeError("after the response")

    return app


def _read_all(c: socket.socket) -> bytes:
    """Everything until the server closes (a test timeout guards a server that does not)."""
    c.settimeout(10)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while piece := c.recv(65536):
            data += piece
    return data


def _closes_with(c: socket.socket, status: bytes) -> None:
    data = _read_all(c)
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 " + status), data[:200]
    assert b"\r\nconnection: close" in head, head


def _send_quietly(c: socket.socket, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        c.sendall(data)


def test_oversize_request_line_is_414_and_closes() -> None:
    seen: list[str] = []
    with _serve(_echo_app(seen)) as port, socket.create_connection(("127.0.0.1", port)) as c:
        _send_quietly(c, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        _closes_with(c, b"414")
    assert seen == []


def test_too_many_or_too_big_headers_are_431_and_close() -> None:
    seen: list[str] = []
    heads = [
        b"".join(b"X-H%d: v\r\n" % i for i in range(150)),          # too many fields
        b"X-Big: " + b"v" * 20000 + b"\r\n",                         # one field too long
        b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 9000) for i in range(9)),  # head too big
    ]
    with _serve(_echo_app(seen)) as port:
        for extra in heads:
            with socket.create_connection(("127.0.0.1", port)) as c:
                _send_quietly(c, b"GET /x HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
                _closes_with(c, b"431")
        # A header streamed without end (32 MB would be accepted whole before): refused
        # once past the limit, long before the client is done.
        with socket.create_connection(("127.0.0.1", port)) as c:
            _send_quietly(c, b"GET /x HTTP/1.1\r\nHost: x\r\nX-Huge: ")
            sent = 0
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while sent < 32 << 20:
                    c.sendall(b"v" * 65536)
                    sent += 65536
            assert sent < 32 << 20
            _closes_with(c, b"431")
        # Ordinary heads are still served.
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + b"t" * 8000 + b"\r\n\r\n")
            head, body = _response(c)
            assert head.startswith(b"HTTP/1.1 200") and body == b"/ok"
    assert seen == ["/ok"]


def test_connection_after_errors() -> None:
    """Kept connections serve the next request; closed ones say ``Connection: close``."""
    seen: list[str] = []
    with _serve(_echo_app(seen)) as port:
        # Malformed request: 400, closed with Connection: close.
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            _closes_with(c, b"400")
        # An application that raises: 500, closed with Connection: close.
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
            _closes_with(c, b"500")
        # Answered before the (big, still arriving) body: closed with Connection: close.
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
                      + b"x" * 1000)
            _closes_with(c, b"413")
        # An application that raises after its complete response: the connection is kept.
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"GET /raise-after HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = _response(c)
            assert body == b"/raise-after" and b"connection: close" not in head.lower()
            c.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(c)[1] == b"/next"
        # A complete request answered: the connection serves the next one, also pipelined.
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            assert _response(c)[1] == b"/a"
            c.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(c)[1] == b"/b"
            assert _response(c)[1] == b"/c"
