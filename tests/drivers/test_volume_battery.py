"""One battery over every volume driver: the fake twin and the file backend keep the same
rules (``drivers/volume/base.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onestack.drivers.volume.base import GiB, NoCapacity, VolumeDriver, VolumeDriverError
from onestack.drivers.volume.fake import FakeVolumeDriver
from onestack.drivers.volume.file import FileVolumeDriver


def _fake(tmp: Path) -> VolumeDriver:
    return FakeVolumeDriver(capacity_gb=100)


def _file(tmp: Path) -> VolumeDriver:
    return FileVolumeDriver(tmp / "volumes", oversubscription=1.0)


def _write(driver: VolumeDriver, location: str, data: bytes) -> None:
    if isinstance(driver, FakeVolumeDriver):
        driver.write(location, data)
    else:
        with open(driver.dir / location, "r+b") as f:  # type: ignore[attr-defined]
            f.write(data)


def _read(driver: VolumeDriver, location: str, n: int) -> bytes:
    if isinstance(driver, FakeVolumeDriver):
        return driver.read(location)[:n]
    with open(driver.dir / location, "rb") as f:  # type: ignore[attr-defined]
        return f.read(n)


@pytest.fixture(params=[_fake, _file], ids=["fake", "file"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VolumeDriver]:
    make: Callable[[Path], VolumeDriver] = request.param
    yield make(tmp_path)


def test_create_extend_delete(driver: VolumeDriver) -> None:
    loc = driver.create_volume("v1", 1)
    assert driver.exists(loc) and driver.size_gb(loc) == 1
    assert loc in driver.locations()
    driver.extend_volume(loc, 3)
    assert driver.size_gb(loc) == 3
    info = driver.connection_info(loc, "v1")
    assert info["driver_volume_type"] == driver.protocol and info["data"]["volume_id"] == "v1"
    driver.delete_volume(loc)
    assert not driver.exists(loc) and loc not in driver.locations()
    driver.delete_volume(loc)  # idempotent


def test_snapshot_clone_keep_content(driver: VolumeDriver) -> None:
    loc = driver.create_volume("v1", 1)
    _write(driver, loc, b"hello volume")
    snap = driver.create_snapshot("s1", loc)
    _write(driver, loc, b"changed!!!!!")
    from_snap = driver.create_from_snapshot("v2", 2, snap)
    assert _read(driver, from_snap, 12) == b"hello volume"
    assert driver.size_gb(from_snap) == 2
    clone = driver.clone_volume("v3", 1, loc)
    assert _read(driver, clone, 12) == b"changed!!!!!"
    driver.delete_snapshot(snap)
    assert not driver.exists(snap)
    with pytest.raises(VolumeDriverError):
        driver.create_from_snapshot("v4", 1, snap)
    assert "volume-v4" not in driver.locations()


def test_capacity_refuses_and_leaves_nothing(driver: VolumeDriver) -> None:
    cap = driver.capacity()
    assert cap.total_gb > 0 and cap.free_gb >= 0
    too_big = int(cap.total_gb) + 10
    if isinstance(driver, FileVolumeDriver):
        too_big = int(cap.total_gb * driver.oversubscription) + 10
    with pytest.raises(NoCapacity):
        driver.create_volume("big", too_big)
    assert not driver.exists("volume-big")


def test_file_volumes_are_sparse_and_leftovers_go(tmp_path: Path) -> None:
    d = FileVolumeDriver(tmp_path / "vols")
    loc = d.create_volume("v1", 2)
    st = (tmp_path / "vols" / loc).stat()
    assert st.st_size == 2 * GiB and st.st_blocks * 512 < 1 << 20  # thin
    (tmp_path / "vols" / ".volume-x.part").write_bytes(b"half")
    FileVolumeDriver(tmp_path / "vols")
    assert not (tmp_path / "vols" / ".volume-x.part").exists()
    with pytest.raises(VolumeDriverError):
        d.delete_volume("../etc")


def test_create_from_image(driver: VolumeDriver, tmp_path: Path) -> None:
    raw = tmp_path / "img.raw"
    raw.write_bytes(b"RAWDISK" + b"\0" * 4096)
    loc = driver.create_from_image("v1", 1, str(raw), "raw")
    assert _read(driver, loc, 7) == b"RAWDISK" and driver.size_gb(loc) == 1


def test_file_driver_converts_qcow2_and_refuses_too_big(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img missing")
    d = FileVolumeDriver(tmp_path / "vols")
    raw = tmp_path / "src.raw"
    raw.write_bytes(b"QCOWDATA" + b"\0" * 65536)
    q = tmp_path / "img.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(q)],
                   check=True)
    loc = d.create_from_image("v1", 1, str(q), "qcow2")
    assert _read(d, loc, 8) == b"QCOWDATA" and d.size_gb(loc) == 1
    big = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(big), "2G"], check=True)
    with pytest.raises(VolumeDriverError):
        d.create_from_image("v2", 1, str(big), "qcow2")
    assert d.locations() == {loc}


def test_export_raw(driver: VolumeDriver, tmp_path: Path) -> None:
    loc = driver.create_volume("v1", 1)
    _write(driver, loc, b"EXPORTED")
    out = tmp_path / "out.raw"
    driver.export_file(loc, str(out), "raw")
    assert out.read_bytes()[:8] == b"EXPORTED" and out.stat().st_size == GiB
