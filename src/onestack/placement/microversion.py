"""Placement microversions: ``OpenStack-API-Version: placement 1.x`` (1.0 … 1.39).

``PlacementWrapper`` is the outermost ASGI layer of the placement app, the shared
``api.microversion.MicroversionLayer`` with Placement's three steps: it parses the version
header (400 when malformed, 406 outside the supported range, in Placement's ``errors``
document), hands the version to handlers in ``scope["placement.version"]`` as a tuple, stamps
``OpenStack-API-Version``/``Vary`` on every response, adds the cache headers of 1.15+, and
completes Placement fault bodies with the request id (and drops the ``code`` field before
1.23, as Placement does).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Scope, Send

from onestack.api.microversion import MicroversionLayer, VersionRules

SERVICE_TYPE = "placement"
MIN_VERSION = (1, 0)
MAX_VERSION = (1, 39)
SCOPE_KEY = "placement.version"

Version = tuple[int, int]


class VersionError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def fmt(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


#: Every path is versioned; no project segment in URLs; the header names ``placement``.
RULES = VersionRules(
    names=(SERVICE_TYPE,), min_version=fmt(MIN_VERSION),
    max_version=fmt(MAX_VERSION), scope_key=SCOPE_KEY,
    prefix="/", project_segment=None, served_prefix="", slash_roots=(),
    unsupported=(406, "Not Acceptable"))


def parse_header(value: str | None) -> Version:
    """The requested version from an ``OpenStack-API-Version`` header value (None: 1.0)."""
    if value is None:
        return MIN_VERSION
    wanted = None
    for part in value.split(","):
        bits = part.strip().split()
        if len(bits) == 2 and bits[0].lower() == SERVICE_TYPE:
            wanted = bits[1]
    if wanted is None:
        return MIN_VERSION
    if wanted.lower() == "latest":
        return MAX_VERSION
    try:
        major_s, minor_s = wanted.split(".")
        if not (major_s.isdigit() and minor_s.isdigit()):
            raise ValueError(wanted)
        version = (int(major_s), int(minor_s))
    except ValueError as exc:
        raise VersionError(400, f"invalid version string: {wanted}") from exc
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise VersionError(406, f"Unacceptable version header: {wanted}")
    return version


def error_body(status: int, title: str, detail: str, request_id: str,
               code: str | None = "placement.undefined_code", **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"status": status, "title": title, "detail": detail,
                           "request_id": request_id}
    if code is not None:
        err["code"] = code
    err.update(extra)
    return {"errors": [err]}


class PlacementWrapper(MicroversionLayer):
    """Microversion negotiation and response decoration around the placement ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, RULES)

    def negotiate(self, scope: Scope) -> tuple[Any, int, str]:
        header = None
        for name, value in scope["headers"]:
            if name == b"openstack-api-version":
                header = value.decode("latin-1")
        try:
            return parse_header(header), 0, ""
        except VersionError as exc:
            return None, exc.status, exc.message

    async def refuse(self, send: Send, status: int, message: str, version: Any) -> None:
        request_id = "req-" + str(uuid.uuid4())
        title = "Not Acceptable" if status == 406 else "Bad Request"
        extra = {}
        if status == 406:
            extra = {"max_version": fmt(MAX_VERSION), "min_version": fmt(MIN_VERSION)}
        body = orjson.dumps(error_body(status, title, message, request_id, **extra))
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-openstack-request-id", request_id.encode()),
            (b"openstack-api-version", f"{SERVICE_TYPE} {fmt(MIN_VERSION)}".encode()),
            (b"vary", b"openstack-api-version")]})
        await send({"type": "http.response.body", "body": body})

    def respond(self, send: Send, scope: Scope, version: Version) -> Send:
        """The version headers, the cache headers of 1.15+ on a GET's 200, and fault bodies
        completed (``_patch_fault``)."""
        vtext = f"{SERVICE_TYPE} {fmt(version)}".encode()
        is_get = scope["method"] in ("GET", "HEAD")
        state: dict[str, Any] = {"buffer": None}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"openstack-api-version", b"vary")]
                headers += [(b"openstack-api-version", vtext),
                            (b"vary", b"openstack-api-version")]
                status = message["status"]
                if is_get and status == 200 and version >= (1, 15):
                    names = {k.lower() for k, _ in headers}
                    if b"cache-control" not in names:
                        headers.append((b"cache-control", b"no-cache"))
                    if b"last-modified" not in names:
                        now = dt.datetime.now(dt.UTC)
                        headers.append((b"last-modified",
                                        email.utils.format_datetime(now, usegmt=True).encode()))
                message = {**message, "headers": headers}
                ctype = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if status >= 400 and b"json" in ctype:
                    state["buffer"] = (message, bytearray())
                    return
                await send(message)
                return
            if message["type"] == "http.response.body" and state["buffer"] is not None:
                start, body = state["buffer"]
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                new = _patch_fault(bytes(body), start, version)
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(new)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": new})
                state["buffer"] = None
                return
            await send(message)

        return wrapped


def _patch_fault(body: bytes, start: Message, version: Version) -> bytes:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        return body
    request_id = ""
    for k, v in start.get("headers", []):
        if k.lower() == b"x-openstack-request-id":
            request_id = v.decode("latin-1")
    for err in doc["errors"]:
        if isinstance(err, dict):
            err["request_id"] = request_id
            if version < (1, 23):
                err.pop("code", None)
    return orjson.dumps(doc)
