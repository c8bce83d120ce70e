"""The file image store (``drivers/imagestore/file.py``): writers, reads, cleanup."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from onestack.drivers.imagestore.base import DataNotFound, StoreError
from onestack.drivers.imagestore.file import FileStore


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
