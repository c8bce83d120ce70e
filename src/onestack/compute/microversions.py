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

from starlette.types import ASGIApp, Scope

from onestack.api import microversion
from onestack.api.microversion import APIVersion, MicroversionLayer, VersionRules

MIN_VERSION = "2.1"
MAX_VERSION = "2.100"
SCOPE_KEY = "onestack.compute.version"
MIN = APIVersion(MIN_VERSION)
MAX = APIVersion(MAX_VERSION)

#: Nova's rules: ``compute 2.x`` (or the legacy ``X-OpenStack-Nova-API-Version``), 406 out of
#: range; ``/v2.1/{project_id}/...`` for any ``[0-9a-f-]+`` segment (no collection name is
#: made of hex digits only); the request id also as ``x-compute-request-id`` (Tempest reads
#: it).
RULES = VersionRules(
    names=("compute",), min_version=MIN_VERSION, max_version=MAX_VERSION,
    scope_key=SCOPE_KEY, prefix="/v2",
    project_segment=re.compile(r"^/v2(?:\.1)?/([0-9a-f-]+)(/.*)?$"), served_prefix="/v2.1",
    slash_roots=("/v2/", "/v2.1/"), unsupported=(406, "HTTPNotAcceptable"),
    vary=b"OpenStack-API-Version, X-OpenStack-Nova-API-Version",
    legacy_header=b"x-openstack-nova-api-version",
    request_id_alias=b"x-compute-request-id")


def VersionLayer(app: ASGIApp) -> MicroversionLayer:  # noqa: N802 - an ASGI layer
    """The outermost ASGI layer of the compute API (see the module docstring)."""
    return MicroversionLayer(app, RULES)


def requested(scope: Scope) -> tuple[APIVersion | None, str | None]:
    """The version a request asks for, or (None, error message)."""
    return microversion.requested_version(scope, RULES)


def version_of(scope: Scope) -> APIVersion:
    return microversion.version_of(scope, RULES)


def ver(req: Any) -> APIVersion:
    """The compute microversion of a request (an ``ApiRequest``)."""
    return version_of(req.request.scope)


def v_ge(req: Any, version: str) -> bool:
    """Whether the request's microversion is at least ``version``."""
    return ver(req) >= version


def url_project(scope: Scope) -> str | None:
    """The ``{project_id}`` segment of an old-style ``/v2.1/{project_id}/...`` URL."""
    return microversion.url_project(scope, RULES)
