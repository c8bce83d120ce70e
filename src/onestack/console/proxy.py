"""The console proxy: a WebSocket-to-TCP relay for VNC, compatible with noVNC/websockify.

One ASGI app (default port 6080, ``onestack up`` serves it) does two things:

* HTTP ``GET``: the noVNC pages (see :mod:`onestack.console.static`) and ``/healthcheck``.
* WebSocket (any path, as websockify): checks the request, then relays bytes both ways
  between the WebSocket (binary frames) and the guest's VNC server.

Checks, in order, each refusing the upgrade with an empty-bodied HTTP error and never
touching the guest:

1. ``Origin`` (sent by browsers): its host must be the host the request was sent to
   (``Host`` header) or one of ``allowed_origins``, its scheme http(s) — cross-site pages
   cannot open a console with the user's cookie (403).
2. The console token: the ``token`` query parameter; else ``path=?token=…`` in the query
   (the console URL's form); else a ``token`` cookie, or a ``path`` cookie holding
   ``?token=…`` (old noVNC copied the page's query into a cookie). Unknown, expired or
   malformed tokens, and tokens of deleted instances: 403.
3. ``check(connection)``, when given: is the console still where the token says (the
   compute agent is asked again, so a token made before a guest restarted can never reach
   another guest that took its VNC port)? No: 403.
4. Subprotocols: ``binary`` is chosen when offered; a client offering only others (the old
   base64 framing) gets 400.
5. The TCP connection to the guest's VNC server (time-boxed): failing, 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from starlette.types import Message, Receive, Scope, Send

from onestack.console.static import StaticPages
from onestack.console.tokens import ConsoleConnection, ConsoleTokenStore

LOG = logging.getLogger(__name__)

#: ``check(connection) -> bool``: may the proxy connect where the token says?
ConsoleCheck = Callable[[ConsoleConnection], Awaitable[bool]]
_READ_SIZE = 64 * 1024


def _token_in_query(query: str) -> str | None:
    params = parse_qs(query, keep_blank_values=False)
    if params.get("token"):
        return params["token"][0]
    inner = params.get("path")
    if inner:
        # path=?token=xxx (the console URL's query, unquoted once by parse_qs)
        sub = parse_qs(urlsplit(inner[0]).query or inner[0].lstrip("/?"))
        if sub.get("token"):
            return sub["token"][0]
    return None


def token_from_request(query_string: str, cookie_header: str | None) -> str | None:
    """The console token of a WebSocket request (see the module docstring for the forms)."""
    token = _token_in_query(query_string)
    if token or not cookie_header:
        return token
    # Parsed by hand: http.cookies treats "path" as an attribute, not a cookie.
    for part in cookie_header.split(";"):
        name, sep, value = part.strip().partition("=")
        value = value.strip().strip('"')
        if not sep or not value:
            continue
        if name == "token":
            return value
        if name == "path":
            token = _token_in_query(unquote(value).lstrip("/").lstrip("?"))
            if token:
                return token
    return None


def _hostname(host_header: str) -> str:
    try:
        return (urlsplit("//" + host_header).hostname or "").lower()
    except ValueError:
        return ""


def origin_allowed(origin: str | None, host_header: str | None,
                   allowed_origins: Iterable[str] = ()) -> bool:
    """Whether a WebSocket request's ``Origin`` may open a console.

    No ``Origin`` (a non-browser client) is allowed; ``null`` and unparsable origins are
    not. Otherwise the origin's scheme must be http/https and its host name the one the
    request was addressed to (``Host``) or listed in ``allowed_origins`` (host names,
    case-insensitive).
    """
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
        origin_host = (parts.hostname or "").lower()
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not origin_host:
        return False
    allowed = {a.strip().lower() for a in allowed_origins if a.strip()}
    if host_header and origin_host == _hostname(host_header):
        return True
    return origin_host in allowed


class ConsoleProxy:
    """The console proxy ASGI app (see the module docstring)."""

    def __init__(self, tokens: ConsoleTokenStore, *, allowed_origins: Iterable[str] = (),
                 check: ConsoleCheck | None = None, pages: StaticPages | None = None,
                 connect_timeout: float = 5.0) -> None:
        self.tokens = tokens
        self.allowed_origins = [a for a in allowed_origins if a.strip()]
        self.check = check
        self.pages = pages if pages is not None else StaticPages(None)
        self.connect_timeout = connect_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    # ------------------------------------------------------------------ HTTP
    async def _http(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        path = scope["path"]
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")])
            return
        if path in ("/healthcheck", "/"):
            await _respond(send, 200, b"OK" if path == "/healthcheck"
                           else b"onestack console proxy\n", head=method == "HEAD")
            return
        page = self.pages.get(path)
        if page is None:
            await _respond(send, 404, b"Not Found")
            return
        await _respond(send, 200, page.body, [(b"content-type", page.content_type.encode()),
                                              (b"cache-control", b"no-cache")],
                       head=method == "HEAD")

    # ------------------------------------------------------------------ WebSocket
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if not origin_allowed(headers.get("origin"), headers.get("host"),
                              self.allowed_origins):
            LOG.info("console: refused origin %r", headers.get("origin"))
            await _deny(scope, send, 403)
            return
        token = token_from_request(scope.get("query_string", b"").decode("latin-1"),
                                   headers.get("cookie"))
        conn = None
        if token:
            try:
                conn = await asyncio.to_thread(self.tokens.validate, token)
            except Exception:  # noqa: BLE001 - a database failure refuses, never a 500
                LOG.exception("console: token lookup failed")
                await _deny(scope, send, 503)
                return
        if conn is None:
            LOG.info("console: refused an invalid or expired token")
            await _deny(scope, send, 403)
            return
        if self.check is not None:
            try:
                current = await self.check(conn)
            except Exception:  # noqa: BLE001
                LOG.exception("console: console check failed")
                current = False
            if not current:
                LOG.info("console: the console of %s moved; token refused",
                         conn.instance_uuid)
                await _deny(scope, send, 403)
                return
        offered = list(scope.get("subprotocols") or [])
        if offered and "binary" not in offered:
            await _deny(scope, send, 400)
            return
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(conn.host, conn.port), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            LOG.warning("console: cannot reach %s:%s for %s: %s", conn.host, conn.port,
                        conn.instance_uuid, exc)
            await _deny(scope, send, 502)
            return
        accept: Message = {"type": "websocket.accept"}
        if offered:
            accept["subprotocol"] = "binary"
        try:
            await send(accept)
            LOG.info("console: relaying %s to %s:%s", conn.instance_uuid, conn.host,
                     conn.port)
            await _relay(receive, send, reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _relay(receive: Receive, send: Send, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    """Copy WebSocket messages to the TCP stream and TCP data to binary messages until
    either side ends; then close the other."""

    async def client_to_guest() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg["type"] != "websocket.receive":
                continue
            data = msg.get("bytes")
            if data is None:
                data = (msg.get("text") or "").encode()
            if data:
                writer.write(data)
                await writer.drain()

    async def guest_to_client() -> None:
        while data := await reader.read(_READ_SIZE):
            await send({"type": "websocket.send", "bytes": data})

    up = asyncio.create_task(client_to_guest())
    down = asyncio.create_task(guest_to_client())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        results = await asyncio.gather(up, down, return_exceptions=True)
    for res in results:
        if isinstance(res, Exception) and not isinstance(res, OSError | ConnectionError):
            LOG.debug("console relay ended: %r", res)
    if down in done:
        # The guest side ended: tell the client (it may already be gone).
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]] | None = None,
                   head: bool = False) -> None:
    hdrs = list(headers or [(b"content-type", b"text/plain; charset=utf-8")])
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _deny(scope: Scope, send: Send, status: int) -> None:
    """Refuse a WebSocket upgrade with an HTTP ``status`` and an empty body (a client that
    reads frames after the handshake sees the connection end, not data). 403 is the
    ASGI close-before-accept (servers answer it with an empty 403); other codes need the
    server's denial-response extension, else they become 403 too."""
    if status != 403 and "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "websocket.http.response.body", "body": b""})
    else:
        await send({"type": "websocket.close", "code": 1008})
