"""Image format inspection (image/formats.py): Glance's format match and safety checks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from onestack.image.formats import (
    HEAD_BYTES,
    FormatRefused,
    InspectingWriter,
    Inspector,
    Verdict,
    inspect_stored,
)
from tests import image_samples as img

MiB = 1 << 20


def verdict(data: bytes, disk_format: str, container_format: str = "bare",
            require_match: bool = True, chunk: int = 65536) -> Verdict:
    ins = Inspector(disk_format, container_format, require_match)
    for i in range(0, len(data), chunk):
        ins.feed(data[i:i + chunk])
    return ins.check(final=True)


def refused(data: bytes, disk_format: str, **kw: object) -> str:
    with pytest.raises(FormatRefused) as info:
        verdict(data, disk_format, **kw)  # type: ignore[arg-type]
    assert info.value.status == 415
    return info.value.message


@pytest.mark.parametrize(("data", "fmt", "size"), [
    (img.qcow2(5 * MiB), "qcow2", 5 * MiB),
    (img.qcow2(3 * MiB, version=2), "qcow2", 3 * MiB),
    (img.vmdk(8 * MiB), "vmdk", 8 * MiB),
    (img.vmdk(8 * MiB, create_type="streamOptimized"), "vmdk", 8 * MiB),
    (img.iso(100), "iso", 100 * 2048),
    (img.vhd(7 * MiB), "vhd", 7 * MiB),
    (img.vdi(9 * MiB), "vdi", 9 * MiB),
    (img.vhdx(), "vhdx", None),
    (b"\x00" * 70000, "raw", 70000),
])
def test_matching_content_is_accepted_with_its_virtual_size(data: bytes, fmt: str,
                                                            size: int | None) -> None:
    assert verdict(data, fmt) == Verdict(fmt, size)


@pytest.mark.parametrize(("data", "claimed", "found"), [
    (img.qcow2(), "iso", "qcow2"),
    (img.vmdk(), "iso", "vmdk"),
    (img.qcow2(), "vmdk", "qcow2"),
    (img.vmdk(), "qcow2", "vmdk"),
    (b"plain bytes" * 100, "qcow2", "raw"),
    (img.iso(), "qcow2", "iso"),
    (img.qcow2(), "ami", "qcow2"),  # not inspectable, but a format was recognised
    (img.vhdx(), "vhd", "vhdx"),
])
def test_disguised_content_is_refused_with_glances_message(data: bytes, claimed: str,
                                                           found: str) -> None:
    assert refused(data, claimed) == (f"Image disk_format {claimed} does not match stream "
                                      f"data {found}")


def test_content_with_two_formats_is_refused() -> None:
    # A qcow2 header hidden in an ISO's system area: which one would a hypervisor read?
    hidden = img.iso(system_area=img.qcow2(length=512))
    assert refused(hidden, "iso") == "Multiple formats detected: iso,qcow2"
    assert refused(hidden, "raw") == "Multiple formats detected: iso,qcow2"


@pytest.mark.parametrize(("data", "claimed"), [
    (img.qcow2(backing="/etc/shadow"), "qcow2"),
    (img.qcow2(backing="/etc/shadow"), "raw"),  # raw takes any content, but not unsafe
    (img.qcow2(features=0b100), "qcow2"),  # external data file
    (img.qcow2(features=1 << 9), "qcow2"),  # an incompatible feature nobody knows
    (img.qcow2(version=1), "qcow2"),
    (img.vmdk(extent='RW 2048 SPARSE "/etc/passwd"'), "vmdk"),
    (img.vmdk(extent='RW 2048 SPARSE "/etc/passwd"'), "raw"),
    (img.vmdk(create_type="monolithicFlat"), "vmdk"),
    (img.vmdk(extent=""), "vmdk"),  # no extent at all
    (img.vmdk(extra="!bogus line"), "vmdk"),
    (img.vmdk_descriptor(), "vmdk"),  # a descriptor pointing at another file
    (img.vmdk_descriptor(), "raw"),
    (img.qed(), "raw"),
])
def test_unsafe_content_fails_the_safety_checks(data: bytes, claimed: str) -> None:
    assert refused(data, claimed) == "Image failed safety checks"


def test_raw_and_uninspectable_formats_take_what_they_cannot_recognise() -> None:
    # As Glance: raw accepts a recognised safe format (used as plain bytes) ...
    assert verdict(img.qcow2(), "raw") == Verdict("qcow2", 4096)
    # ... and ami/ari/aki/ploop accept content in which no format is recognised.
    for fmt in ("ami", "ari", "aki", "ploop"):
        assert verdict(b"kernel bytes" * 50, fmt) == Verdict("raw", None)


def test_only_bare_containers_are_inspected() -> None:
    assert verdict(img.qcow2(), "iso", container_format="ovf") == Verdict("iso", None)
    assert verdict(img.qcow2(backing="x"), "qcow2", container_format="docker").detected \
        == "qcow2"


def test_format_match_can_be_turned_off_but_not_the_safety_checks() -> None:
    assert verdict(img.qcow2(), "iso", require_match=False) == Verdict("qcow2", None)
    assert refused(img.qcow2(backing="/etc/shadow"), "qcow2", require_match=False) == (
        "Image failed safety checks")


def test_fixed_vhd_is_known_by_its_footer_at_the_end() -> None:
    footer = img.vhd(3 * MiB)[-512:]
    fixed = b"\0" * (2 * MiB) + footer
    assert verdict(fixed, "vhd") == Verdict("vhd", 3 * MiB)


def test_refused_early_once_the_first_mib_shows_it() -> None:
    """A disguised upload is refused as soon as the head is in, not after all of it."""
    ins = Inspector("iso")
    ins.feed(img.qcow2(length=MiB))
    with pytest.raises(FormatRefused):
        ins.feed(b"\0" * MiB)  # the head is complete here
    # Memory stays bounded: the head and a small tail, whatever the size.
    ok = Inspector("raw")
    for _ in range(8):
        ok.feed(b"\1" * (4 * MiB))
    assert len(ok._head) == HEAD_BYTES and ok.check() == Verdict("raw", 32 * MiB)


def test_stream_optimized_vmdk_footer_must_repeat_the_header() -> None:
    head = bytearray(img.vmdk(create_type="streamOptimized", length=65536))
    head[56:64] = b"\xff" * 8  # grain directory at the end: a footer follows
    header = bytes(head[:512])
    marker = (b"\0" * 8 + (0).to_bytes(4, "little") + (3).to_bytes(4, "little")).ljust(512,
                                                                                      b"\0")
    footer = bytearray(header)
    footer[56:64] = (25).to_bytes(8, "little")
    good = bytes(head) + marker + bytes(footer) + b"\0" * 512
    assert verdict(good, "vmdk").detected == "vmdk"
    bad_footer = bytearray(footer)
    bad_footer[36:44] = (99).to_bytes(8, "little")  # another descriptor size
    assert refused(bytes(head) + marker + bytes(bad_footer) + b"\0" * 512, "vmdk") == (
        "Image failed safety checks")
    assert refused(bytes(head) + marker + bytes(footer) + b"\1" * 512, "vmdk") == (
        "Image failed safety checks")


def test_inspect_stored_reads_only_head_and_tail() -> None:
    data = img.qcow2(2 * MiB, length=3 * MiB)
    asked: list[tuple[int, int]] = []

    def read(offset: int, length: int) -> bytes:
        asked.append((offset, length))
        return data[offset:offset + length]

    assert inspect_stored(read, len(data), "qcow2", "bare", True) == Verdict("qcow2", 2 * MiB)
    assert sum(n for _, n in asked) <= HEAD_BYTES + 1536
    with pytest.raises(FormatRefused):
        inspect_stored(read, len(data), "iso", "bare", True)


def test_inspecting_writer_refuses_before_passing_data_on() -> None:
    class Sink:
        size = 0
        fed: list[int] = []

        def feed(self, data: bytes, done: object) -> None:
            self.fed.append(len(data))

    sink = Sink()
    released: list[bool] = []
    writer = InspectingWriter(sink, Inspector("iso"))  # type: ignore[arg-type]
    writer.feed(img.qcow2(length=MiB), lambda: released.append(True))
    with pytest.raises(FormatRefused):
        writer.feed(b"\0" * MiB, lambda: released.append(True))
    assert sink.fed == [MiB] and released == [True]  # the refused chunk's buffer came back


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img not installed")
def test_images_made_by_qemu_img(tmp_path: Path) -> None:
    def make(name: str, *args: str) -> bytes:
        path = tmp_path / name
        subprocess.run(["qemu-img", "create", *args, str(path), "1M"], check=True,
                       capture_output=True, cwd=tmp_path)
        return path.read_bytes()

    base = make("base.qcow2", "-f", "qcow2")
    assert verdict(base, "qcow2") == Verdict("qcow2", MiB)
    assert verdict(make("d.vmdk", "-f", "vmdk"), "vmdk") == Verdict("vmdk", MiB)
    assert verdict(make("d.vdi", "-f", "vdi"), "vdi") == Verdict("vdi", MiB)
    assert verdict(make("d.vhdx", "-f", "vhdx"), "vhdx").detected == "vhdx"
    assert verdict(make("d.vhd", "-f", "vpc"), "vhd").detected == "vhd"
    assert verdict(make("f.vhd", "-f", "vpc", "-o", "subformat=fixed"), "vhd").detected \
        == "vhd"
    over = make("over.qcow2", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2")
    assert refused(over, "qcow2") == "Image failed safety checks"
    flat = make("flat.vmdk", "-f", "vmdk", "-o", "subformat=monolithicFlat")
    assert refused(flat, "vmdk") == "Image failed safety checks"
    assert refused(base, "iso") == "Image disk_format iso does not match stream data qcow2"


@pytest.mark.parametrize("enforce", [True, False])
def test_the_setting_turns_the_format_match_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                enforce: bool) -> None:
    """``image_require_format_match`` (env ONESTACK_IMAGE_REQUIRE_FORMAT_MATCH) reaches the
    manager's inspection of staged data; the safety checks stay on either way."""
    from onestack.api.policy import Policy
    from onestack.config import load_settings
    from onestack.db.engine import Database
    from onestack.db.migrate import upgrade
    from onestack.drivers.imagestore.file import FileStore
    from onestack.image.manager import ImageManager

    monkeypatch.setenv("ONESTACK_IMAGE_REQUIRE_FORMAT_MATCH", str(enforce).lower())
    settings = load_settings(tmp_path / "data")
    assert settings.image_require_format_match is enforce
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(db.engine)
    store = FileStore(tmp_path / "images")
    manager = ImageManager(db, store, Policy({}), qemu_img="",
                           require_format_match=settings.image_require_format_match)
    try:
        for data, refused_always in ((img.qcow2(), False), (img.qcow2(backing="/x"), True)):
            writer = store.begin("img", staging=True)
            writer.write(data)
            stored = writer.commit()
            if enforce or refused_always:
                with pytest.raises(FormatRefused):
                    manager.check_format(stored, "iso", "bare")
            else:
                assert manager.check_format(stored, "iso", "bare") == Verdict("qcow2", None)
            store.delete(stored.location)
    finally:
        db.dispose()
