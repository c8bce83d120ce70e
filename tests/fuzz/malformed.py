"""Malformed HTTP over raw sockets: no answer is a 5xx (a 4xx, or the connection closes
without one for what is not HTTP at all), every answer is HTTP, and the service answers a
well-formed request afterwards. (``Connection: close`` on every close is checked by
``tests/unit/api/test_http.py``.)"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

#: (name, bytes to send). Each is sent on a fresh connection.
CASES: list[tuple[str, bytes]] = [
    ("garbage", b"\x00\x01\x02\x03 hello\r\n\r\n"),
    ("no version", b"GET /\r\n\r\n"),
    ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("http/0.9", b"GET /\n"),
    ("bad method", b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("space in path", b"GET /a b/c HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("raw utf-8 path", "GET /v2.1/servers/é HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
    ("raw non-utf-8 path", b"GET /v2.1/\xed\xa0\x80 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("raw bytes in query", b"GET /?a=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: x\r\nBroken\r\n\r\n"),
    ("header name space", b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n"),
    ("bare lf", b"GET / HTTP/1.1\nHost: x\n\n"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n"),
    ("nul in header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("latin-1 token", b"GET /v2.1/servers HTTP/1.1\r\nHost: x\r\nX-Auth-Token: \xe9\xff\r\n\r\n"),
    ("negative length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"),
    ("bad length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
    ("huge length", b"POST /v2.1/servers HTTP/1.1\r\nHost: x\r\nContent-Length: "
     + str(2 ** 70).encode() + b"\r\n\r\n{}"),
    ("two lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Content-Length: 3\r\n\r\n{}"),
    ("length and chunked", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n{}\r\n0\r\n\r\n"),
    ("huge chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
    ("unknown encoding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}"),
    ("long request line", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("many headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(500))
     + b"\r\n"),
    ("big header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 200000 + b"\r\n\r\n"),
    ("upgrade h2c", b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
     b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
    ("bad websocket", b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
     b"Connection: Upgrade\r\nSec-WebSocket-Version: 99\r\n\r\n"),
    ("expect weird", b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 999-nothing\r\n"
     b"Content-Length: 2\r\n\r\n{}"),
    ("absolute uri", b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("connect", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("pipelined garbage", b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01\x02\x00"),
    ("tls hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64),
]


def _read_until_close(c: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError, socket.timeout):
        while len(data) < limit:
            piece = c.recv(65536)
            if not piece:
                break
            data += piece
            if _complete(data):
                break
    return data


def _complete(data: bytes) -> bool:
    """A whole response with a Content-Length (enough to judge it)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value)
            except ValueError:
                return True
    return False


def statuses(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(status, head) of each response in ``data``."""
    while data.startswith(b"HTTP/"):
        head, _, rest = data.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return
        yield status, head
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = rest[length:]


def run(port: int, timeout: float = 10.0) -> list[str]:
    """Every case against ``port``; returns the problems found (empty: all well)."""
    problems: list[str] = []
    for name, raw in CASES:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                c.sendall(raw)
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_WR)
            data = _read_until_close(c)
        for status, head in statuses(data):
            if status >= 500:
                problems.append(f"{name}: {status} {head[:120]!r}")
        if data and not data.startswith(b"HTTP/1."):
            problems.append(f"{name}: not an HTTP response: {data[:80]!r}")
        if not healthy(port, timeout):
            problems.append(f"{name}: the service stopped answering")
    return problems


def healthy(port: int, timeout: float = 10.0) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
        data = _read_until_close(c)
    return data.startswith(b"HTTP/1.1 200")
