"""What every FMU the library builds shares: a reproducible archive, its inputs' hash, its
documentation and its unit definitions.

Reproducible: the same inputs give the same bytes (entries sorted, timestamps fixed at
1980-01-01, permissions fixed, one compression level), so an FMU's SHA-256 identifies what it
was built from and a scenario can pin it. The SHA-256 of the inputs (sources, documentation,
build tools and their versions) is stored as the archive's comment; ``built_from`` reads it back
so that a build is skipped when nothing it depends on changed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from xml.etree import ElementTree as ET

from cosim.errors import Problem, ScenarioError
from cosim.fmi.units import BASE_UNITS, define

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
COMMENT_PREFIX = b"cosim build inputs sha256:"


def inputs_hash(files: Iterable[Path], extra: Iterable[str] = ()) -> str:
    """SHA-256 over the names and bytes of ``files`` and the strings ``extra`` (tool versions,
    options): what a build depends on."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in files):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for text in extra:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def built_from(fmu: Path) -> str | None:
    """The inputs' hash a library FMU was built from (None: not one of ours, or unreadable)."""
    try:
        with zipfile.ZipFile(fmu) as archive:
            comment = archive.comment
    except (OSError, zipfile.BadZipFile):
        return None
    return comment[len(COMMENT_PREFIX):].decode() if comment.startswith(COMMENT_PREFIX) else None


def write_archive(fmu: Path, members: Mapping[str, bytes], inputs: str) -> Path:
    """Write the FMU ``fmu`` holding ``members`` (archive name -> bytes), reproducibly; the
    file is replaced in one step (readers never see half an archive)."""
    fmu = Path(fmu)
    fmu.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{fmu.stem}.", suffix=".tmp", dir=fmu.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            for name in sorted(members):
                info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # unix, whichever system builds it
                info.external_attr = 0o644 << 16
                archive.writestr(info, members[name], compresslevel=9)
            archive.comment = COMMENT_PREFIX + inputs.encode()
        os.replace(temporary, fmu)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return fmu


def documentation_members(markdown_file: Path, title: str) -> dict[str, bytes]:
    """``documentation/index.html`` (rendered) and the Markdown source, for an archive."""
    import markdown

    text = Path(markdown_file).read_text(encoding="utf-8")
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    html = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"</head><body>\n{body}\n</body></html>\n")
    return {"documentation/index.html": html.encode(),
            f"documentation/{Path(markdown_file).name}": text.encode()}


def unit_definitions(units: Iterable[str], where: str) -> ET.Element | None:
    """The ``<UnitDefinitions>`` element for these unit strings (None when there are none)."""
    definitions = {}
    for unit in sorted(set(units)):
        definition = define(unit)
        if definition is None:
            raise ScenarioError(Problem(f"unknown unit '{unit}'", file=where,
                                        hint="use a unit pint knows, e.g. mV, uA/cm**2, mmHg"))
        definitions[unit] = definition
    if not definitions:
        return None
    node = ET.Element("UnitDefinitions")
    for unit, definition in definitions.items():
        unit_node = ET.SubElement(node, "Unit", {"name": unit})
        attrib = {b: str(e) for b, e in zip(BASE_UNITS, definition.exponents, strict=True) if e}
        if definition.factor != 1.0:
            attrib["factor"] = repr(definition.factor)
        if definition.offset != 0.0:
            attrib["offset"] = repr(definition.offset)
        ET.SubElement(unit_node, "BaseUnit", attrib)
    return node


def xml_bytes(root: ET.Element) -> bytes:
    """``root`` as an indented UTF-8 XML document."""
    ET.indent(root, space="  ")
    text = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode()
