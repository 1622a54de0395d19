"""Hostile scenario files: one located message, exit 1, no traceback, and fast (issue 14 §6).

Each case is a whole scenario whose faulty line is marked ``# <-`` (the line the message must
name). Before these checks: the alias bomb took 33 s and 3 GB, then MemoryError; tags, ``.inf``
and ``1e-320`` ended in tracebacks; ``stop: 1e300`` would run for ever; an event at ``.nan``
passed ``cosim check``. The alias bomb here is 414 bytes for 9**9 (387 million) values.
"""

from __future__ import annotations

from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py
import pytest

from cosim import cli
from cosim.errors import ScenarioError
from cosim.scenario.scenario import load_scenario

HEAD = """\
version: 1
fmus:
  osc: c_oscillator.fmu
instances:
  left: {fmu: osc}
  right: {fmu: osc}
connections:
  - left.x -> right.x_other
  - right.x -> left.x_other
"""
SIMULATION = "simulation: {start: 0, stop: 0.1, step: 0.01}\n"
LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{before}'] * 9)}]\n"
    for before, name in zip("abcdefgh", "bcdefghi", strict=True))
ALIAS_BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + LAUGHS

# case: (scenario text, key, message)
CASES = {
    "alias bomb": (
        HEAD + SIMULATION + ALIAS_BOMB + "  # <-\n",
        None, "the data expands to more than 100,000 values (aliases of aliases?)"),
    "deep nesting": (
        HEAD + "simulation: " + "[" * 5000 + "]" * 5000 + "  # <-\n",
        None, "lists and mappings nest more than 32 levels deep"),
    "python name tag": (
        HEAD + SIMULATION + "name: !!python/name:os.system  # <-\n",
        None, "the tag '!!python/name:os.system' is not allowed"),
    "python object tag": (
        HEAD + SIMULATION + "name: !!python/object/apply:os.system ['echo pwned']  # <-\n",
        None, "the tag '!!python/object/apply:os.system' is not allowed"),
    "custom tag": (
        HEAD + SIMULATION + "description: !include /etc/passwd  # <-\n",
        None, "the tag '!include' is not allowed"),
    "set tag": (
        HEAD + SIMULATION + "plot: !!set {left.x: null}  # <-\n",
        None, "the tag '!!set' is not allowed"),
    "merge key": (
        HEAD.replace("  right: {fmu: osc}", "  right: {<<: {fmu: osc}}  # <-") + SIMULATION,
        None, "merge keys ('<<') are not supported"),
    "list as a key": (
        HEAD + SIMULATION + "? [a, b]  # <-\n: 1\n",
        None, "a key must be a plain name or number, not a list or a mapping"),
    "integer of 5000 digits": (
        HEAD + "simulation:\n  start: 0\n  stop: " + "1" * 5000 + "  # <-\n  step: 0.01\n",
        None, "as int"),
    "infinite stop": (
        HEAD + "simulation:\n  stop: .inf  # <-\n  step: 0.01\n",
        "simulation.stop", "must be a finite number of seconds, got inf"),
    "stop beyond the largest float": (
        HEAD + "simulation:\n  stop: 1e400  # <-\n  step: 0.01\n",
        "simulation.stop", "must be a finite number of seconds, got inf"),
    "stop not a number": (
        HEAD + "simulation:\n  stop: .nan  # <-\n  step: 0.01\n",
        "simulation.stop", "must be a finite number of seconds, got nan"),
    "subnormal step": (
        HEAD + "simulation:\n  stop: 0.1\n  step: 1e-320  # <-\n",
        "simulation.step", "steps, more than the limit of 1e+09"),
    "a run of 1e303 steps": (
        HEAD + "simulation:\n  stop: 1e300\n  step: 0.001  # <-\n",
        "simulation.step", "1e+300 s in steps of 0.001 s is 1e+303 steps, more than the limit "
                           "of 1e+09"),
    "a step the times cannot resolve": (
        HEAD + "simulation:\n  start: 1e12\n  stop: 1000000000001.0\n  step: 1e-6  # <-\n",
        "simulation.step", "a step of 1e-06 s is below what floating point resolves at "
                           "t = 1e+12 s"),
    "event at nan": (
        HEAD + SIMULATION + "events:\n  - {time: .nan, set: {left.k: 2.0}}  # <-\n",
        "events.0.time", "must be a finite number of seconds, got nan"),
    "event after stop": (
        HEAD + SIMULATION + "events:\n  - {time: 5, set: {left.k: 2.0}}  # <-\n",
        "events.0.time", "an event at 5 s never happens: the run goes from 0 s to 0.1 s"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile_scenarios")
    kit.build_c_oscillator(folder)
    return folder


def write_case(folder: Path, case: str) -> tuple[Path, int]:
    text = CASES[case][0]
    marked = [i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# <-")]
    path = folder / (case.replace(" ", "_") + ".yaml")
    path.write_text(text, encoding="utf-8")
    return path, marked[0]


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith("error: ") and captured.err.count("error: ") == 1
    return captured.err


@pytest.mark.parametrize("case", CASES)
def test_hostile_scenario_gives_one_located_message(folder, case, capsys):
    path, line = write_case(folder, case)
    _, key, message = CASES[case]
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    problem = caught.value.problems[0]
    assert len(caught.value.problems) == 1 and message in problem.message
    assert problem.file == str(path) and problem.hint
    if key is not None:
        assert (problem.line, problem.key) == (line, key)
    else:
        assert problem.line is not None and problem.line <= line
    assert cli.main(["check", str(path)]) == 1
    err = one_error(capsys)
    assert err.startswith(f"error: {path}:{problem.line}: ") and message in err


def test_cosim_run_refuses_a_hostile_scenario_without_writing(folder, tmp_path, capsys):
    path, _ = write_case(folder, "a run of 1e303 steps")
    output = tmp_path / "never.h5"
    assert cli.main(["run", str(path), "-o", str(output), "--no-plot"]) == 1
    assert "more than the limit of 1e+09" in one_error(capsys)
    assert not output.exists()


def test_a_file_above_the_size_limit_is_not_read(folder, capsys):
    path = folder / "big.yaml"
    path.write_text(HEAD + SIMULATION + "# " + "x" * (1024**2) + "\n", encoding="utf-8")
    assert cli.main(["check", str(path)]) == 1
    assert "holds 1,048,7" in one_error(capsys)  # … bytes, more than the limit of 1,048,576


def test_a_file_that_is_not_utf8(folder, capsys):
    path = folder / "latin1.yaml"
    path.write_bytes(b"\xff\xfeversion: 1\n")
    assert cli.main(["check", str(path)]) == 1
    assert one_error(capsys) == f"error: {path}: not UTF-8 text (byte 0)\n    -> save the " \
                                "scenario as UTF-8 text\n"


@pytest.mark.parametrize("special", ["/dev/zero", "folder"])
def test_a_path_that_is_not_a_regular_file_is_not_read(special, folder, capsys):
    path = folder if special == "folder" else Path(special)
    assert cli.main(["check", str(path)]) == 1
    assert one_error(capsys).startswith(f"error: {path}: not a regular file")


# -- cohort tables: never echo another file -------------------------------------------------
def cohort_scenario(folder: Path, table: str) -> Path:
    path = folder / "cohort.yaml"
    path.write_text(HEAD + SIMULATION + f"cohort:\n  method: table\n  table: {table}\n",
                    encoding="utf-8")
    return path


def test_a_table_that_is_not_a_csv_file_is_not_read(folder, capsys):
    path = cohort_scenario(folder, "/etc/passwd")
    assert cli.main(["check", str(path)]) == 1
    err = one_error(capsys)
    assert "cohort.table: /etc/passwd is not a .csv file" in err and "root:" not in err


def test_a_csv_link_to_another_file_is_not_read(folder, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("password: hunter2\n", encoding="utf-8")
    (folder / "members.csv").unlink(missing_ok=True)
    (folder / "members.csv").symlink_to(secret)
    path = cohort_scenario(folder, "members.csv")
    assert cli.main(["check", str(path)]) == 1
    err = one_error(capsys)
    assert f"is not a .csv file (it links to {secret})" in err and "hunter2" not in err


def test_a_csv_outside_the_folder_is_not_echoed(folder, tmp_path, capsys):
    secret = tmp_path / "keys.csv"
    secret.write_text("api_key=hunter2,x\n1,2\n", encoding="utf-8")
    path = cohort_scenario(folder, str(secret))
    assert cli.main(["check", str(path)]) == 1
    err = one_error(capsys)
    assert "the first line is not a header of instance.parameter columns (its content is not " \
           "shown: the file lies outside the scenario's folder)" in err
    assert "hunter2" not in err and "api_key" not in err


def test_a_cohort_csv_outside_the_folder_is_read_and_its_cells_named(folder, tmp_path,
                                                                     capsys):
    table = tmp_path / "members.csv"
    table.write_text("member,left.k\np1,2.0\np2,oops\n", encoding="utf-8")
    path = cohort_scenario(folder, str(table))
    assert cli.main(["check", str(path)]) == 1  # a cohort table: quoting its cells is fine
    assert "row 2 (line 3), column 'left.k': 'oops' is not a finite number" in one_error(capsys)
    table.write_text("member,left.k\np1,2.0\np2,3.0\n", encoding="utf-8")
    assert cli.main(["check", str(path)]) == 0
    assert "cohort of 2 members (table) over left.k" in capsys.readouterr().out


@pytest.mark.parametrize(("where", "ranks"), [("missing folder", 1), ("a folder", 1),
                                              pytest.param("missing folder", 2,
                                                           marks=pytest.mark.mpi)])
def test_an_unwritable_output_path_is_one_line(folder, tmp_path, where, ranks):
    """Before: a FileNotFoundError traceback, then 'exit() called in an FMU?'; under mpiexec
    tracebacks from every rank, then a hang."""
    import os
    import subprocess
    import sys

    output = Path("/proc/no_such_folder/r.h5") if where == "missing folder" else tmp_path
    path = folder / "writable.yaml"
    path.write_text(HEAD + SIMULATION, encoding="utf-8")
    command = [sys.executable, "-m", "cosim.cli", "run", str(path), "-o", str(output),
               "--no-plot"]
    bin_folder = Path(sys.executable).parent
    if ranks > 1:
        command = [str(bin_folder / "mpiexec"), "-n", str(ranks), *command]
    env = dict(os.environ, PATH=f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and result.stdout == ""
    reason = "No such file or directory" if where == "missing folder" else "Is a directory"
    assert result.stderr == (f"error: cannot create the results file {output}: {reason}; "
                             "choose another path with -o\n")
