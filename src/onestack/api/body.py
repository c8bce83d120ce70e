"""The one request-body parser every service uses before a handler sees a JSON document.

A body is refused (``BadRequest``, rendered as the service's own 400 fault body) unless it is
a JSON document that every layer below can hold without surprise:

* well-formed UTF-8 JSON without ``NaN``/``Infinity`` and without lone surrogates, also when
  written as ``\\u`` escapes (orjson refuses all of these while parsing);
* no string containing NUL (``\\u0000``): PostgreSQL text cannot hold it;
* nested at most :data:`MAX_DEPTH` containers deep (deeper documents overflow the stack of the
  recursive code that validates, copies and serialises them);
* integers within signed 64 bits (what every database integer column holds) and floats of a
  magnitude below 2^63 (orjson turns integers beyond 64 bits into floats; refusing those
  refuses them too).

Parsing is orjson's (several times faster than the standard library's) followed by one
iterative walk over the document, which costs a few microseconds for an ordinary request.
"""

from __future__ import annotations

from typing import Any

import orjson

from onestack.common.errors import BadRequest

#: Deepest nesting of arrays/objects a request body may have.
MAX_DEPTH = 64
#: Signed 64-bit integer range.
INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
_FLOAT_LIMIT = float(1 << 63)


class BodyError(BadRequest):
    """A request body that is not an acceptable JSON document (400)."""


def parse_json(raw: bytes | bytearray | memoryview | str) -> Any:
    """The JSON document in ``raw``, checked as described in the module docstring.

    Raises :class:`BodyError` (a ``BadRequest``) with a message saying what is wrong.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc).split(":", 1)[0]
        raise BodyError(f"Malformed request body: it is not valid JSON ({reason}).") from None
    check_document(doc)
    return doc


def check_document(doc: Any) -> None:
    """Refuse a parsed document that is too deep or holds out-of-range numbers or NUL."""
    t = type(doc)
    if t is dict or t is list:
        _walk(doc)
    else:
        _check_scalar(doc, t)


def _check_scalar(value: Any, t: type) -> None:
    if t is str:
        if "\x00" in value:
            raise BodyError("Malformed request body: strings must not contain NUL "
                            "characters.")
    elif t is int:
        if not INT_MIN <= value <= INT_MAX:
            raise BodyError("Malformed request body: integer out of range (signed 64-bit "
                            "integers only).")
    elif t is float and not -_FLOAT_LIMIT < value < _FLOAT_LIMIT:
        raise BodyError("Malformed request body: number out of range.")


def _walk(root: dict[str, Any] | list[Any]) -> None:
    # Iterative depth-first walk: (container, depth) pairs still to look into.
    stack: list[tuple[Any, int]] = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            raise BodyError(f"Malformed request body: nested more than {MAX_DEPTH} levels "
                            "deep.")
        if type(node) is dict:
            for key, value in node.items():
                if "\x00" in key:
                    raise BodyError("Malformed request body: strings must not contain NUL "
                                    "characters.")
                t = type(value)
                if t is dict or t is list:
                    push((value, depth + 1))
                elif t is not bool and value is not None:
                    _check_scalar(value, t)
        else:
            for value in node:
                t = type(value)
                if t is dict or t is list:
                    push((value, depth + 1))
                elif t is not bool and value is not None:
                    _check_scalar(value, t)
