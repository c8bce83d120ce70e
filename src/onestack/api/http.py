"""The HTTP/1.1 protocol the services are served with: uvicorn's httptools protocol, but a
response's head and its body leave in one write, a sized request body can be read straight
from the socket (the ``onestack.body_reader`` ASGI extension, :class:`BodyReader`), and a
response body can be a file range sent with ``sendfile`` (ASGI's ``http.response.zerocopy``
extension, :class:`_ZeroCopySend`).

uvicorn writes the status line and headers as soon as the app sends
``http.response.start`` and the body separately, so a client sees two TCP segments: it
wakes for the head, finds no body yet, sleeps and wakes again. One write halves the
wake-ups and context switches of each request on both sides (measured with a minimal ASGI
app: 2.0 -> 1.0 switches per request on each side), which is what bounds a sequential
client on a busy machine (``bench/network_bench.py``: faster in 7 of 8 back-to-back pairs,
by about a fifth at the median).

Request heads are bounded as common servers bound them (:data:`MAX_REQUEST_LINE`,
:data:`MAX_HEADER_LINE`, :data:`MAX_HEADERS`, :data:`MAX_HEAD`): a request line too long is
answered ``414 URI Too Long``, too many or too big header fields ``431 Request Header Fields
Too Large``, and the connection is closed (``Connection: close``) as it is after any
malformed request. A response given before the request's body has fully arrived also closes
the connection (with ``Connection: close``): the rest of the body is never read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

LOG = logging.getLogger(__name__)

#: Largest header block held back for the body (anything bigger goes out at once).
_HEAD_MAX = 16384
#: The ASGI scope extension under which a request offers its :class:`BodyReader`.
BODY_READER = "onestack.body_reader"
#: Smallest declared body offered a :class:`BodyReader` (smaller ones arrive in one piece
#: anyway; not building readers for them keeps ordinary JSON requests cheap).
BODY_READER_MIN = 64 << 10
#: Seconds a direct body read waits for the client to send more before giving up.
BODY_IDLE_TIMEOUT = 120.0
#: ASGI's zero-copy send extension: ``{"type": ZEROCOPY, "file": fd or file object,
#: "offset": int, "count": int, "more_body": bool}`` after ``http.response.start``.
ZEROCOPY = "http.response.zerocopy"
#: Seconds a zero-copy send waits for the client to accept more before giving up.
SEND_IDLE_TIMEOUT = 120.0
#: Longest request target (URL) accepted; longer: 414 (Apache and nginx allow 8 KiB).
MAX_REQUEST_LINE = 16384
#: Longest single header field (name and value) accepted; longer: 431.
MAX_HEADER_LINE = 16384
#: Most header fields in one request (Apache's ``LimitRequestFields``); more: 431.
MAX_HEADERS = 100
#: Most bytes of one request head (request line and all header fields); more: 431.
MAX_HEAD = 65536


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a request head over a limit (httptools
    turns it into a parser error, which :meth:`HttpProtocol.send_400_response` answers)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_REFUSALS = {
    414: (b"HTTP/1.1 414 URI Too Long\r\n", b"Request line too long."),
    431: (b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
          b"Request header fields too large."),
}


def _wait(fd: int, event: int, timeout: float) -> bool:
    """Whether ``fd`` became ready for ``event`` (``select.POLLIN``/``POLLOUT``) in time."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(timeout * 1000))


class BodyGone(Exception):
    """The client closed, reset or stalled before sending the whole declared body."""


class _Flow(FlowControl):
    """uvicorn's read/write flow control, whose reading a :class:`BodyReader` can lock
    paused for good (the socket is then read by the reader alone)."""

    locked = False

    def resume_reading(self) -> None:
        if not self.locked:
            super().resume_reading()


