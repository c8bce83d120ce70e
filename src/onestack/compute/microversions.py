"""Compute API microversions (``OpenStack-API-Version: compute 2.x``).

``VersionLayer`` is the outermost ASGI layer of the compute app: it parses the requested
version (also the legacy ``X-OpenStack-Nova-API-Version``), answers 400/406 for a malformed or
unsupported one with Nova's fault body, stores the version on the scope for handlers
(``version_of(req)``), adds the version headers to every response, and drops the optional
``/v2.1/{project_id}`` path segment of old-style endpoints.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onestack.api.microversion import APIVersion, send_fault

MIN_VERSION = "2.1"
MAX_VERSION = "2.100"
SCOPE_KEY = "onestack.compute.version"
#: Nova routes ``/{project_id}/...`` for any ``[0-9a-f-]+`` segment (no collection name is
#: made of hex digits only).
_PROJECT_SEGMENT = re.compile(r"^/v2(?:\.1)?/([0-9a-f-]+)(/.*)?$")


MIN = APIVersion(MIN_VERSION)
MAX = APIVersion(MAX_VERSION)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def requested(scope: Scope) -> tuple[APIVersion | None, str | None]:
    """The version a request asks for, or (None, error message)."""
    text = None
    new = _header(scope, b"openstack-api-version")
    if new is not None:
        for part in new.split(","):
            words = part.strip().split()
            if len(words) == 2 and words[0].lower() == "compute":
                text = words[1]
    if text is None:
        text = _header(scope, b"x-openstack-nova-api-version")
    if text is None:
        return MIN, None
    text = text.strip()
    if text.lower() == "latest":
        return MAX, None
    try:
        return APIVersion(text), None
    except ValueError:
        return None, (f"API Version String {text} is of invalid format. Must be of format "
                      "MajorNum.MinorNum.")


class VersionLayer:
    """Outermost ASGI layer of the compute API (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        m = _PROJECT_SEGMENT.match(path)
        if m is not None:
            scope = dict(scope, path="/v2.1" + (m.group(2) or ""))
            scope[SCOPE_KEY + ".project"] = m.group(1)
        if not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
            return
        if scope["path"].endswith("/") and scope["path"] not in ("/v2/", "/v2.1/"):
            # ``/servers/`` names a resource with an empty id: no such resource (the shared
            # middleware would strip the slash and answer for the collection instead).
            await send_fault(send, 404, "itemNotFound", "The resource could not be found.")
            return
        version, error = requested(scope)
        status, kind, message = 0, "", ""
        if version is None:
            status, kind, message = 400, "badRequest", error or "Invalid version"
        elif not (MIN <= version <= MAX):
            status, kind = 406, "HTTPNotAcceptable"
            message = (f"Version {version} is not supported by the API. Minimum is "
                       f"{MIN_VERSION} and maximum is {MAX_VERSION}.")
        headers = [(b"openstack-api-version", f"compute {version or MIN}".encode()),
                   (b"x-openstack-nova-api-version", str(version or MIN).encode()),
                   (b"vary", b"OpenStack-API-Version, X-OpenStack-Nova-API-Version")]
        if status:
            await send_fault(send, status, kind, message, headers)
            return
        scope = dict(scope)
        scope[SCOPE_KEY] = version

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                out = [*message.get("headers", []), *headers]
                # Nova also names the request id x-compute-request-id (Tempest reads it).
                rid = next((v for k, v in out if k.lower() == b"x-openstack-request-id"),
                           None)
                if rid is not None:
                    out.append((b"x-compute-request-id", rid))
                message["headers"] = out
            await send(message)

        await self.app(scope, receive, send_with_headers)


def version_of(scope: Scope) -> APIVersion:
    return scope.get(SCOPE_KEY) or MIN


def ver(req: Any) -> APIVersion:
    """The compute microversion of a request (an ``ApiRequest``)."""
    return version_of(req.request.scope)


def v_ge(req: Any, version: str) -> bool:
    """Whether the request's microversion is at least ``version``."""
    return ver(req) >= version


def url_project(scope: Scope) -> str | None:
    """The ``{project_id}`` segment of an old-style ``/v2.1/{project_id}/...`` URL."""
    return scope.get(SCOPE_KEY + ".project")
