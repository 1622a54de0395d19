"""Hostile FMU files: refused from the zip's central directory, before anything is inflated; one
message, exit 1, nothing written outside the run (issue 14 §6).

Every archive is written at test time (``hostile_kit``): the 3 GiB zip bomb is 3 MB on disk.
"Before anything is inflated" is proved by a spy: zipfile's decompressor factory raises if
anything asks for it while the archive is judged.
"""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py
import hostile_kit as hk  # tests/hostile_kit.py
import pytest

from cosim import cli
from cosim.errors import FMUError
from cosim.fmi import archive
from cosim.fmi.fmu import Instance, read_fmu


@pytest.fixture(scope="module")
def c_fmu(tmp_path_factory) -> Path:
    return kit.build_c_oscillator(tmp_path_factory.mktemp("hostile_fmus"))


@pytest.fixture(scope="module")
def c_members(c_fmu) -> list[hk.Member]:
    """The C oscillator's members, read once (before any spy is installed)."""
    return hk.fmu_members(c_fmu)


@pytest.fixture
def no_inflating(monkeypatch):
    """Fail the test if anything asks zipfile for a decompressor."""
    def refuse(*args, **kwargs):
        raise AssertionError("something was inflated")

    monkeypatch.setattr(zipfile, "_get_decompressor", refuse)


