"""The member runner's answer (``cosim.running.runner``): how a member ended, judged in the
child process that ran it, handed to its rank whole (the rank does not read it back)."""

from __future__ import annotations

import math

from cosim.running.runner import answer, ended
from cosim.running.strategies import MemberEnd
from cosim.scenario.criteria import Outcome


def test_a_member_end_crosses_the_pipe_whole():
    outcomes = [Outcome("bounded", "a.x", "max", 1.2, math.nan, 1.05, False, 0.25, 0.0, 1.0,
                        "stays small"),
                Outcome("ran", "a.y", "final", math.nan, 0.0, math.nan, False, math.nan, 0.0,
                        1.0, reason="no rows in the window")]
    end = MemberEnd(12, "completed", "", outcomes)
    line = answer(end)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = ended(line.rstrip(b"\n"))
    assert (back.index, back.status, back.error) == (12, "completed", "")
    assert [o.text() for o in back.outcomes] == [o.text() for o in outcomes]
    assert back.passed is False and MemberEnd(3, "completed").passed is True
    assert ended(answer(MemberEnd(4, "failed", "the FMU crashed"))).error == "the FMU crashed"