class BodyReader:
    """The rest of a request body with a ``Content-Length``, read from the socket directly.

    For big uploads: uvicorn hands a body to the app in pieces of at most 64 KiB through the
    event loop (read, parse, copy, wake the task, copy again), which costs the loop about as
    much CPU as the hashing of the data. With the reader the app calls :meth:`take` on the
    loop, before it ever calls ``receive()``: the protocol stops reading the socket for good,
    :meth:`take` returns the body bytes that already arrived and how many are still to come,
    and a worker thread then reads those with :meth:`readinto` (no event loop, no GIL while
    it waits or copies). The connection closes after the response, as the HTTP parser never
    saw the rest of the body. :meth:`close` must follow (it releases the socket duplicate).
    """

    def __init__(self, protocol: HttpProtocol, cycle: RequestResponseCycle, length: int) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self.length = length
        #: Body bytes still to be read from the socket (after :meth:`take`).
        self.remaining = 0
        self._fd: int | None = None
        self.taken = False

    def take(self) -> tuple[bytes, int]:
        """Stop the protocol reading; returns (bytes already received, bytes to come).

        Call on the event loop, before any ``receive()`` of the request. Answers an
        ``Expect: 100-continue`` as ``receive()`` would.
        """
        if self.taken:
            raise RuntimeError("the body reader was already taken")
        proto, cycle = self._protocol, self._cycle
        if cycle.disconnected or proto.transport.is_closing():
            raise BodyGone("the client disconnected")
        self.taken = True
        flow = proto.flow
        if isinstance(flow, _Flow):
            flow.locked = True
        flow.pause_reading()
        cycle.keep_alive = False
        if cycle.waiting_for_100_continue:
            cycle.waiting_for_100_continue = False
            proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        head = bytes(cycle.body)
        cycle.body = bytearray()
        self.remaining = max(0, self.length - len(head)) if cycle.more_body else 0
        if self.remaining:
            sock = proto.transport.get_extra_info("socket")
            # A duplicate: the transport may close its descriptor while a thread reads.
            self._fd = os.dup(sock.fileno())
        return head, self.remaining

    def readinto(self, buf: memoryview, timeout: float = BODY_IDLE_TIMEOUT) -> int:
        """Fill ``buf`` with body bytes (blocking; for a worker thread); returns how many,
        ``len(buf)`` unless the body ends first, 0 once it has all been read.

        Raises :class:`BodyGone` if the client closes, resets or sends nothing for
        ``timeout`` seconds before the declared length.
        """
        want = min(len(buf), self.remaining)
        got = 0
        fd = self._fd
        while got < want:
            if fd is None:
                raise BodyGone("the body reader is closed")
            try:
                n = os.readv(fd, [buf[got:want]])
            except BlockingIOError:
                if not _wait(fd, select.POLLIN, timeout):
                    raise BodyGone(f"no body data for {timeout:.0f} s") from None
                continue
            except OSError as exc:
                raise BodyGone(f"the connection failed: {exc.strerror}") from None
            if n == 0:
                raise BodyGone(f"the client closed the connection with {self.remaining - got} "
                               "body bytes outstanding")
            got += n
        self.remaining -= got
        return got

    def close(self) -> None:
        """Release the socket duplicate (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


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


def _sendfile_all(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of ``file_fd`` from ``offset`` on the non-blocking socket
    (blocking; for a worker thread); returns how many were sent (fewer if the file is
    shorter). Raises ``OSError`` when the peer goes away or stalls."""
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, count - sent)
        except BlockingIOError:
            if not _wait(sock_fd, select.POLLOUT, SEND_IDLE_TIMEOUT):
                raise TimeoutError("the client accepted no data for "
                                   f"{SEND_IDLE_TIMEOUT:.0f} s") from None
            continue
        if n == 0:
            break
        sent += n
    return sent


