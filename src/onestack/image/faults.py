"""Glance's fault bodies: rendered as WebOb (Glance's framework) renders them, HTML by
default, JSON ``{"message", "code", "title"}`` when the client asks for ``application/json``
only, plain text when it asks for ``text/plain``. ``AcceptCapture`` (the image app's outermost
layer) remembers each request's Accept header for ``glance_fault``."""

from __future__ import annotations

import contextvars
import html
import json
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from onestack.api.explanations import EXPLANATIONS
from onestack.common.errors import APIError, NotFound

_ACCEPT: contextvars.ContextVar[str] = contextvars.ContextVar("image_accept", default="")



def _fault_kind(accept: str) -> str:
    """Which body WebOb would choose for this Accept header: html, json or plain."""
    offers: list[tuple[float, int, str]] = []
    for _i, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in ("*/*", "text/*", "text/html"):
            offers.append((q, 0, "html"))
        if media in ("*/*", "application/*", "application/json"):
            offers.append((q, 1, "json"))
        if media == "text/plain":
            offers.append((q, 2, "plain"))
    if not accept.strip():
        return "html"
    offers = [o for o in offers if o[0] > 0]
    if not offers:
        return "plain"
    offers.sort(key=lambda o: (-o[0], o[1]))
    return offers[0][2]


def glance_fault(err: APIError) -> tuple[dict[str, Any] | str, str]:
    """Glance's fault body, in the representation the request's Accept header selects."""
    status = f"{err.status} {err.title}"
    explanation = EXPLANATIONS.get(err.status, err.title)
    detail = html.escape(err.message, quote=False)
    kind = _fault_kind(_ACCEPT.get())
    if kind == "json":
        return ({"message": f"{explanation}<br /><br />\n{detail}\n\n\n", "code": status,
                 "title": err.title}, "application/json")
    if kind == "plain":
        return f"{status}\n\n{explanation}\n\n{err.message}\n\n", "text/plain"
    return (f"<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n  "
            f"<h1>{status}</h1>\n  {explanation}<br /><br />\n{detail}\n\n\n </body>\n"
            f"</html>", "text/html")


class AcceptCapture:
    """Outermost ASGI layer: remembers the Accept header for ``glance_fault``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            accept = ""
            for name, value in scope["headers"]:
                if name == b"accept":
                    accept = value.decode("latin-1")
                    break
            token = _ACCEPT.set(accept)
            try:
                path = scope.get("path", "")
                if path.startswith("/v2/images/") and path.endswith("/"):
                    # ``/v2/images/`` names an image with an empty id: no such resource
                    # (the shared middleware would strip the slash and list images).
                    body, media = glance_fault(NotFound("The resource could not be found."))
                    response = Response(body if isinstance(body, str) else
                                        json.dumps(body), status_code=404, media_type=media)
                    await response(scope, receive, send)
                    return
                await self.app(scope, receive, send)
            finally:
                _ACCEPT.reset(token)
        else:
            await self.app(scope, receive, send)
