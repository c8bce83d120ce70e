"""Immediate cache coherence between identity processes on one host.

Every process that serves identity keeps in-memory caches (users, roles, catalog, revocation
events, validated tokens). Across hosts they converge by polling the database every
``cache_refresh_interval``. On one host, processes share a small file of the data dir: a
process that commits an identity change writes a new value into it, and every process compares
it (a read of mapped memory, well under a microsecond) before answering from its caches,
refreshing them from the database first when it moved. So a token revoked through one worker
is refused by every worker on the next request.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from pathlib import Path

_SIZE = 16


class ChangeHint:
    """A 16-byte shared marker file: (monotonic-ish ns timestamp, pid) of the last change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        self._lock = threading.Lock()
        self._seen = self._read()

    def _read(self) -> bytes:
        return self._map[:_SIZE]

    def bump(self) -> None:
        """Announce a committed change to every process sharing the file."""
        value = struct.pack("<qq", time.time_ns(), os.getpid())
        with self._lock:
            self._map[:_SIZE] = value
            self._seen = value

    def changed(self) -> bool:
        """True once per change made by any process since the last call."""
        current = self._read()
        if current == self._seen:
            return False
        with self._lock:
            self._seen = current
        return True

    def close(self) -> None:
        self._map.close()
