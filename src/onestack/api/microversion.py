"""Microversions shared by the services that have them: a comparable ``major.minor``
version, the fault a version layer answers before any handler runs, and the version layer
of compute, volume and placement (``MicroversionLayer`` over each service's ``VersionRules``;
placement's subclass reads, refuses and decorates in Placement's own way)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, total_ordering
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


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


async def send_fault(send: Send, status: int, kind: str, message: str,
                     headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer with Nova's/Cinder's fault body ``{kind: {"code", "message"}}``."""
    body = json.dumps({kind: {"code": status, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class VersionRules:
    """How one service negotiates microversions (Nova's and Cinder's rules differ only in
    these values)."""

    #: Names accepted in ``OpenStack-API-Version: <name> <version>``; the first is echoed.
    names: tuple[str, ...]
    min_version: str
    max_version: str
    #: Where the scope keeps the version (``version_of``).
    scope_key: str
    #: Only paths under this prefix are versioned (``/v2``, ``/v3``).
    prefix: str
    #: DevStack-style ``{prefix}/{project_id}/...`` URLs: the pattern (group 1 the project,
    #: group 2 the rest) and the prefix the rest is served under (None: no such URLs, and no
    #: trailing-slash check either).
    project_segment: re.Pattern[str] | None
    served_prefix: str
    #: Versioned roots where a trailing slash is allowed.
    slash_roots: tuple[str, ...]
    #: Status and fault kind of a well-formed version outside the range.
    unsupported: tuple[int, str]
    #: The ``Vary`` header of every response.
    vary: bytes = b"OpenStack-API-Version"
    #: An older header read when the standard one names no version, and echoed back.
    legacy_header: bytes | None = None
    #: A second name for the request id header on every response (Nova's).
    request_id_alias: bytes | None = None

    # Parsed once (every request compares against them), not per request.
    @cached_property
    def low(self) -> APIVersion:
        return APIVersion(self.min_version)

    @cached_property
    def high(self) -> APIVersion:
        return APIVersion(self.max_version)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def requested_version(scope: Scope, rules: VersionRules) -> tuple[APIVersion | None, str | None]:
    """The version a request asks for (the minimum when it names none), or (None, error
    message) when the value is malformed."""
    text = None
    value = _header(scope, b"openstack-api-version")
    if value is not None:
        for part in value.split(","):
            words = part.strip().split()
            if len(words) == 2 and words[0].lower() in rules.names:
                text = words[1]
    if text is None and rules.legacy_header is not None:
        text = _header(scope, rules.legacy_header)
    if text is None:
        return rules.low, None
    text = text.strip()
    if text.lower() == "latest":
        return rules.high, None
    try:
        return APIVersion(text), None
    except ValueError:
        return None, (f"API Version String {text} is of invalid format. Must be of format "
                      "MajorNum.MinorNum.")


class MicroversionLayer:
    """The outermost ASGI layer of a microversioned service: drops the ``/{project_id}``
    segment of old-style URLs (remembering the project and the path as sent), answers a
    malformed version (400) or one outside the range with the service's fault body, stores
    the version on the scope for handlers and adds the version headers to every
    response.

    A service whose rules differ in more than values overrides the three steps:
    ``negotiate`` (the version asked for, or why not), ``refuse`` (the answer then) and
    ``respond`` (what every response gets)."""

    def __init__(self, app: ASGIApp, rules: VersionRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rules = self.rules
        if scope["type"] != "http" or not scope["path"].startswith(rules.prefix):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        if rules.project_segment is not None and not await self._locate(scope, send):
            return
        version, status, message = self.negotiate(scope)
        if status:
            await self.refuse(send, status, message, version)
            return
        scope[rules.scope_key] = version
        await self.app(scope, receive, self.respond(send, scope, version))

    async def _locate(self, scope: Scope, send: Send) -> bool:
        """Drop the project segment; False when a 404 was sent instead."""
        rules = self.rules
        scope[rules.scope_key + ".path"] = scope["path"]
        m = cast(re.Pattern[str], rules.project_segment).match(scope["path"])
        if m is not None:
            scope["path"] = rules.served_prefix + (m.group(2) or "")
            scope[rules.scope_key + ".project"] = m.group(1)
        if scope["path"].endswith("/") and scope["path"] not in rules.slash_roots:
            # ``/servers/`` names a resource with an empty id: no such resource (the shared
            # middleware would strip the slash and answer for the collection instead).
            await send_fault(send, 404, "itemNotFound", "The resource could not be found.")
            return False
        return True

    def negotiate(self, scope: Scope) -> tuple[Any, int, str]:
        """The version a request asks for, with 0 and "", or the status and message of a
        refusal (the version then is None when malformed)."""
        rules = self.rules
        version, error = requested_version(scope, rules)
        if version is None:
            return None, 400, error or "Invalid version"
        if not (rules.low <= version <= rules.high):
            return version, rules.unsupported[0], (
                f"Version {version} is not supported by the API. Minimum is "
                f"{rules.min_version} and maximum is {rules.max_version}.")
        return version, 0, ""

    def _headers(self, version: APIVersion) -> list[tuple[bytes, bytes]]:
        rules = self.rules
        headers = [(b"openstack-api-version", f"{rules.names[0]} {version}".encode())]
        if rules.legacy_header is not None:
            headers.append((rules.legacy_header, str(version).encode()))
        headers.append((b"vary", rules.vary))
        return headers

    async def refuse(self, send: Send, status: int, message: str, version: Any) -> None:
        """Answer a refused version with the service's fault body."""
        kind = "badRequest" if status == 400 else self.rules.unsupported[1]
        await send_fault(send, status, kind, message, self._headers(version or self.rules.low))

    def respond(self, send: Send, scope: Scope, version: Any) -> Send:
        """``send`` with the version headers (and the request id alias) on the response."""
        headers = self._headers(version)
        alias = self.rules.request_id_alias

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                out = [*message.get("headers", []), *headers]
                if alias is not None:
                    rid = next((v for k, v in out if k.lower() == b"x-openstack-request-id"),
                               None)
                    if rid is not None:
                        out.append((alias, rid))
                message["headers"] = out
            await send(message)

        return send_with_headers


def version_of(scope: Scope, rules: VersionRules) -> APIVersion:
    """The version a request was served at (the minimum outside the layer)."""
    return scope.get(rules.scope_key) or rules.low


def url_project(scope: Scope, rules: VersionRules) -> str | None:
    """The ``{project_id}`` segment of an old-style URL, if it had one."""
    return scope.get(rules.scope_key + ".project")


def request_path(scope: Scope, rules: VersionRules) -> str:
    """The path as the client sent it (with its ``/{project_id}``)."""
    return str(scope.get(rules.scope_key + ".path") or scope["path"])
