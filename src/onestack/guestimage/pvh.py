"""The guest's kernel uncompressed for PVH boot (``vmlinux``), made from Debian's bzImage."""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib


def pvh_kernel(bzimage: bytes) -> bytes | None:
    """Return the kernel's uncompressed ELF (``vmlinux``) if it has a PVH entry point.

    QEMU boots such an ELF directly (``-kernel vmlinux``), skipping the real-mode setup and the
    in-guest decompression of the bzImage, which costs seconds under TCG. Trailing zero bytes of
    each loadable segment (.bss) are left out of the file; the loader zero-fills them.
    Returns None when the payload's compression is not supported or there is no PVH note.
    """
    if bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            elf = zlib.decompressobj(wbits=31).decompress(payload)
        elif payload.startswith(b"BZh"):
            elf = bz2.BZ2Decompressor().decompress(payload)
        else:
            return None
    except (lzma.LZMAError, zlib.error, OSError, EOFError):
        return None
    if elf[:4] != b"\x7fELF" or not _has_pvh_note(elf):
        return None
    out = bytearray(elf)
    phoff = struct.unpack_from("<Q", out, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", out, 0x36)
    file_end = 0
    for i in range(phnum):
        ph = phoff + i * phentsize
        p_type, _flags, offset = struct.unpack_from("<IIQ", out, ph)
        filesz = struct.unpack_from("<Q", out, ph + 0x20)[0]
        if p_type == 1:  # PT_LOAD
            segment = out[offset : offset + filesz]
            filesz = len(segment.rstrip(b"\0"))
            struct.pack_into("<Q", out, ph + 0x20, filesz)
        file_end = max(file_end, offset + filesz)
    struct.pack_into("<QHHH", out, 0x28, 0, 0, 0, 0)  # drop the section headers
    struct.pack_into("<H", out, 0x3C, 0)
    return bytes(out[: max(file_end, phoff + phnum * phentsize)])


def _has_pvh_note(elf: bytes) -> bool:
    """Tell whether an ELF kernel carries XEN_ELFNOTE_PHYS32_ENTRY (the PVH entry point)."""
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        pos = offset
        while pos + 12 <= offset + filesz:
            namesz, descsz, n_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and n_type == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False
