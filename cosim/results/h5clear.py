"""Make an HDF5 file left by a writer that died openable again (what ``h5clear -s -m`` does).

A file written with the HDF5 1.10 format (superblock version 2 or 3, used for SWMR) records in
its superblock that a writer has it open. If the writer is killed, the flag stays and every
later open for writing fails ("file is already open for write ... may use <h5clear file> to
clear file consistency flags"). h5py does not ship h5clear, so this module clears the flag
itself: it sets the consistency flags to 0, raises the recorded end-of-file address to the
file's real size (so new data is never allocated over data the dead writer had put beyond
it), and writes the superblock's checksum again (Jenkins' lookup3, as the HDF5 library
computes it). Files with older superblocks carry no such flag and are left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
FLAGS = 11  # byte offset of the file consistency flags in a version 2/3 superblock
_MASK = 0xFFFFFFFF


def clear_writer_flags(path: str | Path) -> bool:
    """Clear a dead writer's flags in the superblock at the start of ``path``; True if changed."""
    with open(path, "r+b") as stream:
        head = stream.read(64)
        if head[:8] != SIGNATURE or head[8] not in (2, 3) or head[FLAGS] == 0:
            return False
        offsets = head[9]
        end = FLAGS + 1 + 4 * offsets  # base, extension, end-of-file and root addresses
        eoa = slice(FLAGS + 1 + 2 * offsets, FLAGS + 1 + 3 * offsets)
        block = bytearray(head[:end])
        block[FLAGS] = 0
        size = os.fstat(stream.fileno()).st_size
        block[eoa] = max(int.from_bytes(block[eoa], "little"), size).to_bytes(offsets, "little")
        stream.seek(0)
        stream.write(bytes(block) + lookup3(bytes(block)).to_bytes(4, "little"))
    return True


def _rotate(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``: the checksum of HDF5's metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    if length == 0:
        return c
    i = 0
    while length - i > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & _MASK
        a = (a - c) & _MASK
        a ^= _rotate(c, 4)
        c = (c + b) & _MASK
        b = (b - a) & _MASK
        b ^= _rotate(a, 6)
        a = (a + c) & _MASK
        c = (c - b) & _MASK
        c ^= _rotate(b, 8)
        b = (b + a) & _MASK
        a = (a - c) & _MASK
        a ^= _rotate(c, 16)
        c = (c + b) & _MASK
        b = (b - a) & _MASK
        b ^= _rotate(a, 19)
        a = (a + c) & _MASK
        c = (c - b) & _MASK
        c ^= _rotate(b, 4)
        b = (b + a) & _MASK
        i += 12
    tail = data[i:] + bytes(12 - (length - i))  # the last 1–12 bytes, zero-padded
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    c ^= b
    c = (c - _rotate(b, 14)) & _MASK
    a ^= c
    a = (a - _rotate(c, 11)) & _MASK
    b ^= a
    b = (b - _rotate(a, 25)) & _MASK
    c ^= b
    c = (c - _rotate(b, 16)) & _MASK
    a ^= c
    a = (a - _rotate(c, 4)) & _MASK
    b ^= a
    b = (b - _rotate(a, 14)) & _MASK
    c ^= b
    c = (c - _rotate(b, 24)) & _MASK
    return c
