"""Whether a volume type's extra specs fit this backend (Cinder's CapabilitiesFilter).

An unscoped key or a ``capabilities:`` one names a capability the backend must report with a
matching value (``<is> True``, ``<in> x``, ``<or> a <or> b``, ``==``/``!=``/``>=``/``<=``
numbers, or the plain value); a key with any other scope (``qos:``, ``hw:``…) is not for the
scheduler. A capability the backend does not report fails the match, as in Cinder: the volume
then ends in ``error`` with a user message (no valid backend)."""

from __future__ import annotations

from typing import Any


def _match(have: Any, want: str) -> bool:
    words = want.split()
    if not words:
        return str(have) == want
    op = words[0]
    rest = " ".join(words[1:])
    if op == "<is>":
        return str(have).lower() == rest.lower()
    if op == "<in>":
        return rest in str(have)
    if op == "<or>":
        options = [w.strip() for w in want.split("<or>") if w.strip()]
        return str(have) in options
    if op in ("==", "!=", ">=", "<="):
        try:
            a, b = float(have), float(rest)
        except (TypeError, ValueError):
            return False
        return {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b}[op]
    if op in ("s==", "s!="):
        return (str(have) == rest) == (op == "s==")
    return str(have) == want


def unmet(extra_specs: dict[str, str], capabilities: dict[str, Any]) -> list[str]:
    """The extra specs this backend does not satisfy (empty: it fits)."""
    out = []
    for key, want in extra_specs.items():
        scope, _, name = key.rpartition(":")
        if scope and scope != "capabilities":
            continue
        if name not in capabilities or not _match(capabilities[name], str(want)):
            out.append(key)
    return out
