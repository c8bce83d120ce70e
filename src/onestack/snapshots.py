"""Snapshots of a whole cloud: ``onestack snapshot save|load|list|delete`` and ``reset``.

A snapshot is ``DATA/snapshots/NAME/``: ``onestack.db`` (an online backup of the SQLite
database: one consistent point in time even while the cloud writes), ``files/`` (the rest of
the data dir: image files, volumes, backups, guests' disks and definitions, keys, rc files)
and ``meta.json``. What is never part of one: the run and pid files, the fault rules, the
network data plane's host state (``dataplane/``: rebuilt from the database on start), the
guest image cache (``cache/``) and scratch directories.

Files that onestack never changes in place (image data and converted image caches, written
aside and renamed into place) are hard-linked, so 1 GiB of images costs nothing to save or
load; every other file is cloned (``FICLONE``: copy-on-write on btrfs/XFS) or copied sparsely
(holes stay holes). Saving pauses the running QEMU guests for the copy of their disks (QMP
``stop``/``cont``), so disks and database agree.

Loading replaces the data dir's state with the snapshot's. The cloud must not run meanwhile:
``onestack snapshot load`` on a running cloud asks it (SIGHUP and a request file) to stop, load
and start again in the same process. The guests of the state being replaced are stopped
(their QEMU processes, found by the pid files in the instance dirs); after a load the guests
of instances the snapshot has ACTIVE and running are started again (``resume-guests``
marker), from the disks as saved: a reboot, not a memory restore. The others keep their
recorded state with the power state their driver reports, as after a host reboot (a
QEMU guest suspended to disk stays suspended; a paused one reads SHUTDOWN). A load
interrupted by a crash is finished by the next ``onestack up`` (``loading`` marker).
``reset`` loads the snapshot taken when the cloud was first bootstrapped (``_fresh``). Only
the SQLite database can be snapshotted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from onestack import __version__
from onestack.common.timeutils import isotime, utcnow
from onestack.config import Settings

LOG = logging.getLogger(__name__)

SNAPSHOT_DIR = "snapshots"
#: The snapshot of the freshly bootstrapped cloud (what ``reset`` loads).
FRESH = "_fresh"
RESUME_MARKER = "resume-guests"
#: In ``snapshots/``: the name being loaded (a crash mid-load is finished on start) and the
#: name a running cloud was asked to load.
LOADING = "loading"
LOAD_REQUEST = "load-request"
DB_NAME = "onestack.db"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: Top-level entries of the data dir never saved nor replaced.
KEEP_TOP = frozenset({SNAPSHOT_DIR, "run.json", "run.json.tmp", "onestack.pid", "faults.json",
                      "faults.json.lock", "faults.json.tmp", "dataplane", "volumes-scratch",
                      "cache", "guest-image.json",
                      RESUME_MARKER, DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm",
                      f"{DB_NAME}-journal"})
#: Trees whose files are written aside and renamed into place, never changed: hard links.
LINKED = ("images", "image-cache", "instances/_base")
#: Directory names under ``images`` holding writes in progress: not saved.
SCRATCH = frozenset({"tmp", "staging"})

FICLONE = 0x40049409


class SnapshotError(Exception):
    """A snapshot cannot be saved or loaded (the message says why)."""


@dataclass
class SnapshotInfo:
    name: str
    created_at: str
    version: str
    size_bytes: int
    files: int
    linked_bytes: int
    seconds: float

    @classmethod
    def read(cls, path: Path) -> SnapshotInfo | None:
        try:
            return cls(**json.loads((path / "meta.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


# ---------------------------------------------------------------------- file copies
def _copy_file(src: str, dst: str) -> None:
    """Copy ``src`` to a new ``dst``: a clone where the file system can, else only the
    data extents (holes stay holes)."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        try:
            fcntl.ioctl(fo.fileno(), FICLONE, fi.fileno())
        except OSError:
            _copy_extents(fi.fileno(), fo.fileno(), os.fstat(fi.fileno()).st_size)
    shutil.copystat(src, dst)


def _copy_extents(fi: int, fo: int, size: int) -> None:
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fi, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        end = os.lseek(fi, start, os.SEEK_HOLE)
        off = start
        while off < end:
            try:
                n = os.copy_file_range(fi, fo, end - off, off, off)
            except OSError:
                chunk = os.pread(fi, min(end - off, 1 << 20), off)
                n = os.pwrite(fo, chunk, off) if chunk else 0
            if n <= 0:
                break
            off += n
        pos = end
    os.ftruncate(fo, size)


@dataclass
class _Tally:
    files: int = 0
    size: int = 0
    linked: int = 0


