"""Images as files under ``DATA/images/``.

Layout: ``images/<id>`` for data, ``images/staging/<id>`` for staged imports and
``images/tmp/<id>.<random>`` for writes in progress (renamed into place after fsync, so a
reader never sees a partial file and a crash leaves only ``tmp/`` debris, swept on start).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from onestack.drivers.imagestore.base import (
    DataNotFound,
    FileSlice,
    Hasher,
    ImageStore,
    ImageWriter,
    StoredData,
    StoreError,
)

_PREFIX = "file://"
#: Written bytes after which the write stage asks the kernel to start writing them back.
WRITEBACK_EVERY = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    with contextlib.suppress(OSError, AttributeError):
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn
    return None


#: Linux's sync_file_range(2) (None elsewhere): starts writeback of a range, no waiting.
_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing ``length`` bytes from ``offset`` back to disk now
    rather than at the final fsync, which then has little left to wait for (best effort)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class _Stage(threading.Thread):
    """One step of a writer's pipeline (md5, sha512 or the file write), in order."""

    def __init__(self, writer: _FileWriter, name: str,
                 fn: Callable[[memoryview], None]) -> None:
        super().__init__(name=f"image-{name}", daemon=True)
        self.writer = writer
        self.fn = fn
        self.queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()

    def run(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                if self.writer.error is None:
                    self.fn(batch.view)
            except BaseException as exc:  # noqa: BLE001 - reported by the writer
                self.writer.fail(exc)
            finally:
                batch.step_done()


class _Batch:
    """Data on its way through the stages; ``done`` runs after the last one."""

    __slots__ = ("view", "left", "done", "writer")

    def __init__(self, writer: _FileWriter, data: bytes | bytearray | memoryview,
                 done: Callable[[], None] | None) -> None:
        self.writer = writer
        view = memoryview(data)
        self.view = view if view.format == "B" else view.cast("B")
        self.left = len(writer.stages)
        self.done = done

    def step_done(self) -> None:
        with self.writer.lock:
            self.left -= 1
            last = self.left == 0
        if last:
            self.view.release()
            self.writer.batch_done()
            if self.done is not None:
                self.done()


class _FileWriter(ImageWriter):
    """Writes through a three-stage pipeline: md5, sha512 and the file write each run in
    their own thread, batch after batch, so on a multi-core host they overlap with each other
    and with the network (hashlib and ``os.write`` release the GIL on big buffers). The write
    stage starts the disk writeback every ``WRITEBACK_EVERY`` bytes, so the commit's fsync
    does not wait for the whole image to reach the disk."""

    def __init__(self, tmp: Path, final: Path) -> None:
        self.tmp = tmp
        self.final = final
        self.hasher = Hasher()
        self.size = 0
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self._idle = threading.Condition(self.lock)
        self._in_flight = 0
        self._fd: int | None = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._written = 0  # bytes written (write stage only)
        self._flushed = 0  # of which writeback was started
        self.stages = [_Stage(self, "md5", self.hasher.md5.update),
                       _Stage(self, "sha512", self.hasher.sha.update),
                       _Stage(self, "write", self._write_all)]
        for stage in self.stages:
            stage.start()

    # ------------------------------------------------------------------ pipeline
    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc

    def batch_done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def _raise_error(self) -> None:
        exc = self.error
        if exc is not None:
            if isinstance(exc, StoreError):
                raise exc
            raise StoreError(f"cannot write image data: {exc}") from exc

    def feed(self, data: bytes | bytearray | memoryview, done: Callable[[], None]) -> None:
        if self._fd is None:
            raise StoreError("write after commit or abort")
        self._raise_error()
        batch = _Batch(self, data, done)
        with self.lock:
            self._in_flight += 1
        self.size += batch.view.nbytes
        self.hasher.size += batch.view.nbytes
        for stage in self.stages:
            stage.queue.put(batch)

    def drain(self) -> None:
        with self._idle:
            while self._in_flight:
                self._idle.wait()
        self._raise_error()

    def write(self, data: bytes | memoryview) -> None:
        self.feed(data, _nothing)
        self.drain()

    def md5_hexdigest(self) -> str:
        return self.hasher.md5.hexdigest()

    def _stop(self) -> None:
        for stage in self.stages:
            stage.queue.put(None)
        for stage in self.stages:
            if stage.is_alive() and stage is not threading.current_thread():
                stage.join()

    # ------------------------------------------------------------------ file
    def _write_all(self, view: memoryview) -> None:
        fd = self._fd
        if fd is None:
            raise StoreError("write after abort")
        while view:
            try:
                n = os.write(fd, view)
            except OSError as exc:
                raise StoreError(f"cannot write image data: {exc.strerror}") from exc
            view = view[n:]
            self._written += n
        if self._written - self._flushed >= WRITEBACK_EVERY:
            start_writeback(fd, self._flushed, self._written - self._flushed)
            self._flushed = self._written

    def commit(self) -> StoredData:
        if self._fd is None:
            raise StoreError("commit after commit or abort")
        try:
            self.drain()
        except StoreError:
            self.abort()
            raise
        self._stop()
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.replace(self.tmp, self.final)
            dir_fd = os.open(self.final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise StoreError(f"cannot store image data: {exc.strerror}") from exc
        return StoredData(_PREFIX + str(self.final), self.size, self.hasher.md5.hexdigest(),
                          self.hasher.sha.hexdigest())

    def abort(self) -> None:
        self.fail(StoreError("aborted"))
        self._stop()  # stages skip what is still queued once an error is recorded
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


def _nothing() -> None:
    """``done`` of a synchronous write."""


class FileStore(ImageStore):
    """The local-filesystem store of an all-in-one cloud."""

    store_id = "file"
    description = "Local filesystem store"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.staging = self.root / "staging"
        for d in (self.root, self.tmp, self.staging):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, location: str) -> Path:
        if not location.startswith(_PREFIX):
            raise StoreError(f"not a file store location: {location!r}")
        path = Path(location[len(_PREFIX):])
        try:
            path.resolve().relative_to(self.root.resolve())
        except ValueError:
            raise StoreError("location outside the image store") from None
        return path

    @staticmethod
    def _check_id(image_id: str) -> None:
        if not image_id or "/" in image_id or image_id.startswith("."):
            raise StoreError(f"bad image id {image_id!r}")

    def begin(self, image_id: str, staging: bool = False) -> ImageWriter:
        self._check_id(image_id)
        final = (self.staging if staging else self.root) / image_id
        tmp = self.tmp / f"{image_id}.{secrets.token_hex(6)}"
        return _FileWriter(tmp, final)

    def open(self, location: str, offset: int = 0, length: int | None = None,
             chunk_size: int = 1 << 20) -> Iterator[bytes]:
        path = self._path(location)
        try:
            fh = path.open("rb", buffering=0)
        except FileNotFoundError:
            raise DataNotFound(f"no data at {location}") from None
        return FileSlice(fh, offset, length, chunk_size)

    def delete(self, location: str) -> None:
        try:
            self._path(location).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot delete image data: {exc.strerror}") from exc

    def promote(self, staged: StoredData, image_id: str) -> StoredData:
        self._check_id(image_id)
        src = self._path(staged.location)
        dst = self.root / image_id
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            raise DataNotFound(f"no staged data at {staged.location}") from None
        except OSError as exc:
            raise StoreError(f"cannot import image data: {exc.strerror}") from exc
        return StoredData(_PREFIX + str(dst), staged.size, staged.md5, staged.sha512)

    def local_path(self, location: str) -> str | None:
        try:
            return str(self._path(location))
        except StoreError:
            return None

    def cleanup(self, keep: set[str]) -> int:
        removed = 0
        for path in self.tmp.iterdir():
            path.unlink(missing_ok=True)
            removed += 1
        for directory in (self.root, self.staging):
            for path in directory.iterdir():
                if path.is_file() and _PREFIX + str(path) not in keep:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed
