"""The image data store contract.

A store keeps the bytes of images; the image manager keeps everything else. Stores are
synchronous (callers run them in worker threads) and never hold a whole image in memory.

Writing is two-phase so a failed or interrupted upload leaves nothing behind::

    writer = store.begin(image_id)          # a temporary object, invisible to readers
    writer.write(chunk) ...                 # hashes md5 + sha512 on the way
    stored = writer.commit()                # durable (fsync) and atomically in place
    # or writer.abort() on any failure: the temporary data is removed

``feed(data, done)`` is the pipelined form of ``write``: it queues the data and returns at
once, ``done()`` is called (from another thread) once the data is hashed and written, and
``drain()`` waits for everything fed. Callers bound how much they feed before ``done`` comes
back, so memory stays bounded.

``StoredData`` carries the location string (opaque to callers, kept in the database), the
size and the digests. ``open`` streams a byte range back (a :class:`FileSlice` when the
bytes are in a local file, so a server can hand the file to ``sendfile``), ``delete`` is
idempotent.
"""

from __future__ import annotations

import abc
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class StoredData:
    """What a committed write produced."""

    location: str
    size: int
    md5: str
    sha512: str


class StoreError(Exception):
    """The store cannot complete an operation (disk full, missing data, bad location)."""


class DataNotFound(StoreError):
    """The location names no data (deleted behind our back, or never written)."""


class FileSlice(Iterator[bytes]):
    """``length`` bytes of an open file from ``offset`` (to its end when None), iterated
    ``chunk_size`` bytes at a time; the file closes at the end, on :meth:`close` or when a
    read fails. ``fileno``/``offset``/``length`` let a server send the slice with
    ``sendfile`` instead of iterating it."""

    def __init__(self, fh: io.RawIOBase, offset: int, length: int | None,
                 chunk_size: int) -> None:
        self._fh = fh
        self.offset = offset
        if length is None:
            length = max(0, os.fstat(fh.fileno()).st_size - offset)
        self.length = length
        self._left = length
        self._chunk = chunk_size
        self._pos = offset

    def fileno(self) -> int:
        return self._fh.fileno()

    def __iter__(self) -> FileSlice:
        return self

    def __next__(self) -> bytes:
        if self._left <= 0 or self._fh.closed:
            self.close()
            raise StopIteration
        try:
            data = os.pread(self._fh.fileno(), min(self._chunk, self._left), self._pos)
        except BaseException:
            self.close()
            raise
        if not data:  # the file is shorter than promised
            self.close()
            raise StopIteration
        self._pos += len(data)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._fh.close()


class Hasher:
    """md5 + sha512 of a byte stream, as Glance records them (``checksum``, ``os_hash_value``)."""

    algo = "sha512"

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha = hashlib.sha512()
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self.md5.update(data)
        self.sha.update(data)
        self.size += len(data)


class ImageWriter(abc.ABC):
    """One in-progress write. Not thread-safe: one caller writes at a time."""

    #: Bytes written so far.
    size: int = 0

    @abc.abstractmethod
    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (and hash it)."""

    def feed(self, data: bytes | bytearray | memoryview, done: Callable[[], None]) -> None:
        """Queue ``data`` to be appended; ``done()`` follows once it is (default: at once).

        The caller must not change ``data`` before ``done()``. Errors surface from a later
        ``feed``, ``drain`` or ``commit`` (StoreError).
        """
        try:
            self.write(data)
        finally:
            done()

    def drain(self) -> None:
        """Wait until everything fed is hashed and written (StoreError on a failure)."""
        return None

    @abc.abstractmethod
    def md5_hexdigest(self) -> str:
        """MD5 of the data written so far (after ``drain``)."""

    @abc.abstractmethod
    def commit(self) -> StoredData:
        """Make the data durable and visible under its final location."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop everything written (idempotent, never raises)."""


class ImageStore(abc.ABC):
    """Where image bytes live."""

    #: Store id shown in ``/v2/info/stores`` and the image's ``stores`` attribute.
    store_id: str = "file"
    description: str = ""

    @abc.abstractmethod
    def begin(self, image_id: str, staging: bool = False) -> ImageWriter:
        """Start writing the data of ``image_id`` (``staging``: the import staging area)."""

    @abc.abstractmethod
    def open(self, location: str, offset: int = 0, length: int | None = None,
             chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream ``length`` bytes (all when None) starting at ``offset``.

        Raises ``DataNotFound`` before yielding anything when the data is gone.
        """

    @abc.abstractmethod
    def delete(self, location: str) -> None:
        """Remove the data at ``location``; a missing location is not an error."""

    @abc.abstractmethod
    def promote(self, staged: StoredData, image_id: str) -> StoredData:
        """Move staged data into the store proper (import); returns its new location."""

    def local_path(self, location: str) -> str | None:
        """A filesystem path of the data, when the store has one (for ``qemu-img info``)."""
        return None

    def cleanup(self, keep: set[str]) -> int:
        """Remove leftovers of crashed writes and data whose location is not in ``keep``.

        Returns how many objects were removed. The default does nothing.
        """
        return 0
