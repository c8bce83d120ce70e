"""Snapshot files: hard links for immutable trees, sparse copies, what is left out, an
interrupted load finished on start, refusals."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest

from onestack import snapshots
from onestack.config import Settings, load_settings


def _cloud(tmp_path: Path) -> tuple[Settings, Path]:
    data = tmp_path / "data"
    data.mkdir()
    settings = load_settings(data)
    db = sqlite3.connect(data / "onestack.db")
    db.execute("create table t (v text)")
    db.execute("insert into t values ('saved')")
    db.commit()
    db.close()
    (data / "images").mkdir()
    (data / "images" / "img-1").write_bytes(b"i" * 10000)
    (data / "images" / "tmp").mkdir()
    (data / "images" / "tmp" / "partial").write_bytes(b"p")
    (data / "volumes").mkdir()
    with open(data / "volumes" / "vol-1", "wb") as fh:  # 64 MiB, 2 data blocks
        fh.write(b"head")
        fh.seek(64 << 20)
        fh.write(b"tail")
    (data / "run.json").write_text("{}")
    (data / "faults.json").write_text("{}")
    (data / "admin-openrc.sh").write_text("export OS_PASSWORD=x\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.fspath(data / "volumes" / "qmp.sock"))
    sock.close()
    return settings, data


def _rows(data: Path) -> list[str]:
    db = sqlite3.connect(data / "onestack.db")
    try:
        return [r[0] for r in db.execute("select v from t")]
    finally:
        db.close()


def test_save_and_load(tmp_path: Path) -> None:
    settings, data = _cloud(tmp_path)
    info = snapshots.save(settings, "one")
    snap = data / "snapshots" / "one" / "files"
    assert info.files == 3 and info.linked_bytes == 10000
    assert os.stat(snap / "images" / "img-1").st_ino == os.stat(data / "images" / "img-1").st_ino
    assert not (snap / "images" / "tmp").exists()
    assert not (snap / "run.json").exists() and not (snap / "faults.json").exists()
    assert not (snap / "volumes" / "qmp.sock").exists()
    vol = snap / "volumes" / "vol-1"
    assert vol.stat().st_size == (64 << 20) + 4
    assert vol.stat().st_blocks * 512 < 1 << 20  # holes stayed holes
    assert vol.read_bytes()[-4:] == b"tail"

    # Change everything, then load.
    db = sqlite3.connect(data / "onestack.db")
    db.execute("delete from t")
    db.execute("insert into t values ('changed')")
    db.commit()
    db.close()
    (data / "images" / "img-1").unlink()
    (data / "images" / "img-2").write_bytes(b"new")
    (data / "volumes" / "vol-1").write_bytes(b"overwritten")
    snapshots.load(settings, "one")
    assert _rows(data) == ["saved"]
    assert sorted(p.name for p in (data / "images").iterdir()) == ["img-1"]
    assert (data / "volumes" / "vol-1").read_bytes()[:4] == b"head"
    assert not (data / "faults.json").exists()
    assert (data / "run.json").exists()  # the runtime files are not the snapshot's
    assert snapshots.take_resume_marker(data) and not snapshots.take_resume_marker(data)
    # The snapshot's own files are untouched by writes to the loaded cloud.
    (data / "volumes" / "vol-1").write_bytes(b"again")
    assert vol.read_bytes()[:4] == b"head"


def test_interrupted_load_is_finished(tmp_path: Path) -> None:
    settings, data = _cloud(tmp_path)
    snapshots.save(settings, "one")
    db = sqlite3.connect(data / "onestack.db")
    db.execute("delete from t")
    db.commit()
    db.close()
    (data / "snapshots" / snapshots.LOADING).write_text("one")
    assert snapshots.finish_interrupted_load(settings) == "one"
    assert _rows(data) == ["saved"]
    assert snapshots.finish_interrupted_load(settings) is None


def test_refusals(tmp_path: Path) -> None:
    settings, data = _cloud(tmp_path)
    for bad in ("", "../x", "a/b", "_fresh", ".hidden", "x" * 65):
        with pytest.raises(snapshots.SnapshotError):
            snapshots.save(settings, bad)
    snapshots.save(settings, "one")
    with pytest.raises(snapshots.SnapshotError, match="exists"):
        snapshots.save(settings, "one")
    snapshots.save(settings, "one", replace=True)
    with pytest.raises(snapshots.SnapshotError, match="no snapshot"):
        snapshots.load(settings, "two")
    with pytest.raises(snapshots.SnapshotError, match="first start"):
        snapshots.load(settings, snapshots.FRESH)
    pg = load_settings(data, database_url="postgresql+psycopg://x@127.0.0.1/db")
    with pytest.raises(snapshots.SnapshotError, match="SQLite"):
        snapshots.save(pg, "pg")
    assert [i.name for i in snapshots.list_snapshots(settings)] == ["one"]
    (data / "snapshots" / ".x.1234.partial").mkdir()
    snapshots.cleanup_partial(settings)
    assert not (data / "snapshots" / ".x.1234.partial").exists()
