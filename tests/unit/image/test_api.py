"""Unit tests of the image service's pure parts: pagination, patch parsing, faults, store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, column, create_engine, select, table, text
from starlette.datastructures import QueryParams

from onestack.common import pagination
from onestack.common.errors import BadRequest, Forbidden, NotFound, RangeNotSatisfiable
from onestack.common.pagination import SortKey
from onestack.drivers.imagestore.base import DataNotFound
from onestack.drivers.imagestore.file import FileStore
from onestack.image import api, schemas
from onestack.image.manager import _split_in


# ---------------------------------------------------------------- pagination
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


# ---------------------------------------------------------------- patch / schema
def test_parse_patch_forms() -> None:
    assert api.parse_patch([{"op": "replace", "path": "/name", "value": "x"}]) == [
        ("replace", ["name"], "x")]
    assert api.parse_patch([{"add": "/a~1b", "value": "1"}]) == [("add", ["a/b"], "1")]
    assert api.parse_patch([{"op": "remove", "path": "/tags/0"}]) == [
        ("remove", ["tags", "0"], None)]
    for bad in ({}, [1], [{"op": "test", "path": "/x", "value": 1}],
                [{"op": "add", "path": "/x"}], [{"op": "add", "path": "x", "value": 1}],
                [{"op": "add", "path": "/", "value": 1}], [{"path": "/x"}]):
        with pytest.raises(BadRequest):
            api.parse_patch(bad)


def test_attribute_names() -> None:
    for name in ("os_glance_x", "location", "deleted"):
        with pytest.raises(Forbidden):
            schemas.check_attribute_name(name)
    with pytest.raises(Forbidden, match="read-only"):
        schemas.check_attribute_name("checksum")
    schemas.check_attribute_name("hw_disk_bus")
    schemas.validate_image({"name": None, "disk_format": None, "x": "y"})
    with pytest.raises(BadRequest):
        schemas.validate_image({"disk_format": "floppy"})
    with pytest.raises(BadRequest):
        schemas.validate_image({"x": 1})


def test_split_in() -> None:
    assert _split_in("a,b") == ["a", "b"]
    assert _split_in('"a,b",c') == ["a,b", "c"]


# ---------------------------------------------------------------- faults / ranges
def test_fault_kinds() -> None:
    assert api._fault_kind("") == "html"
    assert api._fault_kind("*/*") == "html"
    assert api._fault_kind("application/json") == "json"
    assert api._fault_kind("text/plain") == "plain"
    assert api._fault_kind("application/json;q=0.5, text/html") == "html"


def test_fault_bodies_follow_accept() -> None:
    token = api._ACCEPT.set("application/json")
    try:
        body, media = api.glance_fault(NotFound("No image found with ID x"))
    finally:
        api._ACCEPT.reset(token)
    assert media == "application/json"
    assert isinstance(body, dict) and body["code"] == "404 Not Found"
    body, media = api.glance_fault(NotFound("No <b>image</b>"))
    assert media == "text/html" and isinstance(body, str)
    assert "<h1>404 Not Found</h1>" in body and "&lt;b&gt;" in body


def test_ranges() -> None:
    assert api._parse_range("bytes=0-9", 100) == (0, 9)
    assert api._parse_range("bytes=90-", 100) == (90, 99)
    assert api._parse_range("bytes=-10", 100) == (90, 99)
    assert api._parse_range("bytes=50-500", 100) == (50, 99)
    for bad in ("bytes=100-", "bytes=5-2", "bytes=0-1,3-4", "items=1-2", "bytes=-0"):
        with pytest.raises(RangeNotSatisfiable):
            api._parse_range(bad, 100)


def test_md5_header() -> None:
    digest = hashlib.md5(b"x", usedforsecurity=False)
    import base64

    assert api._parse_md5(digest.hexdigest()) == digest.hexdigest()
    assert api._parse_md5(base64.b64encode(digest.digest()).decode()) == digest.hexdigest()
    with pytest.raises(BadRequest):
        api._parse_md5("nope")


# ---------------------------------------------------------------- file store
def test_file_store_roundtrip(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "images")
    data = bytes(range(256)) * 5000
    w = store.begin("img1")
    w.write(data[:1000])
    w.write(data[1000:])
    assert not (tmp_path / "images" / "img1").exists()  # invisible until commit
    stored = w.commit()
    assert stored.size == len(data)
    assert stored.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert stored.sha512 == hashlib.sha512(data).hexdigest()
    assert b"".join(store.open(stored.location)) == data
    assert b"".join(store.open(stored.location, 10, 20, chunk_size=7)) == data[10:30]
    store.delete(stored.location)
    store.delete(stored.location)  # idempotent
    with pytest.raises(DataNotFound):
        store.open(stored.location)


def test_file_store_starts_writeback_as_it_writes(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Writeback of a big image starts in ``WRITEBACK_EVERY`` steps, covering the file in
    order, so the commit's fsync has little left; the data and the slices read back agree."""
    from onestack.drivers.imagestore import file as file_store

    assert file_store._sync_file_range is not None  # Linux: the real call is available
    calls: list[tuple[int, int]] = []
    real = file_store.start_writeback
    monkeypatch.setattr(file_store, "start_writeback",
                        lambda fd, off, n: (calls.append((off, n)), real(fd, off, n)))
    store = FileStore(tmp_path / "images")
    data = hashlib.sha512(b"seed").digest() * ((20 << 20) // 64 + 3)
    w = store.begin("big")
    for i in range(0, len(data), 3 << 20):
        w.write(data[i:i + (3 << 20)])
    stored = w.commit()
    assert calls and calls[0][0] == 0
    assert all(a[0] + a[1] == b[0] for a, b in zip(calls, calls[1:], strict=False))
    assert all(n >= file_store.WRITEBACK_EVERY for _, n in calls)
    assert sum(n for _, n in calls) > len(data) - 2 * file_store.WRITEBACK_EVERY
    sl = store.open(stored.location, 5, (9 << 20) + 1, chunk_size=1 << 20)
    assert (sl.offset, sl.length) == (5, (9 << 20) + 1)
    assert b"".join(sl) == data[5:5 + (9 << 20) + 1]
    whole = store.open(stored.location)
    assert whole.length == len(data) and b"".join(whole) == data


def test_file_store_abort_and_cleanup(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "images")
    w = store.begin("img2")
    w.write(b"partial")
    w.abort()
    assert list((tmp_path / "images" / "tmp").iterdir()) == []
    w = store.begin("img3", staging=True)
    w.write(b"staged")
    staged = w.commit()
    final = store.promote(staged, "img3")
    assert b"".join(store.open(final.location)) == b"staged"
    orphan = store.begin("orphan")
    orphan.write(b"x")
    orphan.commit()
    assert store.cleanup(keep={final.location}) == 1
    assert not (tmp_path / "images" / "orphan").exists()
    with pytest.raises(Exception):  # noqa: B017 - any StoreError subclass
        store.open("file:///etc/passwd")
