"""Compute API microversions (``OpenStack-API-Version: compute 2.x``).

``VersionLayer`` is the outermost ASGI layer of the compute app: it parses the requested
version (also the legacy ``X-OpenStack-Nova-API-Version``), answers 400/406 for a malformed or
unsupported one with Nova's fault body, stores the version on the scope for handlers
(``version_of(req)``), adds the version headers to every response, and drops the optional
``/v2.1/{project_id}`` path segment of old-style endpoints.
"""

from __future__ import annotations

import json
import re
from functools import total_ordering
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MIN_VERSION = "2.1"
MAX_VERSION = "2.100"
SCOPE_KEY = "onestack.compute.version"
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")
#: Nova routes ``/{project_id}/...`` for any ``[0-9a-f-]+`` segment (no collection name is
#: made of hex digits only).
_PROJECT_SEGMENT = re.compile(r"^/v2(?:\.1)?/([0-9a-f-]+)(/.*)?$")


@total_ordering
class APIVersion:
    """A ``major.minor`` version comparable with another or with a ``"2.x"`` string."""

    __slots__ = ("major", "minor")

    def __init__(self, text: str) -> None:
        m = _VERSION_RE.match(text.strip())
        if m is None:
            raise ValueError(text)
        self.major = int(m.group(1))
        self.minor = int(m.group(2))

    def _key(self, other: Any) -> tuple[int, int]:
        if isinstance(other, str):
            other = APIVersion(other)
        return (other.major, other.minor)

    def __eq__(self, other: object) -> bool:
        return (self.major, self.minor) == self._key(other)

    def __lt__(self, other: Any) -> bool:
        return (self.major, self.minor) < self._key(other)

    def __hash__(self) -> int:
        return hash((self.major, self.minor))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def matches(self, low: str, high: str | None = None) -> bool:
        """``low <= self`` (and ``self <= high`` when given)."""
        return self >= low and (high is None or self <= high)


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


def _fault(status: int, kind: str, message: str) -> bytes:
    return json.dumps({kind: {"code": status, "message": message}}).encode()


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
            body = _fault(404, "itemNotFound", "The resource could not be found.")
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
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
            body = _fault(status, kind, message)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *headers]})
            await send({"type": "http.response.body", "body": body})
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


def url_project(scope: Scope) -> str | None:
    """The ``{project_id}`` segment of an old-style ``/v2.1/{project_id}/...`` URL."""
    return scope.get(SCOPE_KEY + ".project")
