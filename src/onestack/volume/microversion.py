"""Block-storage microversions (``OpenStack-API-Version: volume 3.x``, 3.0–3.71).

``VolumeVersionLayer`` is the outermost ASGI layer of the volume app: it drops the
``/v3/{project_id}`` segment of DevStack-style endpoints (remembering the project), parses
the requested version (400 malformed, 404 outside 3.0–3.71 with Cinder's fault body), stores
it on the scope for handlers and adds the version headers to every response.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Scope

from onestack.api import microversion
from onestack.api.microversion import APIVersion, MicroversionLayer, VersionRules

MIN_VERSION = "3.0"
MAX_VERSION = "3.71"
MIN = APIVersion(MIN_VERSION)
MAX = APIVersion(MAX_VERSION)
SCOPE_KEY = "onestack.volume.version"

#: Cinder's rules: ``volume 3.x`` (or ``block-storage``), 404 out of range;
#: ``/v3/{project_id}/...`` where a project id is 32 hex digits (or a UUID).
RULES = VersionRules(
    names=("volume", "block-storage"), min_version=MIN_VERSION, max_version=MAX_VERSION,
    scope_key=SCOPE_KEY, prefix="/v3",
    project_segment=re.compile(r"^/v3/([0-9a-f]{32}|[0-9a-f-]{36})(/.*)?$"),
    served_prefix="/v3", slash_roots=("/v3/",), unsupported=(404, "itemNotFound"))


def VolumeVersionLayer(app: ASGIApp) -> MicroversionLayer:  # noqa: N802 - an ASGI layer
    """The outermost ASGI layer of the volume API (see the module docstring)."""
    return MicroversionLayer(app, RULES)


def version_of(scope: Scope) -> APIVersion:
    return microversion.version_of(scope, RULES)


def request_path(scope: Scope) -> str:
    """The path as the client sent it (with its ``/v3/{project_id}``)."""
    return microversion.request_path(scope, RULES)


def url_project(scope: Scope) -> str | None:
    return microversion.url_project(scope, RULES)
