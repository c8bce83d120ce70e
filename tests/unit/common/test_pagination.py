"""Pagination of list calls (``common/pagination.py``): limit, sort, keyset pages, next links."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, column, create_engine, select, table, text
from starlette.datastructures import QueryParams

from onestack.common import pagination
from onestack.common.errors import BadRequest
from onestack.common.pagination import SortKey


def test_parse_limit() -> None:
    assert pagination.parse_limit(QueryParams(""), 25, 1000) == 25
    assert pagination.parse_limit(QueryParams("limit=5000"), 25, 1000) == 1000
    assert pagination.parse_limit(QueryParams("limit=0"), 25, 1000) == 0
    for bad in ("limit=x", "limit=-1", "limit=1.5"):
        with pytest.raises(BadRequest):
            pagination.parse_limit(QueryParams(bad), 25, 1000)


def test_parse_sort_forms() -> None:
    keys = ["name", "size", "created_at", "id"]
    default = [SortKey("created_at", "desc")]
    assert pagination.parse_sort(QueryParams(""), keys, default) == default
    assert pagination.parse_sort(QueryParams("sort=name:asc,size"), keys, default) == [
        SortKey("name", "asc"), SortKey("size", "desc")]
    assert pagination.parse_sort(QueryParams("sort_key=name&sort_key=size&sort_dir=asc"),
                                 keys, default) == [SortKey("name", "asc"),
                                                    SortKey("size", "asc")]
    assert pagination.parse_sort(
        QueryParams("sort_key=name&sort_dir=asc&sort_key=size&sort_dir=desc"), keys,
        default) == [SortKey("name", "asc"), SortKey("size", "desc")]
    for bad in ("sort=bogus", "sort=name:up", "sort=name&sort_key=size", "sort_key=name&"
                "sort_key=size&sort_dir=asc&sort_dir=desc&sort_dir=asc", "sort=name,name"):
        with pytest.raises(BadRequest):
            pagination.parse_sort(QueryParams(bad), keys, default)


def test_keyset_pages_cover_everything_once() -> None:
    engine = create_engine("sqlite://")
    t = table("t", column("id", String), column("n", Integer))
    with engine.begin() as conn:
        conn.execute(text("create table t (id text primary key, n integer)"))
        for i in range(23):
            conn.execute(text("insert into t values (:i, :n)"), {"i": f"{i:03d}", "n": i % 4})
    sort = pagination.with_tiebreak([SortKey("n", "desc")], "id")

    def col(key: str):  # type: ignore[no-untyped-def]
        return t.c[key]

    seen: list[str] = []
    marker = None
    with engine.connect() as conn:
        while True:
            stmt = select(t.c.id, t.c.n)
            if marker is not None:
                stmt = stmt.where(pagination.keyset_after(sort, col, marker))
            rows = conn.execute(stmt.order_by(*pagination.order_by(sort, col)).limit(5)).all()
            if not rows:
                break
            seen += [r.id for r in rows]
            marker = {"n": rows[-1].n, "id": rows[-1].id}
    assert sorted(seen) == sorted(f"{i:03d}" for i in range(23))
    assert len(seen) == 23


def test_next_link_keeps_filters() -> None:
    link = pagination.next_link("/v2/images", QueryParams("tag=a&tag=b&limit=2&marker=x"),
                                "m1", 2)
    assert link == "/v2/images?tag=a&tag=b&marker=m1&limit=2"
