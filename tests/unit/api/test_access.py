"""The per-service gate of application-credential access rules (``api/access.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from onestack.api.access import AccessGate, request_path
from onestack.api.app import Service, endpoint
from onestack.api.policy import Policy
from onestack.common.access_rules import AccessRules
from onestack.common.context import RequestContext
from onestack.common.errors import Unauthorized


async def _noop(req: Any) -> dict[str, Any]:
    return {}


def _gate() -> AccessGate:
    svc = Service(name="compute", routes=[], fault=lambda e: ({}, "application/json"),
                  policy=Policy({}))
    routes = [Route("/", endpoint(svc, _noop, public=True), methods=["GET"]),
              Route("/v2.1/servers", endpoint(svc, _noop), methods=["GET", "POST"])]
    return AccessGate("compute", routes)


def _scope(method: str, path: str, raw: bytes | None = None) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path,
                             "root_path": ""}
    if raw is not None:
        scope["raw_path"] = raw
    return scope


def test_gate_uses_the_path_as_sent_and_keeps_public_routes_open() -> None:
    gate = _gate()
    ctx = RequestContext(user_id="u", access_rules=AccessRules([
        {"id": "r", "service": "compute", "method": "GET", "path": "/v2.1/*/servers"}]))
    # Compute rewrites /v2.1/{project}/servers to /v2.1/servers; the rule sees the original.
    gate.check(_scope("GET", "/v2.1/servers", b"/v2.1/p1/servers?limit=1"), ctx)
    with pytest.raises(Unauthorized):
        gate.check(_scope("GET", "/v2.1/servers", b"/v2.1/servers"), ctx)
    with pytest.raises(Unauthorized):
        gate.check(_scope("POST", "/v2.1/servers", b"/v2.1/p1/servers"), ctx)
    gate.check(_scope("GET", "/", b"/"), ctx)  # the version document stays public
    # Percent-encoding is decoded as in ``path``; without raw_path, path is used.
    assert request_path(_scope("GET", "/x", b"/v2.1/a%20b")) == "/v2.1/a b"
    assert request_path(_scope("GET", "/v2.1/servers")) == "/v2.1/servers"
    mounted = _scope("GET", "/compute/v2.1/servers", b"/v2.1/servers")
    mounted["root_path"] = "/compute"
    assert request_path(mounted) == "/compute/v2.1/servers"
    mounted["raw_path"] = b"/compute/v2.1/servers"
    assert request_path(mounted) == "/compute/v2.1/servers"
    # A context without access rules is never limited.
    gate.check(_scope("DELETE", "/v2.1/servers", b"/v2.1/servers"), RequestContext(user_id="u"))