def refused(path: Path, capsys) -> str:
    """The one message `cosim info` prints for ``path`` (exit 1, no traceback)."""
    with pytest.raises(FMUError) as caught:
        read_fmu(path)
    assert len(caught.value.problems) == 1
    assert caught.value.__suppress_context__ or caught.value.__context__ is None
    assert cli.main(["info", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith(f"error: {path}: ") and captured.err.count("error:") == 1
    return captured.err


def with_members(members: list[hk.Member], dest: Path, *extra: hk.Member) -> Path:
    return hk.write_zip(dest, list(members) + list(extra))


def test_a_3_gib_zip_bomb_is_refused_before_inflating(c_members, tmp_path, capsys, no_inflating):
    kernel = hk.zeros_member("x", 64)
    members = [hk.Member(f"resources/table{i}.bin", kernel.payload, kernel.size, kernel.crc)
               for i in range(48)]
    bomb = with_members(c_members, tmp_path / "bomb.fmu", *members)
    assert bomb.stat().st_size < 4 * 1024**2
    with zipfile.ZipFile(bomb) as z:  # a real bomb: it declares 3 GiB
        assert sum(i.file_size for i in z.infolist()) > 3 * 1024**3
    err = refused(bomb, capsys)
    assert re.search(r"member 'resources/table0.bin' would inflate [\d,]+ times \(from "
                     r"0.1 MiB to 64.0 MiB\), more than the limit of 200 \(a zip bomb\?\)", err)
    assert "refused as unsafe before unpacking anything" in err


def test_more_than_the_unpacked_limit_in_total_is_refused(c_members, tmp_path, capsys,
                                                           no_inflating):
    """Members of a plausible ratio that add up to more than 2 GiB (declared sizes only)."""
    garbage = bytes(range(256)) * 4096  # 1 MiB, never inflated
    members = [hk.Member(f"resources/part{i}.bin", garbage, 150 * 1024**2, 0)
               for i in range(15)]
    path = with_members(c_members, tmp_path / "large.fmu", *members)
    err = refused(path, capsys)
    assert "the archive would unpack to more than 2,048.0 MiB (the limit; a zip bomb?)" in err


def test_too_many_members_are_refused_from_the_end_record(c_members, tmp_path, capsys):
    members = list(c_members)
    path = hk.write_zip(tmp_path / "many.fmu", members, declared_count=30_000)
    err = refused(path, capsys)
    assert "the archive declares 30,000 members, more than the limit of 20,000" in err


def test_overlapping_members_are_refused(c_members, tmp_path, capsys, no_inflating):
    """Two central-directory entries on the same bytes (how non-recursive bombs multiply)."""
    members = list(c_members)
    path = hk.write_zip(tmp_path / "overlap.fmu", members)
    data = bytearray(path.read_bytes())
    first = data.index(b"PK\x01\x02")  # point every entry after the first at offset 0
    position = data.index(b"PK\x01\x02", first + 4)
    while position != -1:
        data[position + 42:position + 46] = (0).to_bytes(4, "little")
        position = data.find(b"PK\x01\x02", position + 4)
    path.write_bytes(bytes(data))
    assert "overlap in the archive (a zip bomb?)" in refused(path, capsys)


NAMES = {
    "parent folder": ("../evil.so", "would be written outside the folder"),
    "absolute": ("/tmp/evil.so", "would be written outside the folder"),
    "deep parent": ("resources/../../evil.so", "would be written outside the folder"),
    "backslashes": ("resources\\..\\..\\evil.so", "would be written outside the folder"),
    "drive letter": ("C:/evil.so", "would be written outside the folder"),
    "control characters": ("resources/a\x1b[2Jb", "holds control characters"),
    "duplicate": ("modelDescription.xml", "the archive holds 'modelDescription.xml' twice"),
}


@pytest.mark.parametrize("case", NAMES)
def test_members_with_unsafe_names_are_refused(case, c_members, tmp_path, capsys, no_inflating):
    name, message = NAMES[case]
    path = with_members(c_members, tmp_path / "named.fmu", hk.plain_member(name, b"<x/>"))
    err = refused(path, capsys)
    assert message in err
    assert "\x1b" not in err  # a name is never printed raw into the terminal


def test_a_symbolic_link_member_is_refused(c_members, tmp_path, capsys):
    link = hk.plain_member("resources/passwd", b"/etc/passwd", hk.STORED)
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = with_members(c_members, tmp_path / "link.fmu", link)
    assert "member 'resources/passwd' is a symbolic link" in refused(path, capsys)


def test_other_compression_methods_and_encryption_are_refused(c_members, tmp_path, capsys):
    bzip = hk.plain_member("resources/a.bin", b"x" * 100, hk.STORED)
    bzip.method = 12
    path = with_members(c_members, tmp_path / "bzip.fmu", bzip)
    assert "member 'resources/a.bin' uses compression method 12" in refused(path, capsys)
    path = with_members(c_members, tmp_path / "locked.fmu", hk.plain_member("resources/b", b"y"))
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")  # the last central entry: set "encrypted"
    data[central + 8] |= 1
    path.write_bytes(bytes(data))
    assert "member 'resources/b' is encrypted" in refused(path, capsys)


def test_an_oversized_model_description_is_refused(c_members, tmp_path, capsys, no_inflating):
    members = [m for m in list(c_members) if m.name != "modelDescription.xml"]
    garbage = bytes(range(256)) * 8192  # 2 MiB, never inflated
    members.append(hk.Member("modelDescription.xml", garbage, 300 * 1024**2, 0))
    path = hk.write_zip(tmp_path / "huge_xml.fmu", members)
    assert "modelDescription.xml declares 300.0 MiB, more than the limit of 256.0 MiB" in (
        refused(path, capsys))


@pytest.mark.parametrize("identifier", ["../../../tmp/evil", "sub/c_oscillator", "a\\b", ".."])
def test_a_model_identifier_that_is_a_path_is_refused(identifier, c_fmu, tmp_path, capsys):
    path = kit.rewrite(c_fmu, tmp_path / "identifier.fmu", lambda xml: xml.replace(
        'modelIdentifier="c_oscillator"', f'modelIdentifier="{identifier}"'))
    err = refused(path, capsys)
    assert f"modelIdentifier {identifier!r} is not a C identifier" in err
    assert "a path in it would load a file from outside the FMU" in err


def test_a_model_description_with_a_dtd_is_refused(c_fmu, tmp_path, capsys):
    """An external entity would read another file into a description `cosim info` prints."""
    def edit(xml: str) -> str:
        head, rest = xml.split("?>", 1)
        rest = rest.replace('description="', 'description="&secret; ', 1)
        return (head + '?>\n<!DOCTYPE fmiModelDescription [<!ENTITY secret SYSTEM '
                '"file:///etc/hostname">]>' + rest)
    path = kit.rewrite(c_fmu, tmp_path / "dtd.fmu", edit)
    assert "modelDescription.xml declares a DTD (<!DOCTYPE …>)" in refused(path, capsys)


def extra_real(name: str, reference: int, start: str | None) -> str:
    value = f'<Real start="{start}"/>' if start is not None else "<Real/>"
    causality = 'causality="parameter" variability="fixed"' if start else (
        'causality="local" variability="continuous" initial="calculated"')
    return (f'    <ScalarVariable name="{name}" valueReference="{reference}" {causality}>'
            f"\n      {value}\n    </ScalarVariable>\n  </ModelVariables>")


def test_a_value_reference_shared_by_two_started_variables_is_refused(c_fmu, tmp_path,
                                                                       capsys):
    """FMI 2.0: a shared value reference means one value (aliases); two start values for one
    value contradict each other. Here 'gain' would silently be the spring constant k (vr 1)."""
    path = kit.rewrite(c_fmu, tmp_path / "duplicate_vr.fmu", lambda xml: xml.replace(
        "  </ModelVariables>", extra_real("gain", 1, "2.0")))
    err = refused(path, capsys)
    assert ("variables 'k', 'gain' share the Real value reference 1 and each has a start "
            "value: they are not aliases of one value") in err


def test_an_alias_the_standard_allows_is_accepted(c_fmu, tmp_path):
    path = kit.rewrite(c_fmu, tmp_path / "alias.fmu", lambda xml: xml.replace(
        "  </ModelVariables>", extra_real("position", 7, None)))  # vr 7 is x
    fmu = read_fmu(path)
    assert fmu.variables["position"].value_reference == fmu.variables["x"].value_reference
    instance = Instance(fmu, "aliased")
    instance.instantiate()
    instance.setup_experiment(0.0)
    instance.enter_initialization_mode()
    instance.exit_initialization_mode()
    instance.do_step(0.0, 0.1)
    values = instance.get(["x", "position"])
    assert values["x"] == values["position"]
    instance.close()


def test_extraction_never_writes_more_than_a_member_declares(tmp_path):
    """A member declaring 1000 bytes whose data inflate to 8 MiB: 1000 bytes are written."""
    data = bytes(8 * 1024**2)
    liar = hk.Member("resources/liar.bin", hk.deflate(data), 1000, zlib_crc(data[:1000]))
    path = hk.write_zip(tmp_path / "liar.zip", [hk.plain_member("a.txt", b"a"), liar])
    target = tmp_path / "out"
    archive.extract_archive(path, target)
    assert (target / "resources" / "liar.bin").stat().st_size == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["liar.zip", "out"]


def test_a_damaged_member_stops_extraction_with_one_message(tmp_path):
    damaged = hk.plain_member("resources/data.bin", b"0123456789" * 100)
    damaged.crc ^= 0xFFFF
    path = hk.write_zip(tmp_path / "damaged.zip", [damaged])
    with pytest.raises(FMUError, match=r"member 'resources/data.bin' is damaged: Bad CRC-32"):
        archive.extract_archive(path, tmp_path / "out")


def test_extraction_refuses_a_climbing_name_and_writes_nothing_outside(tmp_path):
    path = hk.write_zip(tmp_path / "climb.zip", [hk.plain_member("ok.txt", b"ok"),
                                                  hk.plain_member("../../escaped.txt", b"x")])
    (tmp_path / "deep" / "er").mkdir(parents=True)
    with pytest.raises(FMUError, match="would be written outside the folder"):
        archive.extract_archive(path, tmp_path / "deep" / "er" / "out")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "deep" / "er" / "out").exists()  # judged before writing anything


def zlib_crc(data: bytes) -> int:
    import zlib

    return zlib.crc32(data)