class _ZeroCopySend:
    """A request cycle's ``send`` that also takes ``http.response.zerocopy`` messages: the
    file range goes from the page cache to the socket with ``sendfile`` in a worker thread
    (no copies through Python, no event-loop work per chunk). Everything else goes to
    uvicorn's ``send``, which also completes the response."""

    def __init__(self, protocol: HttpProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._send = cycle.send

    async def __call__(self, message: Any) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            cycle = self._cycle
            if cycle.more_body and cycle.keep_alive:
                # Answered before the whole body arrived: the connection cannot be reused
                # without reading the rest, so it closes (uvicorn adds ``Connection: close``).
                cycle.keep_alive = False
        if kind != ZEROCOPY:
            await self._send(message)
            return
        cycle, transport = self._cycle, self._protocol.transport
        if not cycle.response_started or cycle.response_complete:
            raise RuntimeError(f"{ZEROCOPY} needs a started, incomplete response")
        if cycle.chunked_encoding:
            raise RuntimeError(f"{ZEROCOPY} needs a Content-Length response")
        more_body = bool(message.get("more_body", False))
        count = int(message.get("count", 0))
        if cycle.scope["method"] == "HEAD" or cycle.disconnected or count <= 0:
            await self._send({"type": "http.response.body", "body": b"",
                              "more_body": more_body})
            return
        if count > cycle.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        file = message["file"]
        file_fd = file if isinstance(file, int) else file.fileno()
        flush = getattr(transport, "flush", None)
        if flush is not None:
            flush()  # the held head first
        while transport.get_write_buffer_size() and not transport.is_closing():
            await asyncio.sleep(0.001)
        sock_fd = os.dup(transport.get_extra_info("socket").fileno())
        try:
            sent = await asyncio.get_running_loop().run_in_executor(
                None, _sendfile_all, sock_fd, file_fd, int(message.get("offset", 0)), count)
        except OSError:
            cycle.disconnected = True  # the client went away (or stalled)
            transport.close()
            return
        finally:
            os.close(sock_fd)
        cycle.expected_content_length -= sent
        if sent < count:
            raise RuntimeError("the file is shorter than the response's Content-Length")
        await self._send({"type": "http.response.body", "body": b"", "more_body": more_body})


def _after_response_guard(app: Any, cycle: RequestResponseCycle) -> Any:
    """``app``, but an exception it raises once its response is complete is logged and
    dropped: the client has its whole response (Starlette's error layer, for one, sends
    its 500 and then re-raises), so the connection stays usable instead of being closed
    without ``Connection: close``."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except Exception:
            if not cycle.response_complete:
                raise
            LOG.exception("error after the response to %s %s was complete",
                          scope.get("method"), scope.get("path"))

    return guarded


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each response's head together with its body,
    with bounded request heads."""

    _in_head = False
    _head_bytes = 0
    _fields_bytes = 0
    _refusal: int | None = None
    _over: int | None = None  # the limit a parser callback found exceeded

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _Flow(transport)
        self.transport = _HeadWithBody(transport, self.loop)  # type: ignore[assignment]

    # ------------------------------------------------------------------ head limits
    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused: the connection is closing, nothing more is parsed
        # Bytes arriving while a head is incomplete count towards its limit (a read that
        # also carries a previous request's tail counts whole: a bound, never an excess).
        super().data_received(data)
        if self._refusal is None and self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._refuse(431 if self.url or self.headers else 414)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._fields_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_REQUEST_LINE:
            self._over = 414
            raise _HeadRefused(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._fields_bytes += size + 4
        if (len(self.headers) >= MAX_HEADERS or size > MAX_HEADER_LINE
                or len(self.url) + self._fields_bytes > MAX_HEAD):
            self._over = 431
            raise _HeadRefused(431)
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to any parser error, a limit refused in a callback among them.
        if self._over is not None:
            self._refuse(self._over)
            return
        self._refusal = 400
        super().send_400_response(msg)

    def _refuse(self, status: int) -> None:
        """Answer ``status`` (414/431) with ``Connection: close`` and close."""
        self._refusal = status
        line, text = _REFUSALS[status]
        self.transport.write(b"".join((
            line, b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: ", str(len(text)).encode(), b"\r\n",
            b"connection: close\r\n\r\n", text)))
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:  # an upgrade: no new cycle
            return
        extensions = self.scope.setdefault("extensions", {})  # type: ignore[misc]
        extensions[ZEROCOPY] = {}
        # The cycle's task has not run yet: it looks ``send`` up when it starts.
        cycle.send = _ZeroCopySend(self, cycle)  # type: ignore[method-assign]
        # A body reader for a big sized body of a request that starts at once (not a queued
        # pipelined one: the socket's bytes are still its predecessor's business).
        if self.pipeline:
            return
        length = None
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return
        if length is not None and length >= BODY_READER_MIN:
            extensions[BODY_READER] = BodyReader(self, cycle, length)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        super()._start_asgi_task(cycle, _after_response_guard(app, cycle))

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes over the transport itself.
        proxy = self.transport
        if isinstance(proxy, _HeadWithBody):
            proxy.flush()
            self.transport = proxy.inner
        super().handle_websocket_upgrade()
