"""Checks every request's path and query parameters get before any handler runs.

The same rules as the body parser (``api/body.py``) for what arrives in the URL:

* a path parameter holding a NUL character or a decimal integer outside signed 64 bits
  cannot name anything stored (bodies with such values are refused): 404;
* a query value (or name) holding a NUL character or a decimal integer outside signed 64 bits
  is refused: 400 (``limit=2**70`` included; databases cannot compare with it).

Percent-encoded bytes that are not UTF-8 (a lone surrogate, say) are already decoded to
U+FFFD by the HTTP layer, so no ill-formed text reaches a handler from the URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from onestack.api.body import INT_MAX, INT_MIN
from onestack.common.errors import BadRequest, NotFound

#: Longest decimal that can still be a signed 64-bit integer (with a sign).
_MAX_DIGITS = 20


def _out_of_range(text: str) -> bool:
    digits = text[1:] if text[:1] in ("-", "+") else text
    if len(digits) < 19 or not digits.isdigit() or not digits.isascii():
        return False
    return len(text) > _MAX_DIGITS or not INT_MIN <= int(text) <= INT_MAX


def check_path(params: Mapping[str, Any]) -> None:
    """404 for a path parameter that cannot name anything stored."""
    for value in params.values():
        if isinstance(value, str) and ("\x00" in value or _out_of_range(value)):
            raise NotFound("The resource could not be found.")


def check_query(items: Iterable[tuple[str, str]]) -> None:
    """400 for a query parameter with a NUL or an integer beyond 64 bits."""
    for name, value in items:
        if "\x00" in name or "\x00" in value:
            raise BadRequest(f"Invalid query parameter {name[:64]!r}: NUL characters are "
                             "not allowed.")
        if _out_of_range(value):
            raise BadRequest(f"Invalid value for query parameter {name[:64]!r}: integer out "
                             "of range.")
