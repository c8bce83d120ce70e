"""The image API's pure parts (``image/api.py``, ``image/faults.py``): patch parsing,
faults, ranges, the MD5 header, upload batches."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable

import pytest

from onestack.common.errors import BadRequest, NotFound, RangeNotSatisfiable
from onestack.image import api, faults


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


def test_fault_kinds() -> None:
    assert faults._fault_kind("") == "html"
    assert faults._fault_kind("*/*") == "html"
    assert faults._fault_kind("application/json") == "json"
    assert faults._fault_kind("text/plain") == "plain"
    assert faults._fault_kind("application/json;q=0.5, text/html") == "html"


def test_fault_bodies_follow_accept() -> None:
    token = faults._ACCEPT.set("application/json")
    try:
        body, media = faults.glance_fault(NotFound("No image found with ID x"))
    finally:
        faults._ACCEPT.reset(token)
    assert media == "application/json"
    assert isinstance(body, dict) and body["code"] == "404 Not Found"
    body, media = faults.glance_fault(NotFound("No <b>image</b>"))
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


def test_upload_batches_reuse_buffers() -> None:
    class Slow:
        """A writer that finishes batches only when told to."""

        def __init__(self) -> None:
            self.got: list[bytes] = []
            self.pending: list[tuple[bytes | bytearray | memoryview, Callable[[], None]]] = []

        def feed(self, data: bytes | bytearray | memoryview, done: Callable[[], None]) -> None:
            self.pending.append((data, done))

        def finish_one(self) -> None:
            data, done = self.pending.pop(0)
            self.got.append(bytes(data))  # read only now: the buffer must still be intact
            done()

    async def run() -> tuple[bytes, bytes, int]:
        loop = asyncio.get_running_loop()
        batches = api._Batches(loop)
        writer = Slow()
        data = os.urandom(api.UPLOAD_BATCH * (api.UPLOAD_IN_FLIGHT + 2) + 12345)
        sizes = [1, 70_000, api.UPLOAD_BATCH + 3, 5, 300_000]
        pos, i, most = 0, 0, 0

        async def finish_later() -> None:
            while True:
                await asyncio.sleep(0.001)
                while writer.pending:
                    writer.finish_one()

        finisher = asyncio.create_task(finish_later())
        while pos < len(data):
            n = sizes[i % len(sizes)]
            await batches.add(data[pos:pos + n], writer)  # type: ignore[arg-type]
            most = max(most, batches.made)
            pos += n
            i += 1
        await batches.flush(writer)  # type: ignore[arg-type]
        finisher.cancel()
        while writer.pending:
            writer.finish_one()
        return data, b"".join(writer.got), most

    data, got, most = asyncio.run(run())
    assert got == data
    assert most <= api.UPLOAD_IN_FLIGHT
