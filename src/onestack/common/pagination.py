"""Limit/marker/sort parsing and keyset pagination shared by every service's list calls.

The OpenStack list conventions:

* ``limit``: a non-negative integer, capped by the service's maximum;
* ``marker``: the id of the last item of the previous page (the page starts after it);
* sorting either as repeated ``sort_key``/``sort_dir`` pairs (Nova, Neutron, Glance) or as
  ``sort=key1:dir1,key2`` (Glance, Cinder); the two styles cannot be mixed.

``keyset_after`` turns a marker row into a SQL condition for an ordered query, so a page is
one indexed query whatever the page number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement

from onestack.common.errors import BadRequest

ASC = "asc"
DESC = "desc"


@dataclass(frozen=True)
class SortKey:
    """One sort key and its direction (``asc`` or ``desc``)."""

    key: str
    direction: str = DESC


def _getall(query: Any, name: str) -> list[str]:
    if hasattr(query, "getlist"):
        return [str(v) for v in query.getlist(name)]
    value = query.get(name)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def parse_limit(query: Mapping[str, Any], default: int, maximum: int,
                error: type[BadRequest] = BadRequest) -> int:
    """The page size asked for: ``limit`` capped at ``maximum`` (``default`` when absent).

    A value that is not a non-negative integer raises ``error`` (400).
    """
    raw = query.get("limit")
    if raw is None:
        return min(default, maximum)
    try:
        limit = int(str(raw))
    except ValueError:
        raise error("limit param must be an integer") from None
    if limit < 0:
        raise error("limit param must be positive")
    return min(limit, maximum)


def parse_sort(query: Any, allowed: Sequence[str], default: Sequence[SortKey],
               default_dir: str = DESC, allow_combined: bool = True) -> list[SortKey]:
    """The requested ordering.

    ``sort_key`` may repeat; ``sort_dir`` either repeats once per key or is given once for all.
    ``sort=k1:d1,k2`` is the combined form (when ``allow_combined``). Keys outside ``allowed``
    and directions other than asc/desc raise 400. Without any sort parameter ``default`` is
    returned.
    """
    keys = _getall(query, "sort_key")
    dirs = _getall(query, "sort_dir")
    combined = _getall(query, "sort") if allow_combined else []
    if combined and (keys or dirs):
        raise BadRequest("The 'sort' parameter cannot be combined with 'sort_key' or "
                         "'sort_dir'.")
    result: list[SortKey] = []
    if combined:
        for part in ",".join(combined).split(","):
            part = part.strip()
            if not part:
                raise BadRequest("Invalid sort parameter: empty sort key.")
            key, _, direction = part.partition(":")
            key = key.strip()
            direction = (direction.strip() or default_dir).lower()
            result.append(SortKey(key, direction))
    elif keys or dirs:
        if not keys:
            keys = [k.key for k in default]
        if dirs and len(dirs) not in (1, len(keys)):
            raise BadRequest("The number of sort_dir values must be one or match the number "
                             "of sort_key values.")
        for i, key in enumerate(keys):
            direction = (dirs[i] if len(dirs) == len(keys) else dirs[0]) if dirs else default_dir
            result.append(SortKey(key.strip(), direction.strip().lower()))
    else:
        return list(default)
    seen = set()
    for item in result:
        if item.key not in allowed:
            raise BadRequest(f"Invalid sort key: {item.key}. It is not in the allowed keys: "
                             f"{', '.join(allowed)}")
        if item.direction not in (ASC, DESC):
            raise BadRequest(f"Invalid sort direction: {item.direction}. It must be 'asc' or "
                             "'desc'.")
        if item.key in seen:
            raise BadRequest(f"Sort key {item.key} is given more than once.")
        seen.add(item.key)
    return result


def with_tiebreak(sort: Sequence[SortKey], unique_key: str = "id") -> list[SortKey]:
    """Append ``unique_key`` (in the last key's direction) so the order is total."""
    out = list(sort)
    if not any(s.key == unique_key for s in out):
        out.append(SortKey(unique_key, out[-1].direction if out else DESC))
    return out


def order_by(sort: Sequence[SortKey],
             column: Callable[[str], ColumnElement[Any]]) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for ``sort``; ``column(key)`` maps a key to a SQL expression."""
    return [column(s.key).asc() if s.direction == ASC else column(s.key).desc() for s in sort]


def keyset_after(sort: Sequence[SortKey], column: Callable[[str], ColumnElement[Any]],
                 marker_values: Mapping[str, Any]) -> ColumnElement[bool]:
    """The condition selecting rows strictly after the marker in ``sort`` order.

    ``marker_values`` maps each sort key to the marker row's value of ``column(key)``. Sort
    expressions must not be NULL (wrap nullable columns in ``coalesce`` in ``column``).
    """
    clauses = []
    for i, s in enumerate(sort):
        equal = [column(p.key) == marker_values[p.key] for p in sort[:i]]
        col = column(s.key)
        value = marker_values[s.key]
        step = col > value if s.direction == ASC else col < value
        clauses.append(and_(*equal, step))
    return or_(*clauses)


def next_link(path: str, query: Any, marker: str, limit: int | None,
              drop: Sequence[str] = ("marker",)) -> str:
    """``path?...&marker=ID`` keeping the other query parameters (repeated ones too)."""
    items: list[tuple[str, str]] = []
    if hasattr(query, "multi_items"):
        pairs = list(query.multi_items())
    else:
        pairs = [(k, v) for k in query for v in _getall(query, k)]
    for key, value in pairs:
        if key in drop or key == "limit":
            continue
        items.append((key, value))
    items.append(("marker", marker))
    if limit is not None:
        items.append(("limit", str(limit)))
    return f"{path}?{urlencode(items)}"
