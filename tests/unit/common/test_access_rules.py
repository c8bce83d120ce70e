"""Application-credential access rules (``common/access_rules.py``): pattern matching and
rule sets."""

from __future__ import annotations

import random
import re
import time

import pytest

from onestack.common.access_rules import AccessRules, PathPattern, compile_rules


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
