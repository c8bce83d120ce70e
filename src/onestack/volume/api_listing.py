"""Listing helpers shared by the volume API's route modules: who may list every project's
rows, sorting with marker/offset/limit paging, and the ``next`` link and ``count`` of a
listing."""

from __future__ import annotations

from typing import Any

from onestack.api.app import ApiRequest
from onestack.common.errors import BadRequest, NotFound
from onestack.common.pagination import parse_limit
from onestack.volume.microversion import request_path, version_of
from onestack.volume.params import _bool


def sees_all_projects(req: ApiRequest) -> bool:
    """Whether the caller asks for every project's rows (``all_tenants``/``all_projects``)
    and may have them."""
    raw = req.query.get("all_tenants") or req.query.get("all_projects")
    if raw is None:
        return False
    want = _bool(raw, "all_tenants") if raw != "" else True
    # Cinder drops the filter for whoever may not use it (its API removes filters a
    # non-admin may not pass): the project's own volumes, no 403. python-cinderclient
    # looks names up with all_tenants=1, whoever asks.
    return want and req.allowed("volume:get_all_tenants",
                                {"project_id": req.ctx.project_id or ""})


def sorted_page(req: ApiRequest, rows: list[Any], keys: tuple[str, ...], max_limit: int,
                links: dict[str, Any] | None = None) -> list[Any]:
    """Sort (``sort=k:d,…`` or ``sort_key``/``sort_dir``), ``marker``/``offset`` and
    ``limit``; with ``links``, a ``next`` link is put there when a page is cut short."""
    sort: list[tuple[str, str]] = []
    if "sort" in req.query:
        for part in req.query["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            sort.append((key, direction or "desc"))
    elif "sort_key" in req.query:
        sort.append((req.query["sort_key"], req.query.get("sort_dir", "desc")))
    aliases = {"display_name": "name", "display_description": "description"}
    sort = [(aliases.get(k, k), d.lower()) for k, d in sort]
    for key, direction in reversed(sort):
        if key not in keys or direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid input received: Invalid sort key or direction: "
                             f"{key}:{direction}")
        rows.sort(key=lambda r, k=key: (getattr(r, k) is None, getattr(r, k) or ""),
                  reverse=direction == "desc")
    marker = req.query.get("marker")
    if marker:
        idx = next((i for i, r in enumerate(rows) if r.id == marker), None)
        if idx is None:
            raise NotFound(f"Marker {marker} could not be found.")
        rows = rows[idx + 1:]
    if "offset" in req.query:
        try:
            offset = int(req.query["offset"])
        except ValueError:
            offset = -1
        if offset < 0:
            raise BadRequest("Invalid input received: offset must be a non-negative "
                             "integer.")
        rows = rows[offset:]
    if "limit" in req.query:
        limit = parse_limit(req.query, max_limit, max_limit)
        # Cinder links a next page whenever a page is full.
        if links is not None and limit and len(rows) >= limit:
            from urllib.parse import urlencode
            q = [(k, v) for k, v in req.query.multi_items() if k not in ("marker",
                                                                         "offset")]
            q.append(("marker", rows[limit - 1].id))
            base = req.base_url + request_path(req.request.scope)
            links["links"] = [{"href": f"{base}?{urlencode(q)}", "rel": "next"}]
        rows = rows[:limit]
    return rows


def with_count(req: ApiRequest, doc: dict[str, Any], n: int,
               links: dict[str, Any] | None = None) -> dict[str, Any]:
    """``doc`` with the ``next`` link of a cut page and, from 3.45 with ``with_count``, the
    number of rows."""
    if links and links.get("links"):
        doc[f"{next(iter(doc))}_links"] = links["links"]
    if version_of(req.request.scope) >= "3.45" and "with_count" in req.query and _bool(
            req.query["with_count"], "with_count"):
        doc["count"] = n
    return doc

