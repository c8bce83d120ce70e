"""Policy engine: rules as data, in the ``policy.yaml`` language operators already know.

A rule is an expression of checks joined by ``and``, ``or``, ``not`` and parentheses:

* ``@`` always passes, ``!`` never does, an empty rule passes;
* ``rule:NAME`` evaluates another rule;
* ``role:NAME`` passes when the caller holds that role;
* ``field:RESOURCE:FIELD=VALUE`` compares the target's FIELD with VALUE (``=~`` matches a
  regular expression), as Neutron's ``field:networks:shared=True``;
* ``KEY:VALUE`` compares a credential (``project_id``, ``user_id``, ``domain_id``,
  ``system_scope``, ``is_admin`` …) with VALUE, where VALUE may interpolate the target with
  ``%(name)s`` (dotted names reach into nested dicts); ``'literal':%(name)s`` compares a literal.

Each service contributes its default rules; an operator's file (YAML or JSON, ``policy_file``)
overrides any of them. Rules compile once into closures, so checks are cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from onestack.common.errors import Forbidden

Creds = Mapping[str, Any]
Target = Mapping[str, Any]
Check = Callable[[Creds, Target, "Policy"], bool]

_TOKEN_RE = re.compile(r"\(|\)|(?:'[^']*'|%\([^)]*\)|[^\s()'%]|%)+")
_INTERP_RE = re.compile(r"%\(([^)]+)\)s")


class PolicyError(ValueError):
    """A rule that cannot be parsed."""


def _lookup(data: Any, dotted: str) -> Any:
    if isinstance(data, Mapping) and dotted in data:
        return data[dotted]
    cur = data
    for part in dotted.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


_MISSING = object()


def _interpolate(text: str, target: Target) -> str | object:
    if "%(" not in text:
        return text
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        value = _lookup(target, m.group(1))
        if value is _MISSING:
            missing = True
            return ""
        return str(value)

    result = _INTERP_RE.sub(sub, text)
    return _MISSING if missing else result


def _make_check(token: str) -> Check:
    if token == "@":
        return lambda c, t, p: True
    if token == "!":
        return lambda c, t, p: False
    if ":" not in token:
        raise PolicyError(f"bad check {token!r}")
    if token.startswith("'"):
        end = token.index("'", 1)
        literal = token[1:end]
        match = token[end + 2 :]

        def literal_check(c: Creds, t: Target, p: Policy) -> bool:
            value = _interpolate(match, t)
            return value is not _MISSING and literal == value

        return literal_check
    kind, match = token.split(":", 1)
    if kind == "field" and ":" in match and "=" in match:
        return _field_check(match)
    if kind == "rule":
        return lambda c, t, p: p.check_rule(match, c, t)
    if kind == "role":
        lowered = match.lower()

        def role_check(c: Creds, t: Target, p: Policy) -> bool:
            if "%(" in match:
                value = _interpolate(match, t)
                if value is _MISSING:
                    return False
                return str(value).lower() in _roles(c)
            return lowered in _roles(c)

        return role_check

    whole = _INTERP_RE.fullmatch(match)
    name = whole.group(1) if whole is not None else None
    if "%(" not in match:
        constant: object = match
    else:
        constant = None

    def generic_check(c: Creds, t: Target, p: Policy) -> bool:
        # ``project_id:%(project_id)s`` (the common case) is one lookup, no regex.
        if name is not None:
            value = _lookup(t, name)
        elif constant is not None:
            value = constant
        else:
            value = _interpolate(match, t)
        if value is _MISSING:
            return False
        have = _lookup(c, kind)
        if have is _MISSING or have is None:
            return False
        if isinstance(have, bool):
            return str(have).lower() == str(value).lower()
        if isinstance(have, list | tuple | set):
            return str(value) in [str(h) for h in have]
        return str(have) == str(value)

    return generic_check


def _roles(creds: Creds) -> frozenset[str]:
    """The caller's role names in lower case (precomputed by ``RequestContext``)."""
    lowered = creds.get("roles_lower")
    if lowered is None:
        lowered = frozenset(str(r).lower() for r in creds.get("roles", ()))
    return lowered  # type: ignore[no-any-return]