def _linked(rel: str) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in LINKED)


def _copy_tree(src: Path, dst: Path, rel: str, tally: _Tally) -> None:
    """Copy the tree ``src`` to ``dst`` (hard links below ``LINKED``); sockets, fifos and
    scratch directories are left out."""
    dst.mkdir(mode=0o700, exist_ok=True)
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        sub = f"{rel}/{entry.name}" if rel else entry.name
        target = dst / entry.name
        if not rel and entry.name in KEEP_TOP:
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir():
            if sub.startswith("images/") and entry.name in SCRATCH:
                continue
            _copy_tree(Path(entry.path), target, sub, tally)
        elif entry.is_file():
            st = entry.stat()
            if _linked(sub):
                try:
                    os.link(entry.path, target)
                    tally.linked += st.st_size
                except OSError:
                    _copy_file(entry.path, os.fspath(target))
            else:
                _copy_file(entry.path, os.fspath(target))
            tally.files += 1
            tally.size += st.st_size


# ---------------------------------------------------------------------- guests
def _guest_dirs(data_dir: Path) -> list[tuple[Path, int]]:
    """Instance dirs of this data dir with a live QEMU, and its pid."""
    from onestack.drivers.hypervisor.qemu.host import pid_alive

    root = data_dir / "instances"
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.name.startswith("_"):
                continue
            try:
                pid = int((d / "qemu.pid").read_text().strip())
            except (OSError, ValueError):
                continue
            if pid_alive(pid, d.name):
                out.append((d, pid))
    return out


async def _qmp_all(dirs: list[Path], command: str, only_status: str | None) -> list[Path]:
    from onestack.drivers.hypervisor.qemu.host import socket_path
    from onestack.drivers.hypervisor.qemu.qmp import QMPClient, QMPError

    done = []
    for d in dirs:
        try:
            async with QMPClient(socket_path(d, "qmp.sock"), 10.0) as qmp:
                if only_status is not None:
                    status = await qmp.execute("query-status")
                    if status.get("status") != only_status:
                        continue
                await qmp.execute(command)
                done.append(d)
        except (OSError, QMPError) as exc:
            LOG.warning("guest %s: QMP %s failed: %s", d.name, command, exc)
    return done


def _stop_guests(data_dir: Path, timeout: float = 10.0) -> int:
    """Stop the QEMU processes of this data dir's guests (their state is being replaced)."""
    from onestack.drivers.hypervisor.qemu.host import pid_alive

    guests = _guest_dirs(data_dir)
    for _d, pid in guests:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for d, pid in guests:
        while pid_alive(pid, d.name) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid, d.name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return len(guests)


# ---------------------------------------------------------------------- save / load
def _sqlite_path(settings: Settings) -> Path:
    url = settings.db_url
    if not url.startswith("sqlite:///"):
        raise SnapshotError("snapshots need the SQLite database (the default); this cloud "
                            "uses " + url.split(":", 1)[0])
    return Path(url[len("sqlite:///"):])


def _check_name(name: str, internal: bool = False) -> None:
    if not (NAME_RE.fullmatch(name) or (internal and name == FRESH)):
        raise SnapshotError(f"invalid snapshot name {name!r}: letters, digits, '.', '_' "
                            "and '-', at most 64, starting with a letter or digit")


def save(settings: Settings, name: str, *, replace: bool = False,
         internal: bool = False) -> SnapshotInfo:
    """Save the data dir's state as snapshot ``name`` (running cloud or not)."""
    _check_name(name, internal)
    t0 = time.monotonic()
    data_dir = settings.data_dir
    db_path = _sqlite_path(settings)
    if not db_path.exists():
        raise SnapshotError(f"no cloud in {data_dir} (start it once with 'onestack up')")
    snaps = data_dir / SNAPSHOT_DIR
    snaps.mkdir(mode=0o700, exist_ok=True)
    final = snaps / name
    if final.exists() and not replace:
        raise SnapshotError(f"snapshot {name} exists (use --force to replace it)")
    work = snaps / f".{name}.{secrets.token_hex(4)}.partial"
    work.mkdir(mode=0o700)
    tally = _Tally()
    paused: list[Path] = []
    try:
        running = [d for d, _pid in _guest_dirs(data_dir)]
        if running:
            paused = asyncio.run(_qmp_all(running, "stop", "running"))
        src = sqlite3.connect(db_path)
        dst = sqlite3.connect(work / DB_NAME)
        try:
            with dst:
                src.backup(dst)
        finally:
            src.close()
            dst.close()
        _copy_tree(data_dir, work / "files", "", tally)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if paused:
            asyncio.run(_qmp_all(paused, "cont", None))
    info = SnapshotInfo(name=name, created_at=isotime(utcnow()), version=__version__,
                        size_bytes=tally.size + (work / DB_NAME).stat().st_size,
                        files=tally.files, linked_bytes=tally.linked,
                        seconds=round(time.monotonic() - t0, 3))
    (work / "meta.json").write_text(json.dumps(asdict(info), indent=1))
    if final.exists():
        trash = snaps / f".{name}.{secrets.token_hex(4)}.old"
        os.replace(final, trash)
        os.replace(work, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work, final)
    return info


