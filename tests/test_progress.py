"""Progress of `cosim run`: a line on a terminal (simulated time, rate, ETA; a cohort's members
done and failed), drawn by the supervisor from the worker's journal; nothing when standard
error is not a terminal or with --quiet."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from cosim.master.journal import Position
from cosim.running.progress import Progress, line

SCENARIO = """\
version: 1
fmus: {generator: generator}
instances:
  pacemaker: {fmu: generator, parameters: {mode: 1}}
simulation: {stop: 200.0, step: 0.001}
record: [pacemaker.vp_count]
criteria:
  - {name: paces, signal: pacemaker.vp_count, measure: increase, min: 150}
"""
COHORT = SCENARIO + "cohort:\n  method: grid\n  parameters:\n" \
    "    pacemaker.lower_rate: {values: [60.0, 120.0]}\n"


def position(time: float, members=(0, 0, 0), phase="stepping") -> Position:
    return Position(phase=phase, step=0, time=time, instance=None, call=None, finished=False,
                    marker=(0, 0), call_timeout=60.0, start=0.0, stop=20.0, members=members)


def test_the_line_says_simulated_time_rate_and_eta():
    text = line(position(10.0), elapsed=5.0)
    assert text.startswith("t = 10 of 20 s  [############------------]  50%")
    assert "2× real time" in text and text.endswith("ETA 0:05")
    assert line(position(20.0), 10.0).endswith("ETA 0:00")
    assert line(position(0.0, phase="initialising"), 1.0).endswith("ETA ?")


def test_a_cohort_line_counts_members_and_failures():
    text = line(position(10.0, members=(3, 8, 1)), elapsed=35.0)  # 3.5 of 8 members in 35 s
    assert text.startswith("members 3/8, 1 failed  [##########--------------]")
    assert "member t = 10 of 20 s" in text and text.endswith("ETA 0:45")


def test_nothing_is_drawn_off_a_terminal_or_before_the_delay():
    stream = io.StringIO()
    progress = Progress(stream, after=0.0)
    progress.update(position(10.0), 1.0)
    progress.close()
    assert stream.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    late = Progress(terminal, after=2.0)
    late.update(position(1.0), 100.0)
    late.update(position(2.0), 101.0)  # 1 s after the first look: not yet
    assert terminal.getvalue() == ""
    late.update(position(3.0), 102.5)
    late.close()
    assert terminal.getvalue().startswith("\r\033[Kt = 3 of 20 s") and \
        terminal.getvalue().endswith("\r\033[K")


def run_on_a_terminal(tmp_path: Path, text: str, *arguments: str) -> tuple[int, str, str]:
    """``cosim run`` with its standard error on a pseudo-terminal; (exit, stdout, terminal)."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text, encoding="utf-8")
    leader, follower = pty.openpty()
    env = dict(os.environ, COSIM_PROGRESS_AFTER="0")
    process = subprocess.Popen([sys.executable, "-m", "cosim.cli", "run", str(scenario), "-o",
                                str(tmp_path / "out.h5"), "--no-plot", *arguments],
                               stdout=subprocess.PIPE, stderr=follower, env=env, text=True)
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    stdout = process.stdout.read()
    return process.wait(), stdout, seen.decode(errors="replace")


def test_a_run_on_a_terminal_shows_progress_then_clears_it(tmp_path):
    code, stdout, terminal = run_on_a_terminal(tmp_path, SCENARIO)
    assert code == 0 and "VERDICT: PASS" in stdout
    assert "of 200 s  [" in terminal and "real time" in terminal and "ETA" in terminal
    assert terminal.endswith("\r\033[K")  # the line is cleared before the summary


def test_quiet_shows_nothing(tmp_path):
    code, stdout, terminal = run_on_a_terminal(tmp_path, SCENARIO, "--quiet")
    assert (code, stdout, terminal) == (0, "", "")


def test_a_cohort_on_a_terminal_counts_its_members(tmp_path):
    code, stdout, terminal = run_on_a_terminal(tmp_path, COHORT)
    assert "members 0/2" in terminal or "members 1/2" in terminal
    assert "member t = " in terminal
    assert code == 0, stdout


def test_off_a_terminal_no_progress_is_written(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "cosim.cli", "run", str(scenario), "-o",
                           str(tmp_path / "out.h5"), "--no-plot"], capture_output=True,
                          text=True, env=dict(os.environ, COSIM_PROGRESS_AFTER="0"))
    assert done.returncode == 0 and "VERDICT: PASS" in done.stdout
    assert done.stderr == ""
