"""Images as files under ``DATA/images/``.

Layout: ``images/<id>`` for data, ``images/staging/<id>`` for staged imports and
``images/tmp/<id>.<random>`` for writes in progress (renamed into place after fsync, so a
reader never sees a partial file and a crash leaves only ``tmp/`` debris, swept on start).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from onestack.drivers.storage.base import (
    DataNotFound,
    Hasher,
    ImageStore,
    ImageWriter,
    StoredData,
    StoreError,
)

_PREFIX = "file://"
#: Writes at least this large hash in parallel with the write.
_PARALLEL_MIN = 256 << 10
#: Shared by all writers: two hashes per batch, batches of different uploads interleave.
_HASH_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="image-hash")


class _FileWriter(ImageWriter):
    def __init__(self, tmp: Path, final: Path) -> None:
        self.tmp = tmp
        self.final = final
        self.hasher = Hasher()
        self.size = 0
        self._fd: int | None = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            raise StoreError("write after commit or abort")
        view = memoryview(data)
        if len(view) >= _PARALLEL_MIN:
            # md5 and sha512 each run at well under disk speed; both release the GIL, so
            # hash in two helper threads while this one writes.
            futures = [_HASH_POOL.submit(self.hasher.md5.update, view),
                       _HASH_POOL.submit(self.hasher.sha.update, view)]
            try:
                self._write_all(view)
            finally:
                for f in futures:
                    f.result()
            self.hasher.size += len(view)
        else:
            self.hasher.update(view)
            self._write_all(view)
        self.size += len(data)

    def _write_all(self, view: memoryview) -> None:
        assert self._fd is not None
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError as exc:
                raise StoreError(f"cannot write image data: {exc.strerror}") from exc
            view = view[n:]

    def commit(self) -> StoredData:
        if self._fd is None:
            raise StoreError("commit after commit or abort")
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
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


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
        return self._read(fh, offset, length, chunk_size)

    @staticmethod
    def _read(fh: object, offset: int, length: int | None, chunk_size: int) -> Iterator[bytes]:
        import io

        assert isinstance(fh, io.RawIOBase)
        with fh:
            if offset:
                fh.seek(offset)
            left = length
            while left is None or left > 0:
                want = chunk_size if left is None else min(chunk_size, left)
                data = fh.read(want)
                if not data:
                    break
                if left is not None:
                    left -= len(data)
                yield data

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