def _field_check(spec: str) -> Check:
    """``RESOURCE:FIELD=VALUE`` / ``RESOURCE:FIELD=~REGEX`` against the target."""
    _resource, rest = spec.split(":", 1)
    if "=~" in rest:
        field, pattern = rest.split("=~", 1)
        rx = re.compile(pattern)

        def regex_check(c: Creds, t: Target, p: Policy) -> bool:
            value = t.get(field)
            return value is not None and rx.match(str(value)) is not None

        return regex_check
    field, wanted = rest.split("=", 1)
    wanted_l = wanted.lower()

    def equal_check(c: Creds, t: Target, p: Policy) -> bool:
        value = t.get(field, _MISSING)
        if value is _MISSING or value is None:
            return False
        if isinstance(value, bool):
            return str(value).lower() == wanted_l
        return str(value) == wanted

    return equal_check


def _either(first: Check, second: Check) -> Check:
    """``first or second`` as one check."""
    return lambda c, t, p: first(c, t, p) or second(c, t, p)


def _both(first: Check, second: Check) -> Check:
    """``first and second`` as one check."""
    return lambda c, t, p: first(c, t, p) and second(c, t, p)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _TOKEN_RE.findall(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> Check:
        if not self.tokens:
            return lambda c, t, p: True
        check = self.or_expr()
        if self.peek() is not None:
            raise PolicyError(f"unexpected {self.peek()!r}")
        return check

    def _joined(self, word: str, operand: Callable[[], Check],
                pair: Callable[[Check, Check], Check],
                many: Callable[[Iterable[bool]], bool]) -> Check:
        """One or more ``operand`` expressions joined by the keyword ``word``: the lone
        operand itself, ``pair`` of two (no generator, the common case) or ``many``
        (``any``/``all``) over the operands' results."""
        parts = [operand()]
        while self.peek() == word:
            self.take()
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            return pair(parts[0], parts[1])
        return lambda c, t, p: many(x(c, t, p) for x in parts)

    def or_expr(self) -> Check:
        return self._joined("or", self.and_expr, _either, any)

    def and_expr(self) -> Check:
        return self._joined("and", self.not_expr, _both, all)

    def not_expr(self) -> Check:
        if self.peek() == "not":
            self.take()
            inner = self.not_expr()
            return lambda c, t, p: not inner(c, t, p)
        return self.atom()

    def atom(self) -> Check:
        tok = self.peek()
        if tok is None:
            raise PolicyError("unexpected end of rule")
        if tok == "(":
            self.take()
            inner = self.or_expr()
            if self.peek() != ")":
                raise PolicyError("missing )")
            self.take()
            return inner
        return _make_check(self.take())


def compile_rule(text: str) -> Check:
    """Compile one rule expression into a callable ``(creds, target, policy) -> bool``."""
    return _Parser(text).parse()


class Policy:
    """A named set of compiled rules with an optional operator override file."""

    def __init__(self, defaults: Mapping[str, str], override_file: str | Path | None = None,
                 denied: str = "You are not authorized to perform the requested action: "
                               "{action}.",
                 denied_kind: str = "PolicyNotAuthorized") -> None:
        #: The 403 message (``{action}`` is the rule name) and error kind of the service.
        self.denied = denied
        self.denied_kind = denied_kind
        self.rules: dict[str, str] = dict(defaults)
        if override_file:
            path = Path(override_file)
            if path.exists():
                text = path.read_text()
                loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
                if loaded:
                    self.rules.update({str(k): str(v) for k, v in loaded.items()})
        self._compiled: dict[str, Check] = {k: compile_rule(v) for k, v in self.rules.items()}

    def check_rule(self, name: str, creds: Creds, target: Target) -> bool:
        check = self._compiled.get(name)
        if check is None:
            return False
        return check(creds, target, self)

    def check(self, action: str, creds: Creds, target: Target | None = None) -> bool:
        name = action if action in self._compiled else "default"
        return self.check_rule(name, creds, target or {})

    def enforce(self, action: str, creds: Creds, target: Target | None = None) -> None:
        """Raise Forbidden unless ``action`` is allowed."""
        if not self.check(action, creds, target):
            raise Forbidden(self.denied.format(action=action), kind=self.denied_kind)
