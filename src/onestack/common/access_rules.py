"""Application-credential access rules: which requests a restricted credential's token may make.

An application credential may carry access rules, each a (service type, HTTP method, path
pattern). A token issued from it may then make only the requests one of its rules matches,
on every service — what keystonemiddleware's ``auth_token`` checks for each OpenStack service
and Keystone for its own API:

- the service type is the receiving service's own type (``compute``, ``image``, …);
- the method is compared exactly (a ``GET`` rule does not allow ``HEAD``);
- the pattern must match the whole request path as the client sent it (percent-decoded, no
  query string, case-sensitive, no trailing-slash folding): ``*`` and ``{name}`` stand for
  one non-empty path segment, ``**`` for any run of characters, slashes included (or none);
  everything else is literal (keystonemiddleware feeds it to ``re`` unescaped, so its ``.``
  matches any character; here it matches only itself);
- on the identity service, ``GET …/v3/auth/tokens`` (validating a token) is always allowed.

Anything else is refused with 401, as an invalid token is. A credential without access rules
is not limited by them.

Matching never backtracks: a pattern is compiled into a small automaton simulated with bit
masks, one step per path character, so a crafted rule (``{a}{b}{c}…``, ``**x**x**x…``) cannot
make a long path cost more than linear time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: keystonemiddleware's exemption: a restricted token may always validate tokens.
_IDENTITY_VALIDATE_SUFFIX = "/v3/auth/tokens"

# Token kinds of a compiled pattern.
_LIT, _ONE, _ANY_STAR, _SEG_STAR = 0, 1, 2, 3


def _tokens(pattern: str) -> list[tuple[int, str]]:
    """``pattern`` as (kind, literal) tokens: ``**`` -> any*, ``*``/``{x}`` -> one non-slash
    then non-slash*, other characters literal (a ``{`` without ``}`` too)."""
    out: list[tuple[int, str]] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                out.append((_ANY_STAR, ""))
                i += 2
            else:
                out += [(_ONE, ""), (_SEG_STAR, "")]
                i += 1
            continue
        if ch == "{":
            end = pattern.find("}", i + 1)
            if end != -1:
                out += [(_ONE, ""), (_SEG_STAR, "")]
                i = end + 1
                continue
        out.append((_LIT, ch))
        i += 1
    # Adjacent stars collapse (any* absorbs seg*, two of a kind are one), so one epsilon
    # step reaches every state the closure can.
    simplified: list[tuple[int, str]] = []
    for tok in out:
        if simplified and tok[0] in (_ANY_STAR, _SEG_STAR) and simplified[-1][0] in (
                _ANY_STAR, _SEG_STAR):
            if tok[0] == _ANY_STAR:
                simplified[-1] = tok
            continue
        simplified.append(tok)
    return simplified


def _whole_segment(segment: str) -> str | bool | None:
    """A pattern segment without ``/``: its literal text, None when it is one wildcard
    (``*`` or ``{name}``), False when it mixes them or holds ``**``."""
    if segment == "*" or (segment.startswith("{") and segment.endswith("}")
                          and "}" not in segment[:-1]):
        return None
    if "*" in segment or "{" in segment or "}" in segment:
        return False  # braces may open a name that spans segments: the general matcher
    return segment


class PathPattern:
    """One compiled access-rule path pattern (see the module docstring for the syntax)."""

    __slots__ = ("pattern", "_literal", "_prefix", "_segments", "_lit", "_one", "_stay_any",
                 "_stay_seg", "_eps", "_accept")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tokens = _tokens(pattern)
        # Fast forms for the usual rules: a literal path, a literal prefix then ``**``, or
        # whole-segment wildcards only (``/v2.1/servers/*/action``).
        self._literal: str | None = None
        self._prefix: str | None = None
        self._segments: list[str | None] | None = None
        if all(kind == _LIT for kind, _ in tokens):
            self._literal = pattern
            return
        if tokens[-1][0] == _ANY_STAR and all(kind == _LIT for kind, _ in tokens[:-1]):
            self._prefix = "".join(ch for _, ch in tokens[:-1])
            return
        segments = [_whole_segment(seg) for seg in pattern.split("/")]
        if all(seg is not False for seg in segments):
            self._segments = [seg if isinstance(seg, str) else None for seg in segments]
            return
        # Bit i set = "tokens[:i] matched". Per character c: a literal c at i moves i -> i+1,
        # one non-slash at i moves i -> i+1, a star at i stays at i (any* on any character,
        # seg* on non-slash ones); stars also move i -> i+1 without a character.
        self._lit: dict[str, int] = {}
        self._one = self._stay_any = self._stay_seg = 0
        for i, (kind, ch) in enumerate(tokens):
            bit = 1 << i
            if kind == _LIT:
                self._lit[ch] = self._lit.get(ch, 0) | bit
            elif kind == _ONE:
                self._one |= bit
            elif kind == _ANY_STAR:
                self._stay_any |= bit
            else:
                self._stay_seg |= bit
        self._eps = self._stay_any | self._stay_seg
        self._accept = 1 << len(tokens)

    def _close(self, states: int) -> int:
        while True:
            grown = states | ((states & self._eps) << 1)
            if grown == states:
                return states
            states = grown

    def matches(self, path: str) -> bool:
        """True when the pattern matches the whole of ``path``."""
        if self._literal is not None:
            return path == self._literal
        if self._prefix is not None:
            return path.startswith(self._prefix)
        if self._segments is not None:
            parts = path.split("/")
            return len(parts) == len(self._segments) and all(
                part == want if want is not None else part != ""
                for part, want in zip(parts, self._segments, strict=True))
        lit, one, stay_any, stay_seg = self._lit, self._one, self._stay_any, self._stay_seg
        states = self._close(1)
        for ch in path:
            nxt = ((states & lit.get(ch, 0)) << 1) | (states & stay_any)
            if ch != "/":
                nxt |= ((states & one) << 1) | (states & stay_seg)
            if not nxt:
                return False
            states = self._close(nxt)
        return bool(states & self._accept)


@dataclass(frozen=True)
class AccessRule:
    """One rule as stored and shown (``id``, ``service``, ``method``, ``path``), compiled."""

    id: str
    service: str
    method: str
    path: PathPattern

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "service": self.service, "path": self.path.pattern,
                "method": self.method}


class AccessRules:
    """The access rules of one application credential, compiled once and shared by every
    token issued from it (immutable)."""

    __slots__ = ("rules",)

    def __init__(self, rules: Iterable[Mapping[str, Any]]) -> None:
        self.rules = tuple(
            AccessRule(str(r.get("id") or ""), str(r.get("service") or ""),
                       str(r.get("method") or ""), PathPattern(str(r.get("path") or "")))
            for r in rules)

    def allows(self, service_type: str, method: str, path: str) -> bool:
        """May a token limited to these rules make ``method path`` on ``service_type``?"""
        if (service_type == "identity" and method == "GET"
                and path.endswith(_IDENTITY_VALIDATE_SUFFIX)):
            return True
        for rule in self.rules:
            if (rule.method == method and rule.service == service_type
                    and rule.path.matches(path)):
                return True
        return False

    def as_list(self) -> list[dict[str, str]]:
        return [r.as_dict() for r in self.rules]


def compile_rules(rules: Iterable[Mapping[str, Any]] | None) -> AccessRules | None:
    """Compiled rules, or None for a credential without access rules (not limited)."""
    if not rules:
        return None
    return AccessRules(rules)
