"""Small disk images built in Python for tests: just the headers each format is known by
(``qemu-img`` is not needed), padded to a chosen length."""

from __future__ import annotations

import struct

MiB = 1 << 20


def _pad(data: bytes, length: int) -> bytes:
    return data + b"\0" * max(0, length - len(data))


def qcow2(virtual_size: int = 64 * MiB, *, version: int = 3, backing: str | None = None,
          features: int = 0, length: int = 4096) -> bytes:
    """A qcow2 header (``backing`` names a backing file; ``features``: the incompatible
    feature bits, 0b100 = an external data file)."""
    backing_offset = 512 if backing else 0
    head = struct.pack(">4sIQIIQ", b"QFI\xfb", version, backing_offset,
                       len(backing or ""), 16, virtual_size)
    head = _pad(head, 72) + struct.pack(">QQQI", features, 0, 0, 4) + struct.pack(">I", 104)
    if backing:
        head = _pad(head, 512) + backing.encode()
    return _pad(head, length)


def vmdk(virtual_size: int = 64 * MiB, *, create_type: str = "monolithicSparse",
         extent: str = 'RW 131072 SPARSE "disk.vmdk"', extra: str = "",
         length: int = 65536) -> bytes:
    """A hosted sparse VMDK: ``KDMV`` header, descriptor at sector 1."""
    desc = (f'# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
            f'createType="{create_type}"\n\n# Extent description\n{extent}\n{extra}\n'
            '# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\n').encode()
    header = struct.pack("<4sIIQQQQIQQQ", b"KDMV", 1, 3, virtual_size // 512, 128, 1, 20,
                         512, 21, 25, 128)
    return _pad(_pad(header, 512) + desc, length)


def vmdk_descriptor(create_type: str = "monolithicFlat",
                    extent: str = 'RW 2048 FLAT "disk-flat.vmdk" 0') -> bytes:
    """A text-only VMDK descriptor naming its extent files."""
    return (f'# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
            f'createType="{create_type}"\n\n# Extent description\n{extent}\n').encode()


def iso(volume_blocks: int = 64, *, system_area: bytes = b"", length: int = 128 << 10
        ) -> bytes:
    """An ISO 9660 image: 32 KiB system area (``system_area`` at its start), then a primary
    volume descriptor."""
    pvd = bytearray(2048)
    pvd[0] = 1
    pvd[1:6] = b"CD001"
    pvd[6] = 1
    struct.pack_into("<I", pvd, 80, volume_blocks)
    struct.pack_into(">I", pvd, 84, volume_blocks)
    struct.pack_into("<H", pvd, 128, 2048)
    struct.pack_into(">H", pvd, 130, 2048)
    return _pad(_pad(system_area, 32 << 10)[:32 << 10] + bytes(pvd), length)


def vhd(virtual_size: int = 64 * MiB, length: int = 4096) -> bytes:
    """A dynamic VHD (its footer copied at the start)."""
    footer = _pad(b"conectix" + struct.pack(">IIQIIIIQQ", 2, 0x10000, 512, 0, 0, 0, 0,
                                            virtual_size, virtual_size), 512)
    return _pad(footer, length - 512) + footer


def vdi(virtual_size: int = 64 * MiB, length: int = 4096) -> bytes:
    head = bytearray(512)
    struct.pack_into("<I", head, 0x40, 0xBEDA107F)
    struct.pack_into("<Q", head, 0x170, virtual_size)
    return _pad(bytes(head), length)


def vhdx(length: int = 4096) -> bytes:
    return _pad(b"vhdxfile", length)


def qed(length: int = 4096) -> bytes:
    return _pad(b"QED\x00", length)
