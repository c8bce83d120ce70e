"""Block-storage microversions (``OpenStack-API-Version: volume 3.x``, 3.0–3.71).

``VolumeVersionLayer`` is the outermost ASGI layer of the volume app: it drops the
``/v3/{project_id}`` segment of DevStack-style endpoints (remembering the project), parses
the requested version (400 malformed, 404 outside 3.0–3.71 with Cinder's fault body), stores
it on the scope for handlers and adds the version headers to every response.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onestack.api.microversion import APIVersion, send_fault

MIN_VERSION = "3.0"
MAX_VERSION = "3.71"
MIN = APIVersion(MIN_VERSION)
MAX = APIVersion(MAX_VERSION)
SCOPE_KEY = "onestack.volume.version"
#: ``/v3/{project_id}/...``: a project id is 32 hex digits (or a UUID).
_PROJECT_SEGMENT = re.compile(r"^/v3/([0-9a-f]{32}|[0-9a-f-]{36})(/.*)?$")


def _requested(scope: Scope) -> tuple[APIVersion | None, str | None]:
    text = None
    for key, value in scope["headers"]:
        if key == b"openstack-api-version":
            for part in value.decode("latin-1").split(","):
                words = part.strip().split()
                if len(words) == 2 and words[0].lower() in ("volume", "block-storage"):
                    text = words[1]
    if text is None:
        return MIN, None
    if text.strip().lower() == "latest":
        return MAX, None
    try:
        return APIVersion(text), None
    except ValueError:
        return None, (f"API Version String {text} is of invalid format. Must be of format "
                      "MajorNum.MinorNum.")


class VolumeVersionLayer:
    """See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v3"):
            await self.app(scope, receive, send)
            return
        m = _PROJECT_SEGMENT.match(scope["path"])
        scope = dict(scope)
        scope[SCOPE_KEY + ".path"] = scope["path"]
        if m is not None:
            scope["path"] = "/v3" + (m.group(2) or "")
            scope[SCOPE_KEY + ".project"] = m.group(1)
        if scope["path"].endswith("/") and scope["path"] != "/v3/":
            # ``/volumes/`` names a resource with an empty id: no such resource.
            await send_fault(send, 404, "itemNotFound", "The resource could not be found.")
            return
        version, error = _requested(scope)
        status, kind, message = 0, "", ""
        if version is None:
            status, kind, message = 400, "badRequest", error or "Invalid version"
        elif not (MIN <= version <= MAX):
            status, kind = 404, "itemNotFound"
            message = (f"Version {version} is not supported by the API. Minimum is "
                       f"{MIN_VERSION} and maximum is {MAX_VERSION}.")
        headers = [(b"openstack-api-version", f"volume {version or MIN}".encode()),
                   (b"vary", b"OpenStack-API-Version")]
        if status:
            await send_fault(send, status, kind, message, headers)
            return
        scope[SCOPE_KEY] = version

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def version_of(scope: Scope) -> APIVersion:
    return scope.get(SCOPE_KEY) or MIN


def request_path(scope: Scope) -> str:
    """The path as the client sent it (with its ``/v3/{project_id}``)."""
    return str(scope.get(SCOPE_KEY + ".path") or scope["path"])


def url_project(scope: Scope) -> str | None:
    return scope.get(SCOPE_KEY + ".project")
