"""Image format inspection: is the data what its ``disk_format`` says, and is it safe?

Glance's ``[image_format] require_image_format_match`` (default on) and its safety checks,
as onestack's ``image_require_format_match``: the bytes of an upload (``PUT /file``) are
inspected as they flow into the store, and staged data (``glance-direct``, ``web-download``)
when it is imported. Data whose detected format differs from the image's ``disk_format``,
that matches several formats, or that fails a safety check is refused with 415 and Glance's
message; nothing is stored and the image stays ``queued``.

What is recognised, from the first MiB and the last 1.5 KiB only (never the whole image):

========  ============================================  ==========================================
format    recognised by                                 refused as unsafe when
========  ============================================  ==========================================
qcow2     ``QFI\\xfb`` at 0                              a backing file, an external data file,
                                                        incompatible features it does not know,
                                                        a version other than 2 or 3
vmdk      a ``KDMV`` sparse header (descriptor at        a create type other than monolithicSparse/
          sector 1) or a text descriptor with            streamOptimized, an extent naming a path,
          ``createType``                                 no extent, a line it does not understand,
                                                        an inconsistent stream footer
vhd       ``conectix`` at 0 (dynamic) or in the last     never
          512 bytes (fixed)
vhdx      ``vhdxfile`` at 0                              never
vdi       ``0xbeda107f`` at 0x40                         never
iso       ``CD001``/``NSR02``/``NSR03`` at 32 KiB + 1    never
qed       ``QED\\0`` at 0                                always (no hypervisor should read it)
luks      ``LUKS\\xba\\xbe`` at 0                         a version other than 1
raw       none of the above                             never
========  ============================================  ==========================================

The verdict follows Glance (``glance/location.py``): only ``bare`` containers are inspected;
the detected format must equal ``disk_format``, except that ``raw`` accepts any content (it is
used as plain bytes) and formats nobody can inspect (``ami``, ``ari``, ``aki``, ``ploop``)
accept content in which no format was recognised. Safety checks run on whatever was detected,
even under ``raw``. Deliberately unlike Glance: they also run when the format match is turned
off (Glance skips them for a mismatch it lets through); MBR/GPT partition tables are not a
format of their own here (onestack has no ``gpt`` disk_format); a fixed VHD (footer only at
the end) is recognised as ``vhd``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

from onestack.common.errors import UnsupportedMediaType
from onestack.drivers.imagestore.base import ImageWriter, StoredData

LOG = logging.getLogger(__name__)

#: Bytes kept from the start of the data: a VMDK descriptor may reach 1 MiB past sector 1.
HEAD_BYTES = 512 + (1 << 20)
#: Bytes kept from the end: a stream-optimised VMDK's footer and end-of-stream markers.
TAIL_BYTES = 1536
#: Disk formats whose content can be recognised (the others accept unrecognised content).
INSPECTABLE = frozenset({"raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso", "qed", "luks"})

_QCOW2_MAGIC = b"QFI\xfb"
_VMDK_MAGIC = b"KDMV"
_VMDK_DESC_OFFSET = 0x200
_VMDK_DESC_MAX = (1 << 20) - 1
_VMDK_GD_AT_END = 0xFFFFFFFFFFFFFFFF
_VMDK_TYPES = ("monolithicsparse", "streamoptimized")
_ISO_DESCRIPTOR = 32 << 10


class FormatRefused(UnsupportedMediaType):
    """Image data refused by format inspection (Glance answers 415 with this message)."""


class _Unsafe(Exception):
    """A safety check failed (the reason is logged; the client sees Glance's message)."""


@dataclass(frozen=True)
class Verdict:
    """What inspection concluded about accepted data."""

    #: The format recognised in the data (``raw`` when none was).
    detected: str
    #: The virtual disk size the data describes, when known.
    virtual_size: int | None


class Inspector:
    """Inspects image data fed to it chunk by chunk (bounded memory: the first
    :data:`HEAD_BYTES` and the last :data:`TAIL_BYTES`).

    ``check(final=False)`` may be called once the head is complete to refuse early what
    the rest of the data cannot redeem; ``check(final=True)`` after the last byte gives the
    verdict. Both raise :class:`FormatRefused`.
    """

    def __init__(self, disk_format: str, container_format: str | None = "bare",
                 require_match: bool = True) -> None:
        self.disk_format = disk_format
        self.enabled = container_format == "bare"
        self.require_match = require_match
        self.size = 0
        self._head = bytearray()
        self._tail = b""
        self._early_done = False

    @property
    def head_complete(self) -> bool:
        return len(self._head) >= HEAD_BYTES

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next chunk (copies at most what the head still needs and the tail);
        refuses early, once the head is complete, what cannot be accepted."""
        if not self.enabled:
            return
        n = len(data)
        if not n:
            return
        view = memoryview(data)
        if len(self._head) < HEAD_BYTES:
            self._head += view[:HEAD_BYTES - len(self._head)]
        if n >= TAIL_BYTES:
            self._tail = bytes(view[n - TAIL_BYTES:])
        else:
            self._tail = (self._tail + bytes(view))[-TAIL_BYTES:]
        self.size += n
        if not self._early_done and self.head_complete:
            self._early_done = True
            self.check(final=False)

    # ------------------------------------------------------------------ detection
    def _matches(self, final: bool) -> dict[str, Callable[[], int | None]]:
        """The formats recognised so far, each with its virtual-size function."""
        h = self._head
        found: dict[str, Callable[[], int | None]] = {}
        if h[:4] == _QCOW2_MAGIC and len(h) >= 32:
            found["qcow2"] = lambda: struct.unpack_from(">Q", h, 24)[0]
        if h[:8] == b"conectix" and len(h) >= 48:
            found["vhd"] = lambda: struct.unpack_from(">Q", h, 40)[0]
        elif final and self.size >= 512 and self._tail[-512:][:8] == b"conectix":
            footer = self._tail[-512:]
            found["vhd"] = lambda: struct.unpack_from(">Q", footer, 40)[0]
        if h[:8] == b"vhdxfile":
            found["vhdx"] = lambda: None
        if len(h) >= 0x178 and struct.unpack_from("<I", h, 0x40)[0] == 0xBEDA107F:
            found["vdi"] = lambda: struct.unpack_from("<Q", h, 0x170)[0]
        if h[:4] == b"QED\x00":
            found["qed"] = lambda: None
        if h[:6] == b"LUKS\xba\xbe":
            found["luks"] = lambda: None
        iso = h[_ISO_DESCRIPTOR:_ISO_DESCRIPTOR + 2048]
        if len(iso) == 2048 and iso[1:6] in (b"CD001", b"NSR02", b"NSR03"):
            found["iso"] = lambda: _iso_size(iso)
        vmdk = self._vmdk()
        if vmdk is not None:
            found["vmdk"] = lambda: vmdk.virtual_size
        return found

    def _vmdk(self) -> _Vmdk | None:
        h = self._head
        if h[:4] == _VMDK_MAGIC:
            if len(h) < 64:
                return None
            (version, _flags, capacity, _grain, desc_sec, desc_num, _gtes, _rgd,
             gd) = struct.unpack_from("<IIQQQQIQQ", h, 4)
            if version not in (1, 2, 3) or desc_sec * 512 != _VMDK_DESC_OFFSET:
                return None  # not a VMDK qemu would open
            end = _VMDK_DESC_OFFSET + min(desc_num * 512, _VMDK_DESC_MAX)
            desc = bytes(h[_VMDK_DESC_OFFSET:end]).split(b"\x00", 1)[0]
            return _Vmdk(desc, capacity * 512, gd == _VMDK_GD_AT_END,
                         bytes(h[:64]))
        # A descriptor-only VMDK is plain text naming its extents.
        sample = bytes(h[:512])
        if not sample or any(b < 9 or 13 < b < 32 or b > 126 for b in sample):
            return None
        text = bytes(h[:_VMDK_DESC_MAX])
        if b"createtype=\"" not in text.lower():
            return None
        return _Vmdk(text, None, False, None)

    # ------------------------------------------------------------------ verdict
    def check(self, final: bool = True) -> Verdict:
        """The verdict on the data seen so far (``final``: all of it). Raises
        :class:`FormatRefused` with Glance's message when it is refused."""
        disk_format = self.disk_format
        if not self.enabled:
            return Verdict(disk_format, None)
        if not final and not self.head_complete:
            return Verdict("raw", None)
        found = self._matches(final)
        if len(found) > 1:
            self._mismatch("Multiple formats detected: " + ",".join(sorted(found)))
            self._safe(sorted(found), final)
            return Verdict("raw", None)
        detected = next(iter(found), "raw")
        if detected == disk_format:
            size_of = found.get(detected)
            virtual_size = size_of() if size_of else self.size
        elif detected == "raw" and disk_format not in INSPECTABLE:
            virtual_size = None  # ami/ari/aki/ploop: nothing to recognise, nothing found
        elif disk_format == "raw":
            LOG.warning("image data claimed raw is %s; accepted as raw bytes", detected)
            virtual_size = self.size
        elif detected == "raw" and disk_format == "vhd" and not final:
            return Verdict("raw", None)  # a fixed VHD shows its footer only at the end
        else:
            self._mismatch(f"Image disk_format {disk_format} does not match stream data "
                           f"{detected}")
            virtual_size = None
        self._safe([detected], final)
        return Verdict(detected, virtual_size or None)

    def _mismatch(self, message: str) -> None:
        """Refuse a format mismatch, unless the match is not required (then only log)."""
        if self.require_match:
            raise FormatRefused(message)
        LOG.warning("%s (accepted: image_require_format_match is off)", message)

    def _safe(self, detected: list[str], final: bool) -> None:
        """Run the safety checks of every detected format (Glance's message on failure)."""
        for fmt in detected:
            try:
                self._safety(fmt, final)
            except _Unsafe as exc:
                LOG.warning("image data (%s) failed a safety check: %s", fmt, exc)
                raise FormatRefused("Image failed safety checks") from None

    def _safety(self, detected: str, final: bool) -> None:
        h = self._head
        if detected == "qcow2":
            version, backing = struct.unpack_from(">IQ", h, 4)
            if backing:
                raise _Unsafe("qcow2 backing file")
            if version == 3:
                if len(h) < 80:
                    raise _Unsafe("truncated qcow2 header")
                (features,) = struct.unpack_from(">Q", h, 72)
                if features & 0b100:
                    raise _Unsafe("qcow2 external data file")
                if features >> 4:
                    raise _Unsafe("unknown qcow2 incompatible features")
            elif version != 2:
                raise _Unsafe(f"qcow2 version {version}")
        elif detected == "qed":
            raise _Unsafe("QED images are not accepted")
        elif detected == "luks":
            if len(h) < 8 or struct.unpack_from(">H", h, 6)[0] != 1:
                raise _Unsafe("LUKS version")
        elif detected == "vmdk":
            vmdk = self._vmdk()
            assert vmdk is not None
            vmdk.check()
            if vmdk.footer and final:
                vmdk.check_footer(self._tail if self.size >= TAIL_BYTES else b"")


class _Vmdk:
    """A VMDK's descriptor and the safety checks on it."""

    def __init__(self, descriptor: bytes, virtual_size: int | None, footer: bool,
                 header: bytes | None) -> None:
        self.text = descriptor.decode("ascii", "replace").lower()
        self.header = header
        self.footer = footer
        kind = "formatnotfound"
        key = 'createtype="'
        at = self.text.find(key)
        if at >= 0:
            end = self.text.find('"', at + len(key))
            if 0 <= end - at - len(key) < 64:
                kind = self.text[at + len(key):end]
        self.kind = kind
        self.virtual_size = virtual_size if kind in _VMDK_TYPES else None

    def check(self) -> None:
        """Only single-file sparse VMDKs, whose descriptor holds nothing unexpected."""
        if self.kind not in _VMDK_TYPES:
            raise _Unsafe(f"VMDK create type {self.kind!r}")
        extents = 0
        for raw_line in self.text.split("\n"):
            line = raw_line.strip()
            if not line or line.startswith("#") or line.startswith("ddb"):
                continue
            first = line.split(" ", 1)[0]
            if first in ("rw", "rdonly", "noaccess"):
                if "/" in line:
                    raise _Unsafe("VMDK extent naming a path")
                extents += 1
            elif "=" in line and " " not in line.split("=", 1)[0]:
                continue
            else:
                raise _Unsafe("VMDK descriptor line not understood")
        if not extents:
            raise _Unsafe("VMDK without extents")

    def check_footer(self, tail: bytes) -> None:
        """A stream-optimised VMDK's footer must repeat its header and end the stream."""
        if len(tail) < TAIL_BYTES or self.header is None:
            raise _Unsafe("VMDK footer missing")
        marker, footer, eos = tail[:512], tail[512:1024], tail[1024:]
        if footer[:4] != _VMDK_MAGIC:
            raise _Unsafe("VMDK footer signature")
        head_fields = struct.unpack_from("<I20xQQ", self.header, 4)
        foot_fields = struct.unpack_from("<I20xQQ", footer, 4)
        if head_fields != foot_fields:
            raise _Unsafe("VMDK footer differs from the header")
        if struct.unpack_from("<Q", footer, 56)[0] == _VMDK_GD_AT_END:
            raise _Unsafe("VMDK footer announcing another footer")
        size, kind = struct.unpack_from("<II", marker, 8)
        if size or kind != 3 or any(marker[16:]):
            raise _Unsafe("VMDK footer marker")
        if any(eos):
            raise _Unsafe("VMDK end-of-stream marker")


def _iso_size(descriptor: bytes) -> int | None:
    """Blocks x block size of an ISO 9660 primary volume descriptor."""
    if descriptor[0] != 1:
        return None
    blocks = struct.unpack_from("<I", descriptor, 80)[0]
    block_size = struct.unpack_from("<H", descriptor, 128)[0]
    return blocks * block_size


class InspectingWriter(ImageWriter):
    """An :class:`ImageWriter` that shows every chunk to an :class:`Inspector` before
    passing it on, so an upload is inspected as it streams (and refused, once the first
    MiB shows it must be, before the rest is written)."""

    def __init__(self, inner: ImageWriter, inspector: Inspector) -> None:
        self.inner = inner
        self.inspector = inspector

    @property
    def size(self) -> int:  # type: ignore[override]
        return self.inner.size

    def write(self, data: bytes | memoryview) -> None:
        self.inspector.feed(data)
        self.inner.write(data)

    def feed(self, data: bytes | bytearray | memoryview, done: Callable[[], None]) -> None:
        try:
            self.inspector.feed(data)
        except BaseException:
            done()
            raise
        self.inner.feed(data, done)

    def drain(self) -> None:
        self.inner.drain()

    def md5_hexdigest(self) -> str:
        return self.inner.md5_hexdigest()

    def commit(self) -> StoredData:
        return self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()


def inspect_stored(read: Callable[[int, int], bytes], size: int, disk_format: str,
                   container_format: str | None, require_match: bool) -> Verdict:
    """Inspect data already stored (staged imports): ``read(offset, length)`` is asked for
    the head and the tail only."""
    inspector = Inspector(disk_format, container_format, require_match)
    if not inspector.enabled:
        return Verdict(disk_format, None)
    head = read(0, min(size, HEAD_BYTES))
    inspector.feed(head)
    rest = size - len(head)
    if rest > 0:
        # Only the tail matters past the head: pretend the middle was seen.
        skip = max(0, rest - TAIL_BYTES)
        inspector.size += skip
        inspector.feed(read(size - (rest - skip), rest - skip))
    return inspector.check(final=True)
