"""`cosim check` finds what `cosim run` would refuse before its first step (issue 14 §6).

Each case is a scenario whose faulty line is marked ``# <-``. Before: `check` said OK to all of
them, and `run` failed at instantiation, at initialisation, at the first bind, in the middle of
the run (an event's value) or with a traceback (a cohort variable that does not exist). Now
`check` reports each one at its line (exit 1), and `run` refuses it too, before the first step.
"""

from __future__ import annotations

from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py
import pytest

from cosim import cli

ENUMERATION = """  </UnitDefinitions>
  <TypeDefinitions>
    <SimpleType name="Mode">
      <Enumeration>
        <Item name="slow" value="1"/>
        <Item name="fast" value="2"/>
      </Enumeration>
    </SimpleType>
  </TypeDefinitions>"""
EXTRA = """    <ScalarVariable name="mode" valueReference="20" causality="parameter"
      variability="fixed">
      <Enumeration declaredType="Mode" start="1"/>
    </ScalarVariable>
    <ScalarVariable name="label" valueReference="21" causality="output" variability="discrete"
      initial="exact">
      <String start=""/>
    </ScalarVariable>
    <ScalarVariable name="tag" valueReference="22" causality="input" variability="discrete">
      <String start=""/>
    </ScalarVariable>
  </ModelVariables>"""


def checked_variant(c_fmu: Path, dest: Path) -> Path:
    """The C oscillator declaring m >= 0.001, an Enumeration parameter ``mode`` (1 slow,
    2 fast), a String output ``label`` and a String input ``tag`` (XML only)."""
    def edit(xml: str) -> str:
        xml = xml.replace('<Real unit="kg" start="1"/>', '<Real unit="kg" start="1" min="0.001"/>')
        xml = xml.replace("  </UnitDefinitions>", ENUMERATION)
        xml = xml.replace("  </ModelVariables>", EXTRA)
        return xml.replace("    </Outputs>", '      <Unknown index="11" dependencies="" '
                           'dependenciesKind=""/>\n    </Outputs>')
    return kit.rewrite(c_fmu, dest, edit)


HEAD = """\
version: 1
fmus:
  osc: checked.fmu
  gen: {generator}
instances:
  left: {{fmu: osc}}
  right: {{fmu: osc}}
  pacer: {{fmu: gen, parameters: {{mode_name: VVI}}}}
connections:
  - left.x -> right.x_other
"""
SIMULATION = "simulation: {{start: 0, stop: 0.1, step: 0.01}}\n"

