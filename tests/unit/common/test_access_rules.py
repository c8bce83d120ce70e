"""Application-credential access rules: pattern matching, rule sets, the per-service gate."""

from __future__ import annotations

import random
import re
import time
from typing import Any

import pytest
from starlette.routing import Route

from onestack.api.access import AccessGate, request_path
from onestack.api.app import Service, endpoint
from onestack.api.policy import Policy
from onestack.common.access_rules import AccessRules, PathPattern, compile_rules
from onestack.common.context import RequestContext
from onestack.common.errors import Unauthorized


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("/v2.1/servers", "/v2.1/servers", True),
    ("/v2.1/servers", "/v2.1/servers/", False),      # no trailing-slash folding
    ("/v2.1/servers", "/v2.1/Servers", False),       # case-sensitive
    ("/v2.1/servers", "/v2.1/servers/detail", False),
    ("/v2.1/servers", "/v2x1/servers", False),       # literal dot
    ("/v2.1/servers/*", "/v2.1/servers/abc", True),
    ("/v2.1/servers/*", "/v2.1/servers/", False),    # * is one non-empty segment
    ("/v2.1/servers/*", "/v2.1/servers/abc/action", False),
    ("/v2.1/servers/{server_id}/action", "/v2.1/servers/abc/action", True),
    ("/v2.1/servers/{server_id}/action", "/v2.1/servers/a/b/action", False),
    ("/v2.1/servers/**", "/v2.1/servers/abc/action", True),
    ("/v2.1/servers/**", "/v2.1/servers/", True),    # ** may be empty
    ("/v2.1/servers/**", "/v2.1/servers", False),
    ("/v2.1/**/action", "/v2.1/servers/abc/action", True),
    ("/v2.1/*/servers", "/v2.1/0123abcd/servers", True),
    ("/v2.1/*/servers", "/v2.1/servers", False),
    ("/**", "/anything/at/all", True),
    ("/v2/images/*/file", "/v2/images/x/file", True),
    ("/a{b", "/a{b", True),                         # an unclosed brace is literal
    ("/a*b*c", "/axbyc", True),
    ("/a*b*c", "/ab/c", False),
])
def test_path_patterns(pattern: str, path: str, expected: bool) -> None:
    assert PathPattern(pattern).matches(path) is expected


def _reference(pattern: str) -> re.Pattern[str]:
    """keystonemiddleware's translation (here literals, stray braces included, are escaped)."""
    out = ""
    for m in re.finditer(r"(?P<tag>{[^}]*})|(?P<wild>\*(?=$|[^*]))|(?P<rec>\*\*)|(?P<lit>.)",
                         pattern):
        if m["tag"] or m["wild"]:
            out += r"[^/]+"
        elif m["rec"]:
            out += ".*"
        else:
            out += re.escape(m["lit"])
    return re.compile(f"^{out}$", re.S)


def test_matcher_agrees_with_keystonemiddleware_translation() -> None:
    rnd = random.Random(11)
    atoms = ["a", "b", "/", "*", "**", "{id}", "{x/y}", "{", "}"]
    chars = "ab/"
    for _ in range(6000):
        pattern = "/" + "".join(rnd.choice(atoms) for _ in range(rnd.randint(0, 7)))
        path = "/" + "".join(rnd.choice(chars) for _ in range(rnd.randint(0, 10)))
        want = bool(_reference(pattern).match(path))
        assert PathPattern(pattern).matches(path) is want, (pattern, path)


def test_crafted_patterns_stay_linear() -> None:
    """Patterns that make a backtracking regex explode cost a linear scan here."""
    long_path = "/" + "a" * 20000 + "/"
    for pattern in ("/" + "{x}" * 110, "/" + "**a" * 70 + "b", "/" + "*a" * 110 + "b"):
        start = time.perf_counter()
        assert not PathPattern(pattern).matches(long_path)
        assert time.perf_counter() - start < 1.0, pattern


def test_rules_check_service_type_method_and_path() -> None:
    rules = AccessRules([{"id": "r1", "service": "compute", "method": "GET",
                          "path": "/v2.1/servers"}])
    assert rules.allows("compute", "GET", "/v2.1/servers")
    assert not rules.allows("compute", "POST", "/v2.1/servers")
    assert not rules.allows("compute", "HEAD", "/v2.1/servers")
    assert not rules.allows("compute", "get", "/v2.1/servers")
    assert not rules.allows("network", "GET", "/v2.1/servers")
    # Validating a token is always allowed on identity (keystonemiddleware's exemption).
    assert rules.allows("identity", "GET", "/v3/auth/tokens")
    assert not rules.allows("identity", "HEAD", "/v3/auth/tokens")
    assert not rules.allows("identity", "GET", "/v3/projects")
    assert rules.as_list() == [{"id": "r1", "service": "compute", "path": "/v2.1/servers",
                                "method": "GET"}]
    assert compile_rules([]) is None and compile_rules(None) is None


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
