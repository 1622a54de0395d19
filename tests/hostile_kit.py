"""Hostile FMU archives for tests, written at test time (never committed): zip bombs, members
that climb out of the extraction folder, members that lie about their size.

``write_zip`` writes a zip archive byte by byte (local headers, central directory, end record)
so a test controls what each member *declares* independently of what it holds, and can reuse
one compressed block for many members: a 3 GiB bomb is written in well under a second.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

DEFLATE, STORED = 8, 0


@dataclass
class Member:
    """One zip member: ``payload`` is written as is; the other fields are what it declares."""

    name: str
    payload: bytes
    size: int  # declared uncompressed size
    crc: int
    method: int = DEFLATE
    external_attr: int = 0


def deflate(data: bytes) -> bytes:
    """Raw deflate (the form inside a zip member)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def zeros_member(name: str, mib: int) -> Member:
    """A real deflate member of ``mib`` MiB of zero bytes (about 1000:1)."""
    block = bytes(1024**2)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = b"".join(compressor.compress(block) for _ in range(mib)) + compressor.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    return Member(name, payload, mib * 1024**2, crc)


def plain_member(name: str, data: bytes, method: int = DEFLATE) -> Member:
    payload = deflate(data) if method == DEFLATE else data
    return Member(name, payload, len(data), zlib.crc32(data), method)


def write_zip(path: Path, members: list[Member], declared_count: int | None = None) -> Path:
    """Write ``members`` as a zip archive; ``declared_count`` overrides the end record's count."""
    local, central = bytearray(), bytearray()
    for m in members:
        offset = len(local)
        name = m.name.encode("utf-8")
        local += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0x800, m.method, 0, 0x21,
                             m.crc, len(m.payload), m.size, len(name), 0) + name + m.payload
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 0x031E, 20, 0x800,
                               m.method, 0, 0x21, m.crc, len(m.payload), m.size, len(name), 0,
                               0, 0, 0, m.external_attr, offset) + name
    count = len(members) if declared_count is None else declared_count
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF),
                      min(count, 0xFFFF), len(central), len(local), 0)
    Path(path).write_bytes(bytes(local) + bytes(central) + end)
    return Path(path)


def fmu_members(fmu: Path) -> list[Member]:
    """The members of a real FMU, re-encoded, so hostile members can be added beside them."""
    import zipfile

    with zipfile.ZipFile(fmu) as archive:
        return [plain_member(info.filename, archive.read(info)) for info in archive.infolist()
                if not info.is_dir()]
