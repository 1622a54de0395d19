"""FMU archives (zip files) judged before anything is decompressed, and extracted within bounds.

An FMU from elsewhere may be hostile: a zip bomb (a few MB that inflate to many GB), members
whose names climb out of the extraction folder, members that overlap or lie about their size.
``check_archive`` reads only the zip's central directory (what each member declares: name, sizes,
method, offset) and refuses the archive, naming the stated limit it breaks, before a single byte
is inflated. ``extract_archive`` then writes each member through a counter: never more than the
member declared, never more than the limits in total.

The limits (documented in ``docs/hostile-input.md``):

- at most ``MAX_MEMBERS`` members;
- at most ``MAX_UNPACKED_BYTES`` declared in total;
- a member declaring ``RATIO_FROM_BYTES`` or more may not inflate more than ``MAX_RATIO`` times
  (deflate reaches about 1000:1 on repeated bytes; code and XML compress 3–50:1);
- ``modelDescription.xml`` at most ``MAX_MODEL_DESCRIPTION_BYTES``;
- names: relative, no ``..`` part, no drive letter, no control characters, no duplicates, no
  symbolic links; methods: stored or deflate; no encryption; members do not overlap.
"""

from __future__ import annotations

import contextlib
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cosim.errors import FMUError, Problem

MAX_MEMBERS = 20_000
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_RATIO = 200
RATIO_FROM_BYTES = 1024**2
MAX_MODEL_DESCRIPTION_BYTES = 256 * 1024**2
MAX_NAME_LENGTH = 1024
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
CHUNK = 1024**2
_REFUSED = "refused as unsafe before unpacking anything"


@dataclass(frozen=True)
class Archive:
    """What an archive's central directory declares, once judged safe."""

    names: tuple[str, ...]
    unpacked_bytes: int


def _problem(path: Path, message: str, hint: str = _REFUSED) -> FMUError:
    return FMUError(Problem(message, file=str(path), hint=hint))


def _mib(size: int) -> str:
    return f"{size / 1024**2:,.1f} MiB"


def check_archive(path: Path, stream: BinaryIO | None = None) -> Archive:
    """Judge an FMU's zip archive from its central directory alone; ``FMUError`` if unsafe.
    ``stream``: the file already open (the bytes hashed are the bytes judged)."""
    path = Path(path)
    try:
        with contextlib.ExitStack() as stack:
            if stream is None:
                stream = stack.enter_context(open(path, "rb"))
            stream.seek(0)
            declared = _declared_members(stream)
            if declared is not None and declared > MAX_MEMBERS:
                raise _problem(path, f"the archive declares {declared:,} members, more than "
                                     f"the limit of {MAX_MEMBERS:,}")
            with zipfile.ZipFile(stream) as archive:  # reads the central directory only
                infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise _problem(path, f"not a readable FMU (zip archive): {error}",
                       "the file is damaged or not an FMU; export it again") from None
    if len(infos) > MAX_MEMBERS:
        raise _problem(path, f"the archive has {len(infos):,} members, more than the limit "
                             f"of {MAX_MEMBERS:,}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        _check_name(path, name, info)
        key = name.rstrip("/")
        if key in seen:
            raise _problem(path, f"the archive holds '{_shown(name)}' twice",
                           "refused: tools would disagree on which one is the FMU's")
        seen.add(key)
        if info.compress_type not in METHODS:
            raise _problem(path, f"member '{_shown(name)}' uses compression method "
                                 f"{info.compress_type}", "export the FMU with deflate or stored "
                                                          "members (any zip tool does)")
        if info.flag_bits & 0x1:
            raise _problem(path, f"member '{_shown(name)}' is encrypted",
                           "FMUs are not encrypted; export it again")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise _problem(path, f"member '{_shown(name)}' is stored uncompressed but declares "
                                 f"{info.file_size:,} bytes in {info.compress_size:,}")
        if info.file_size >= RATIO_FROM_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > MAX_RATIO:
                raise _problem(path, f"member '{_shown(name)}' would inflate {ratio:,.0f} times "
                                     f"(from {_mib(info.compress_size)} to "
                                     f"{_mib(info.file_size)}), more than the limit of "
                                     f"{MAX_RATIO} (a zip bomb?)")
        if name == "modelDescription.xml" and info.file_size > MAX_MODEL_DESCRIPTION_BYTES:
            raise _problem(path, f"modelDescription.xml declares {_mib(info.file_size)}, more "
                                 f"than the limit of {_mib(MAX_MODEL_DESCRIPTION_BYTES)}")
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise _problem(path, f"the archive would unpack to more than "
                                 f"{_mib(MAX_UNPACKED_BYTES)} (the limit; a zip bomb?)")
    _check_overlaps(path, infos)
    return Archive(tuple(info.filename for info in infos), total)


def _declared_members(stream) -> int | None:
    """The member count the end-of-central-directory record declares (None: none found)."""
    record = zipfile._EndRecData(stream)  # noqa: SLF001 - the record zipfile itself reads first
    return None if not record else int(record[zipfile._ECD_ENTRIES_TOTAL])  # noqa: SLF001


def _shown(name: str) -> str:
    """A member name safe to print (control characters escaped, long names cut)."""
    text = name.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 120 else text[:117] + "..."


def _check_name(path: Path, name: str, info: zipfile.ZipInfo) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise _problem(path, f"member name of {len(name)} characters (limit {MAX_NAME_LENGTH})")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _problem(path, f"member name '{_shown(name)}' holds control characters")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if (name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0])
            or not parts):
        raise _problem(path, f"member '{_shown(name)}' would be written outside the folder "
                             "the FMU is unpacked to", "refused: FMU members have relative "
                                                       "paths without '..'")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _problem(path, f"member '{_shown(name)}' is a symbolic link",
                       "refused: a link can point outside the FMU")


