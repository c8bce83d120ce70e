"""Reading little-endian ELF64 files: section headers, the shared libraries a program needs
and its program interpreter."""

from __future__ import annotations

import struct
from pathlib import Path

from onestack.guestimage.image import GuestImageError

Section = tuple[str, int, int, int, int]  # name, sh_type, offset, size, sh_link


def elf_sections(data: bytes) -> list[Section]:
    """Return the section headers of a little-endian ELF64 file, in index order."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise GuestImageError("not a little-endian 64-bit ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_off = headers[shstrndx][4]
    sections: list[Section] = []
    for name_idx, sh_type, _flags, _addr, offset, size, link, *_ in headers:
        end = data.index(b"\0", names_off + name_idx)
        name = data[names_off + name_idx : end].decode()
        sections.append((name, sh_type, offset, size, link))
    return sections


def elf_needed(path: Path) -> list[str]:
    """Return the DT_NEEDED shared libraries of an ELF executable or library."""
    data = path.read_bytes()
    sections = elf_sections(data)
    needed: list[str] = []
    for _name, sh_type, offset, size, link in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        str_off = sections[link][2]
        for pos in range(offset, offset + size, 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", str_off + val)
                needed.append(data[str_off + val : end].decode())
    return needed


def elf_interpreter(path: Path) -> str | None:
    """Return the PT_INTERP program interpreter of an ELF executable, if any."""
    data = path.read_bytes()
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 3:  # PT_INTERP
            return data[offset : offset + filesz].rstrip(b"\0").decode()
    return None
