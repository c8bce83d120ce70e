"""Writing the guest's initramfs archive: newc cpio, which the kernel unpacks at boot."""

from __future__ import annotations

from pathlib import PurePosixPath

_EPOCH = 1_700_000_000  # fixed mtime for reproducible archives


class Cpio:
    """An in-memory newc cpio archive of an initramfs."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, bytes, int, int]] = {}

    def _parents(self, path: str) -> None:
        parent = PurePosixPath(path).parent
        while str(parent) not in (".", "/", ""):
            self._entries.setdefault(str(parent), (0o040755, b"", 0, 0))
            parent = parent.parent

    def directory(self, path: str, mode: int = 0o755) -> None:
        """Add a directory (and its parents)."""
        self._parents(path)
        self._entries[path] = (0o040000 | mode, b"", 0, 0)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Add a regular file."""
        self._parents(path)
        self._entries[path] = (0o100000 | mode, data, 0, 0)

    def symlink(self, path: str, target: str) -> None:
        """Add a symbolic link."""
        self._parents(path)
        self._entries[path] = (0o120777, target.encode(), 0, 0)

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        """Add a character device node."""
        self._parents(path)
        self._entries[path] = (0o020000 | mode, b"", major, minor)

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def to_bytes(self) -> bytes:
        """Serialise the archive (parents before children, then the trailer)."""
        out = bytearray()

        def record(ino: int, name: str, mode: int, data: bytes, rmaj: int, rmin: int) -> None:
            encoded = name.encode() + b"\0"
            nlink = 2 if mode & 0o170000 == 0o040000 else 1
            fields = (ino, mode, 0, 0, nlink, _EPOCH, len(data), 0, 0, rmaj, rmin)
            header = "070701" + "".join(f"{v:08x}" for v in fields)
            header += f"{len(encoded):08x}{0:08x}"
            out.extend(header.encode() + encoded)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        for ino, path in enumerate(sorted(self._entries, key=lambda p: p.split("/")), 1):
            mode, data, rmaj, rmin = self._entries[path]
            record(ino, path, mode, data, rmaj, rmin)
        record(0, "TRAILER!!!", 0, b"", 0, 0)
        return bytes(out)
