"""The directory backup backend: a backup is ``<dir>/<backup id>/`` holding its changed
chunks (``<index>``, 32 MiB each by default) and ``manifest.json``, which names for every
chunk of the volume the backup holding its data (this one or, for an incremental backup,
an ancestor) and its SHA-256; all-zero chunks are not stored. A backup appears under its
final name by a rename, so a crash leaves either nothing or a whole backup."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

CHUNK = 32 << 20


class BackupError(Exception):
    """A backup could not be written or read."""


class DirectoryBackupStore:
    def __init__(self, directory: Path, chunk_size: int = CHUNK) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.chunk_size = chunk_size
        for leftover in self.dir.glob(".*.part"):
            shutil.rmtree(leftover, ignore_errors=True)

    def _manifest(self, backup_id: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.dir / backup_id / "manifest.json")
                                              .read_text())
            return data
        except (OSError, ValueError) as exc:
            raise BackupError(f"backup {backup_id} has no readable manifest") from exc

    def exists(self, backup_id: str) -> bool:
        return (self.dir / backup_id / "manifest.json").exists()

    def write(self, backup_id: str, chunks: Iterable[bytes], size_bytes: int,
              parent_id: str | None = None, volume: dict[str, Any] | None = None) -> int:
        """Store a backup of the volume whose content ``chunks`` yields; incremental on
        ``parent_id`` (only chunks that differ from it are stored). Returns the number of
        chunk files written (Cinder's ``object_count``)."""
        parent = self._manifest(parent_id)["chunks"] if parent_id else {}
        part = self.dir / f".{backup_id}.part"
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(mode=0o700)
        written = 0
        table: dict[str, list[str]] = {}
        try:
            for index, data in enumerate(chunks):
                if not data.strip(b"\0"):
                    continue  # zeros: nothing to keep
                digest = hashlib.sha256(data).hexdigest()
                old = parent.get(str(index))
                if old is not None and old[1] == digest:
                    table[str(index)] = old
                    continue
                (part / f"{index:08d}").write_bytes(data)
                table[str(index)] = [backup_id, digest]
                written += 1
            (part / "manifest.json").write_text(json.dumps({
                "size_bytes": size_bytes, "chunk_size": self.chunk_size, "parent": parent_id,
                "volume": volume or {}, "chunks": table}))
            os.replace(part, self.dir / backup_id)
        except OSError as exc:
            shutil.rmtree(part, ignore_errors=True)
            raise BackupError(f"backup {backup_id} could not be written: {exc}") from exc
        return written

    def read(self, backup_id: str) -> Iterator[tuple[int, bytes]]:
        """``(offset, data)`` of every non-zero chunk of the backup (a restore writes them
        into a volume; the rest of a fresh volume is zeros already)."""
        m = self._manifest(backup_id)
        for index, (holder, digest) in sorted(m["chunks"].items(), key=lambda i: int(i[0])):
            data = (self.dir / holder / f"{int(index):08d}").read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise BackupError(f"backup {backup_id}: chunk {index} is damaged")
            yield int(index) * int(m["chunk_size"]), data

    def zero_ranges(self, backup_id: str) -> list[tuple[int, int]]:
        """``(offset, length)`` of the chunks the backup holds as zeros (a restore into an
        existing volume clears them)."""
        m = self._manifest(backup_id)
        size, step = int(m["size_bytes"]), int(m["chunk_size"])
        held = {int(i) for i in m["chunks"]}
        return [(i * step, min(step, size - i * step)) for i in range(-(-size // step))
                if i not in held]

    def volume_facts(self, backup_id: str) -> dict[str, Any]:
        """What the backup recorded of its volume (metadata, bootable, image metadata)."""
        facts: dict[str, Any] = self._manifest(backup_id).get("volume") or {}
        return facts

    def delete(self, backup_id: str) -> None:
        shutil.rmtree(self.dir / backup_id, ignore_errors=True)

    def ids(self) -> set[str]:
        return {p.name for p in self.dir.iterdir() if not p.name.startswith(".")}
