"""Hostile FMU archives for tests, written at test time (never committed): zip bombs, members
that climb out of the extraction folder, members that lie about their size.

``write_zip`` writes a zip archive byte by byte (local headers, central directory, end record)
so a test controls what each member *declares* independently of what it holds, and can reuse
one compressed block for many members: a 3 GiB bomb is written in well under a second.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

DEFLATE, STORED = 8, 0
CHATTY = Path(__file__).resolve().parent / "fixtures" / "chatty_c"


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
    with zipfile.ZipFile(fmu) as archive:
        return [plain_member(info.filename, archive.read(info)) for info in archive.infolist()
                if not info.is_dir()]


def build_chatty(dest: Path) -> Path:
    """``chatty.fmu`` (tests/fixtures/chatty_c) compiled with gcc into ``dest``."""
    import fmpy

    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build the chatty test FMU")
    dest = Path(dest)
    binary = dest / "chatty_build" / "chatty.so"
    binary.parent.mkdir(parents=True, exist_ok=True)
    headers = Path(fmpy.__file__).parent / "c-code"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Wextra",
                    f"-I{headers}", str(CHATTY / "chatty.c"), "-o", str(binary)],
                   check=True, capture_output=True)
    fmu = dest / "chatty.fmu"
    with zipfile.ZipFile(fmu, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(CHATTY / "modelDescription.xml", "modelDescription.xml")
        archive.write(binary, "binaries/linux64/chatty.so")
        archive.write(CHATTY / "chatty.c", "sources/chatty.c")
    return fmu


PRINTING_MODEL = '''
"""Prints ``lines`` lines with print() at every step (a pythonfmu FMU's stdout)."""

from pythonfmu import Fmi2Causality, Fmi2Slave, Fmi2Variability, Integer, Real


class PrintingModel(Fmi2Slave):
    OUTPUT_DEPENDENCIES = {"y": []}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lines = 10
        self.y = 0.0
        self.register_variable(Integer("lines", causality=Fmi2Causality.parameter,
                                       variability=Fmi2Variability.fixed))
        self.register_variable(Real("y", causality=Fmi2Causality.output))

    def do_step(self, current_time, step_size):
        for i in range(self.lines):
            print(f"printing model: t = {current_time:g}, line {i}")
        self.y = current_time + step_size
        return True
'''


def build_printing_model(dest: Path) -> Path:
    """``PrintingModel.fmu``: a pythonfmu FMU that prints ``lines`` lines per step (built in a
    subprocess, as ``fmu_kit.build_failing_model``)."""
    import sys

    source = Path(dest) / "printing_src"
    source.mkdir(parents=True, exist_ok=True)
    script = source / "cosim_printing_model_kit.py"
    script.write_text(PRINTING_MODEL.lstrip(), encoding="utf-8")
    code = ("import sys; from pathlib import Path; from cosim.library.build import build_fmu; "
            "print(build_fmu(Path(sys.argv[1]), Path(sys.argv[2])))")
    result = subprocess.run([sys.executable, "-c", code, str(script), str(dest)],
                            capture_output=True, text=True, check=True)
    return Path(result.stdout.strip().splitlines()[-1])