def snapshot_path(settings: Settings, name: str) -> Path:
    path = settings.data_dir / SNAPSHOT_DIR / name
    if SnapshotInfo.read(path) is None:
        if name == FRESH:
            raise SnapshotError("this cloud has no snapshot of its first start (it was made "
                                "by an older onestack): reset is not available")
        raise SnapshotError(f"no snapshot {name!r} (see 'onestack snapshot list')")
    return path


def load(settings: Settings, name: str, progress: Callable[[str], None] | None = None
         ) -> SnapshotInfo:
    """Replace the (stopped) cloud's state with snapshot ``name``."""
    if name != FRESH:
        _check_name(name)
    data_dir = settings.data_dir
    db_path = _sqlite_path(settings)
    path = snapshot_path(settings, name)
    info = SnapshotInfo.read(path)
    assert info is not None
    t0 = time.monotonic()
    marker = data_dir / SNAPSHOT_DIR / LOADING
    marker.write_text(name)
    stopped = _stop_guests(data_dir)
    if stopped and progress is not None:
        progress(f"stopped {stopped} running guest{'s' if stopped != 1 else ''}")
    for entry in list(data_dir.iterdir()):
        if entry.name in KEEP_TOP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for suffix in ("-wal", "-shm", "-journal"):
        (db_path.parent / (db_path.name + suffix)).unlink(missing_ok=True)
    tmp_db = db_path.with_name(db_path.name + ".loading")
    _copy_file(os.fspath(path / DB_NAME), os.fspath(tmp_db))
    os.replace(tmp_db, db_path)
    _copy_tree(path / "files", data_dir, "", _Tally())
    (data_dir / "faults.json").unlink(missing_ok=True)
    (data_dir / RESUME_MARKER).write_text(name)
    marker.unlink()
    info.seconds = round(time.monotonic() - t0, 3)
    return info


def finish_interrupted_load(settings: Settings) -> str | None:
    """Finish a load a crash interrupted (called before the cloud starts); its name."""
    marker = settings.data_dir / SNAPSHOT_DIR / LOADING
    try:
        name = marker.read_text().strip()
    except OSError:
        return None
    LOG.warning("finishing the interrupted load of snapshot %s", name)
    load(settings, name)
    return name


def take_resume_marker(data_dir: Path) -> bool:
    """Whether the guests should be started again (a load just happened); clears it."""
    path = Path(data_dir) / RESUME_MARKER
    if not path.exists():
        return False
    path.unlink(missing_ok=True)
    return True


def request_load(settings: Settings, name: str) -> None:
    """Ask a running cloud to load ``name`` (it reads this when SIGHUP stops it)."""
    snapshot_path(settings, name)
    _sqlite_path(settings)
    (settings.data_dir / SNAPSHOT_DIR / LOAD_REQUEST).write_text(name)


def take_load_request(data_dir: Path) -> str | None:
    path = Path(data_dir) / SNAPSHOT_DIR / LOAD_REQUEST
    try:
        name = path.read_text().strip()
    except OSError:
        return None
    path.unlink(missing_ok=True)
    return name or None


def list_snapshots(settings: Settings, include_fresh: bool = False) -> list[SnapshotInfo]:
    snaps = settings.data_dir / SNAPSHOT_DIR
    out = []
    if snaps.is_dir():
        for d in sorted(snaps.iterdir()):
            if d.name.startswith(".") or (d.name == FRESH and not include_fresh):
                continue
            info = SnapshotInfo.read(d)
            if info is not None:
                out.append(info)
    return out


def delete(settings: Settings, name: str) -> None:
    _check_name(name)
    path = snapshot_path(settings, name)
    trash = path.with_name(f".{name}.{secrets.token_hex(4)}.old")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def cleanup_partial(settings: Settings) -> None:
    """Remove what an interrupted save or delete left behind."""
    snaps = settings.data_dir / SNAPSHOT_DIR
    if snaps.is_dir():
        for d in snaps.iterdir():
            if d.name.startswith(".") and d.name.endswith((".partial", ".old")):
                shutil.rmtree(d, ignore_errors=True)