def _check_overlaps(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Members may not share bytes (how the densest zip bombs reuse one compressed block)."""
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.header_offset + 30 + before.compress_size > after.header_offset:
            raise _problem(path, f"members '{_shown(before.filename)}' and "
                                 f"'{_shown(after.filename)}' overlap in the archive "
                                 "(a zip bomb?)")


def read_member(path: Path, name: str, limit: int) -> bytes:
    """One member's bytes (the archive checked first); never more than ``limit`` bytes."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(name) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error) as error:
        raise _problem(path, f"member '{_shown(name)}' is damaged: {error}",
                       "the file is damaged or was tampered with; export it again") from None
    if len(data) > limit:
        raise _problem(path, f"'{name}' is larger than {_mib(limit)}")
    return data


def extract_archive(path: Path, target: Path, stream: BinaryIO | None = None,
                    folders: tuple[str, ...] | None = None) -> None:
    """Unpack an archive into ``target`` after judging it, writing no member beyond its
    declared size. ``stream``: the file already open (the bytes hashed are the bytes run);
    ``folders``: only the members under these (e.g. ``("binaries/", "resources/")``)."""
    path, target = Path(path), Path(target)
    check_archive(path, stream)
    root = target.resolve()
    with zipfile.ZipFile(path if stream is None else stream) as archive:
        for info in archive.infolist():
            if folders is not None and not info.filename.startswith(folders):
                continue
            destination = (root / info.filename.replace("\\", "/")).resolve()
            if root not in destination.parents:
                raise _problem(path, f"member '{_shown(info.filename)}' would be written "
                                     "outside the folder the FMU is unpacked to")
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            _copy_bounded(path, archive, info, destination)


def _copy_bounded(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                  destination: Path) -> None:
    written = 0
    try:
        with archive.open(info) as source, open(destination, "wb") as out:
            while chunk := source.read(min(CHUNK, info.file_size - written + 1)):
                written += len(chunk)
                if written > info.file_size:
                    raise _problem(path, f"member '{_shown(info.filename)}' holds more than "
                                         f"the {info.file_size:,} bytes it declares; "
                                         "unpacking stopped")
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as error:
        raise _problem(path, f"member '{_shown(info.filename)}' is damaged: {error}",
                       "the file is damaged or was tampered with; export it again") from None
    if written != info.file_size:
        raise _problem(path, f"member '{_shown(info.filename)}' holds {written:,} bytes, "
                             f"not the {info.file_size:,} it declares",
                       "the file is damaged or was tampered with; export it again")