# case: (scenario text, key, message that check and run both print)
CASES = {
    "generator mode name": (
        HEAD.replace("{{mode_name: VVI}}}}", "{{mode_name: VVX}}}}  # <-") + SIMULATION,
        "instances.pacer.parameters", "unknown mode_name 'VVX'"),
    "no binary for this platform": (
        HEAD.replace("  gen:", "  bare: source_only.fmu\n  gen:").replace(
            "  pacer:", "  b: {{fmu: bare}}  # <-\n  pacer:") + SIMULATION,
        "fmus.bare", "the FMU has no binary for this platform (linux64); it has: none"),
    "binary not named after the modelIdentifier": (
        HEAD.replace("  gen:", "  moved: misnamed.fmu\n  gen:").replace(
            "  pacer:", "  b: {{fmu: moved}}  # <-\n  pacer:") + SIMULATION,
        "fmus.moved", "the FMU has no binaries/linux64/c_oscillator.so"),
    "damaged binary (found when unpacking)": (
        HEAD.replace("  gen:", "  broken: damaged.fmu\n  gen:").replace(
            "  pacer:", "  b: {{fmu: broken}}  # <-\n  pacer:") + SIMULATION,
        "instances.b", "member 'binaries/linux64/c_oscillator.so' is damaged: "),
    "String connection": (
        HEAD + "  - left.label -> right.tag  # <-\n" + SIMULATION,
        "connections.1", "left.label -> right.tag: String variables cannot be connected"),
    "event value of the wrong type": (
        HEAD + SIMULATION + "events:\n  - {{time: 0.05, set: {{left.x_other: abc}}}}  # <-\n",
        "events.0", "'left.x_other' is Real, got str 'abc'"),
    "parameter that is not a number": (
        HEAD.replace("  left: {{fmu: osc}}", "  left: {{fmu: osc, parameters: {{k: .nan}}}}"
                     "  # <-") + SIMULATION,
        "instances.left", "'left.k' must be a finite number, got nan"),
    "parameter below its declared minimum": (
        HEAD.replace("  left: {{fmu: osc}}", "  left: {{fmu: osc, parameters: {{m: 0}}}}  # <-")
        + SIMULATION,
        "instances.left", "'left.m' = 0 is outside [0.001, inf], the range the FMU declares"),
    "enumeration value it does not declare": (
        HEAD.replace("  left: {{fmu: osc}}", "  left: {{fmu: osc, parameters: {{mode: 3}}}}"
                     "  # <-") + SIMULATION,
        "instances.left", "'left.mode' = 3 is not a value of its enumeration"),
    "integer beyond 32 bits": (
        HEAD.replace("  left: {{fmu: osc}}", "  left: {{fmu: osc, parameters: "
                     "{{mode: 4294967297}}}}  # <-") + SIMULATION,
        "instances.left", "'left.mode' = 4294967297 does not fit the FMU's 32-bit Integer"),
    "cohort of a variable the FMU lacks": (
        HEAD + SIMULATION + "cohort:\n  method: grid\n  parameters:\n"
        "    left.nope: {{values: [1, 2]}}  # <-\n",
        "cohort.parameters.left.nope", "the cohort sets 'left.nope': the FMU COscillator has no "
                                       "variable 'nope'"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, build_model) -> Path:
    folder = tmp_path_factory.mktemp("check_finds")
    c_fmu = kit.build_c_oscillator(folder)
    checked_variant(c_fmu, folder / "checked.fmu")
    kit.rewrite(c_fmu, folder / "source_only.fmu", drop=lambda n: n.startswith("binaries/"))
    with_other_name = folder / "misnamed.fmu"
    kit.rewrite(c_fmu, with_other_name, drop=lambda n: n.endswith(".so"))
    import zipfile

    with zipfile.ZipFile(c_fmu) as source, zipfile.ZipFile(with_other_name, "a") as target:
        target.writestr("binaries/linux64/oscillator.so",
                        source.read("binaries/linux64/c_oscillator.so"))
    damaged = bytearray(c_fmu.read_bytes())  # flip one byte inside the stored binary
    with zipfile.ZipFile(c_fmu) as archive:
        info = archive.getinfo("binaries/linux64/c_oscillator.so")
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 40
    damaged[offset] ^= 0xFF
    (folder / "damaged.fmu").write_bytes(bytes(damaged))
    (folder / "generator.txt").write_text(str(build_model("generator")), encoding="utf-8")
    return folder


def write_case(folder: Path, text: str, name: str) -> tuple[Path, int | None]:
    generator = (folder / "generator.txt").read_text(encoding="utf-8")
    text = text.format(generator=generator)
    marked = [i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# <-")]
    path = folder / f"{name.replace(' ', '_')}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, (marked[0] if marked else None)


def test_the_base_scenario_checks_and_starts(folder, capsys):
    path, _ = write_case(folder, HEAD + SIMULATION, "base")
    assert cli.main(["check", str(path)]) == 0
    assert "every instance starts (instantiated, parameters set, initialised)" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("case", CASES)
def test_check_reports_what_run_would_refuse(folder, case, tmp_path, capsys):
    text, key, message = CASES[case]
    path, line = write_case(folder, text, case)
    assert cli.main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith(f"error: {path}:{line}: {key}: ")
    assert message in captured.err and captured.err.count("error: ") == 1
    assert cli.main(["run", str(path), "-o", str(tmp_path / "r.h5"), "--no-plot"]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err


@pytest.fixture(scope="module")
def chatty(tmp_path_factory) -> Path:
    import hostile_kit as hk  # tests/hostile_kit.py

    return hk.build_chatty(tmp_path_factory.mktemp("check_contained"))


@pytest.mark.parametrize(("fail", "message"), [
    (1, "the FMU crashed the process (SIGSEGV) while initialising"),
    (2, "the FMU did not return within 1 s (simulation.call_timeout) while initialising"),
    (3, "the FMU ended the process (exit code 3; exit() called in an FMU?) while initialising"),
])  # 3: exit() also runs the C exit handlers of libraries this process loaded before (a
#       pythonfmu binary's may abort): then the process is reported as crashed
def test_an_fmu_that_crashes_or_hangs_while_starting_is_reported_by_check(chatty, fail,
                                                                           message, capsys):
    """check starts the instances in a child process: the FMU takes that down, not check."""
    import tempfile

    path = chatty.parent / f"fail_{fail}.yaml"
    path.write_text("version: 1\nfmus: {chatty: chatty.fmu}\ninstances:\n"
                    "  calm: {fmu: chatty}\n"
                    f"  wild: {{fmu: chatty, parameters: {{fail_at_start: {fail}}}}}\n"
                    "simulation: {start: 0, stop: 0.1, step: 0.01, call_timeout: 1}\n",
                    encoding="utf-8")
    before = set(Path(tempfile.gettempdir()).glob("cosim_check_*"))
    assert cli.main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    head = f"error: {path}:5: instances.wild.parameters: "
    assert captured.err.startswith(head + message) or (
        fail == 3 and captured.err.startswith(head + "the FMU crashed the process (SIG"))
    assert set(Path(tempfile.gettempdir()).glob("cosim_check_*")) == before  # removed
