"""Unit tests of URL filtering, location validation data and the pipelined store writer."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from onestack.common.errors import BadRequest
from onestack.drivers.imagestore.base import StoreError
from onestack.drivers.imagestore.file import FileStore
from onestack.image.fetch import UrlPolicy
from onestack.image.locations import check_validation_data
from onestack.image.stores import StoreSet


def test_url_policy_off_by_default() -> None:
    policy = UrlPolicy("")
    assert not policy.enabled
    with pytest.raises(BadRequest, match="does not pass filtering"):
        policy.check("http://127.0.0.1/x")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/img/a.raw",
    "HTTP://127.0.0.1:8080/img/",
    "http://127.0.0.1:8080/img/a?x=1",
    "https://mirror.example:443/pub/c.img",
    "https://mirror.example/pub/d.img",
])
def test_url_policy_allows(url: str) -> None:
    policy = UrlPolicy("http://127.0.0.1:8080/img/, https://mirror.example/pub/")
    assert policy.enabled
    assert policy.check(url).url == url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8081/img/a.raw",           # other port
    "http://127.0.0.1:8080/other/a.raw",         # outside the path prefix
    "http://127.0.0.1:8080/imgx",                # prefix must match whole
    "http://localhost:8080/img/a.raw",           # other host name
    "http://user@127.0.0.1:8080/img/a.raw",      # user info
    "http://127.0.0.1:8080@evil.example/img/",   # user info trick
    "ftp://127.0.0.1:8080/img/a.raw",            # scheme
    "file:///etc/passwd",
    "http:///img/a.raw",                         # no host
    "https://mirror.example:8443/pub/x",         # default port differs
    "http://mirror.example/pub/x",               # http vs https
    "http://127.0.0.1:8080/img/a\r\nX: y",       # header injection
    "",
    42,
])
def test_url_policy_refuses(url: object) -> None:
    policy = UrlPolicy("http://127.0.0.1:8080/img/, https://mirror.example/pub/")
    with pytest.raises(BadRequest, match="does not pass filtering"):
        policy.check(url)


def test_bad_allow_setting_fails_early() -> None:
    with pytest.raises(ValueError):
        UrlPolicy("gopher://x/")


def test_web_store_only_with_an_allow_list(tmp_path: Path) -> None:
    plain = StoreSet(FileStore(tmp_path / "a"))
    assert plain.web is None and plain.ids() == ["file"]
    web = StoreSet(FileStore(tmp_path / "b"), "", UrlPolicy("http://127.0.0.1:1/"))
    assert web.ids() == ["file", "web"] and web.writable_ids() == ["file"]
    assert web.store_id_of("http://127.0.0.1:1/x") == "web"
    assert {"id": "web", "description": web.web.description if web.web else "",
            "read-only": "true"} in web.info()
    with pytest.raises(BadRequest):
        web.get("web")  # nothing can be written there
    with pytest.raises(StoreError):
        list(web.open("http://127.0.0.1:2/x"))  # not allowed: never fetched


def test_validation_data() -> None:
    sha = hashlib.sha512(b"x").hexdigest()
    assert check_validation_data(None) == {}
    assert check_validation_data({"os_hash_algo": "sha512", "os_hash_value": sha.upper(),
                                  "checksum": "A" * 32}) == {
        "os_hash_algo": "sha512", "os_hash_value": sha, "checksum": "a" * 32}
    for bad in ({"os_hash_value": sha}, {"os_hash_algo": "md4", "os_hash_value": sha},
                {"os_hash_algo": "sha256", "os_hash_value": sha}, {"checksum": "1" * 31},
                {"checksum": "g" * 32}, {"other": 1}, [1]):
        with pytest.raises(BadRequest):
            check_validation_data(bad)


def test_pipelined_writer(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    data = [os.urandom(n) for n in (1, 5000, 3 << 20, 700_000)]
    writer = store.begin("img")
    done = threading.Semaphore(0)
    for piece in data:
        writer.feed(piece, done.release)
    writer.drain()
    for _ in data:
        assert done.acquire(timeout=5)
    whole = b"".join(data)
    assert writer.md5_hexdigest() == hashlib.md5(whole, usedforsecurity=False).hexdigest()
    stored = writer.commit()
    assert stored.size == len(whole)
    assert stored.sha512 == hashlib.sha512(whole).hexdigest()
    assert (tmp_path / "img").read_bytes() == whole
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("image-")]


def test_pipelined_writer_failure_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    writer = store.begin("img")
    writer.feed(b"a" * 1000, lambda: None)
    writer.drain()
    boom = OSError(28, "No space left on device")

    def fail(view: memoryview) -> None:
        raise StoreError(f"cannot write image data: {boom.strerror}")

    writer.stages[2].fn = fail  # type: ignore[attr-defined]
    calls: list[int] = []
    writer.feed(b"b" * 1000, lambda: calls.append(1))
    with pytest.raises(StoreError, match="No space left"):
        writer.drain()
    assert calls == [1]  # done() still comes, so callers never wait forever
    with pytest.raises(StoreError):
        writer.feed(b"c", lambda: None)
    with pytest.raises(StoreError):
        writer.commit()  # aborts
    assert not (tmp_path / "img").exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    writer.abort()  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("image-")]


def test_upload_batches_reuse_buffers() -> None:
    import asyncio
    from collections.abc import Callable

    from onestack.image import api

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
