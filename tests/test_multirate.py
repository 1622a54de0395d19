"""Multirate (cosim/master/multirate.py): the two-mass oscillator (tests/test_master.py's exact
reference) with one mass stepped 4x slower than the other, at a fixed step and under step-size
control; the scenario key ``instances.<name>.step``, its mistakes, and the FMU steps per
instance in /master. The same under MPI: tests/test_parallel.py."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from test_master import RECORD, Trace, exact, fmus, two_mass  # noqa: F401 - fmus: a fixture

from cosim.errors import ScenarioError
from cosim.master.description import Adaptive, Iteration, Settings
from cosim.master.execution import Execution
from cosim.running.pipeline import run_scenario
from cosim.scenario.scenario import load_scenario


def oscillator(graph, step: float, rates: dict[str, int], algorithm: str = "jacobi",
               adaptive: Adaptive | None = None) -> tuple[float, dict[str, int], Execution]:
    """(the largest error of x1, x2 against the monolithic solution over 1 s, FMU steps per
    instance, the execution)."""
    trace = Trace()
    execution = Execution(graph, Settings(0.0, 1.0, step, algorithm, record=RECORD,
                                          rates=rates, adaptive=adaptive))
    execution.run([trace])
    columns = trace.columns()
    error = float(np.max(np.abs(np.c_[columns["m1.x1"], columns["m2.x2"]]
                                - exact(columns["time"]))))
    master = execution.master
    steps = master.log.instance_steps if adaptive else master.instance_steps(execution.steps)
    return error, steps, execution


@pytest.mark.parametrize(("algorithm", "worst"), [("jacobi", 1.5), ("gauss-seidel", 2.7)])
def test_a_mass_stepped_4x_slower_takes_a_quarter_of_the_steps(fmus, algorithm,  # noqa: F811
                                                               worst):
    """m2 at 4 h, m1 at h: m2 takes a quarter of m1's FMU steps; the error converges with
    order 1 in h, stays within ``worst`` times the error of both at h (Jacobi: m2's feedthrough
    output settled at the end of each of its steps) and well below both at 4 h."""
    graph = two_mass(fmus)
    errors = []
    for h in (0.004, 0.002, 0.001):
        error, steps, _ = oscillator(graph, h, {"m2": 4}, algorithm)
        uniform, _, _ = oscillator(graph, h, {}, algorithm)
        coarse, _, _ = oscillator(graph, 4 * h, {}, algorithm)
        assert steps == {"m1": round(1 / h), "m2": math.ceil(1 / (4 * h) - 1e-9)}
        assert uniform < error < worst * uniform, (h, error, uniform)
        assert error < 0.75 * coarse, (h, error, coarse)
        errors.append(error)
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(observed - 1.0) < 0.15), (errors, observed)


def test_the_slow_mass_reads_extrapolated_inputs_and_is_read_interpolated(fmus):  # noqa: F811
    """m1 (no feedthrough) stepped 4x slower: its input is extrapolated to the middle of its
    step and m2 reads its outputs interpolated, which beats holding them: the error is below
    that of both masses at the fast step with zero-order hold."""
    graph = two_mass(fmus)
    error, steps, execution = oscillator(graph, 0.001, {"m1": 4})
    uniform, _, _ = oscillator(graph, 0.001, {})
    assert steps == {"m1": 250, "m2": 1000}
    assert error < 0.1 * uniform, (error, uniform)


def test_multirate_under_step_size_control(fmus):  # noqa: F811
    """Under ``simulation.adaptive`` an instance's own step is the least it takes: with
    max_step at m2's own step, the run matches the adaptive run of both masses (same steps,
    error within 5 %); with a tighter tolerance m1 takes shorter steps and m2 keeps its own
    (the master lands on the end of each)."""
    graph = two_mass(fmus)
    loose = Adaptive(max_step=0.004, tolerance=1e9, extrapolation=1)
    error, steps, _ = oscillator(graph, 0.001, {"m2": 4}, adaptive=loose)
    uniform, uniform_steps, _ = oscillator(graph, 0.001, {}, adaptive=loose)
    assert steps["m2"] <= uniform_steps["m2"] and steps["m1"] == uniform_steps["m1"]
    assert abs(error - uniform) < 0.05 * uniform, (error, uniform)
    tight = Adaptive(max_step=0.05, tolerance=1e-4, extrapolation=1)
    error, steps, execution = oscillator(graph, 0.001, {"m2": 4}, adaptive=tight)
    assert steps["m2"] == 250 and steps["m1"] > 3 * steps["m2"], steps
    times = np.array(execution.master.log.times)
    ends = np.arange(1, 251) * 0.004
    assert np.all(np.min(np.abs(times[None, :] - ends[:, None]), axis=1) < 1e-12)
    assert error < 0.02


def scenario(folder, simulation: str, own_step: str = "step: 0.004, ") -> str:
    path = folder / "multirate.yaml"
    path.write_text(f"""version: 1
name: two oscillators, one stepped 4x slower
fmus: {{osc: oscillator}}
instances:
  fast: {{fmu: osc, parameters: {{m: 1.0, k: 1.0, k_c: 0.3, x0: 0.1}}}}
  slow: {{fmu: osc, {own_step}parameters: {{m: 1.1, k: 1.05, k_c: 0.3, x0: 0.2}}}}
connections:
  - fast.x -> slow.x_other
  - slow.x -> fast.x_other
simulation: {simulation}
record: {{variables: ['*.x']}}
""")
    return str(path)


def test_the_instance_step_is_read_and_its_mistakes_named_at_their_line(tmp_path):
    settings = load_scenario(scenario(tmp_path, "{start: 0, stop: 1, step: 0.001}")).settings
    assert settings.rates == {"slow": 4}
    for own, simulation, message in [
            ("step: 0.0025, ", "{start: 0, stop: 1, step: 0.001}",
             "instances.slow.step: 0.0025 s is not a whole multiple of simulation.step"),
            ("step: 0.0005, ", "{start: 0, stop: 1, step: 0.001}",
             "instances.slow.step: 0.0005 s is not a whole multiple of simulation.step"),
            ("step: -1, ", "{start: 0, stop: 1, step: 0.001}",
             "instances.slow.step: must be positive"),
            ("step: 0.004, ", "{start: 0, stop: 1, step: 0.001, iteration: {}}",
             "instances.slow.step: an instance's own step and simulation.iteration cannot be "
             "combined")]:
        with pytest.raises(ScenarioError) as caught:
            load_scenario(scenario(tmp_path, simulation, own))
        text = str(caught.value)
        assert message in text, text
        assert "multirate.yaml:6" in text, text  # the line of the slow instance


def test_multirate_with_iteration_is_refused_by_the_execution(fmus):  # noqa: F811
    with pytest.raises(Exception, match="cannot be combined"):
        Execution(two_mass(fmus), Settings(0.0, 1.0, 0.001, rates={"m2": 4},
                                           iteration=Iteration()))


def test_the_results_file_holds_the_fmu_steps_per_instance(tmp_path):
    """/master of a fixed-step multirate run: 1000 steps of the fast instance, 250 of the
    slow one; the slow one's recorded x lies on straight lines between its own points."""
    report = run_scenario(scenario(tmp_path, "{start: 0, stop: 1, step: 0.001}"),
                          tmp_path / "m.h5", plot=False)
    with h5py.File(report.results) as file:
        steps = json.loads(file["master"].attrs["instance_steps"])
        assert steps == {"fast": 1000, "slow": 250}
    from cosim.results.reader import open_results

    with open_results(report.results) as results:
        slow = results["slow.x"]
    second = np.diff(slow, 2)  # zero inside each of its steps (points 4k+1, 4k+2, 4k+3)
    inside = np.array([i for i in range(len(second)) if (i + 1) % 4 != 0])
    assert np.allclose(second[inside], 0.0, atol=1e-12 * np.max(np.abs(slow)))
    assert np.max(np.abs(second)) > 1e-9, "not a straight line as a whole"


@pytest.mark.parametrize("adaptive", [None, Adaptive(max_step=1.0, tolerance=1e-4)],
                         ids=["fixed", "adaptive"])
def test_a_resumed_multirate_run_equals_an_uninterrupted_one_bit_for_bit(adaptive):
    """The lag stepped 8x slower than its source, resumed from a checkpoint taken inside one
    of its steps (2.003 s): its step, the line its outputs are read on and the values its
    inputs are extrapolated from go on as they were."""
    from test_adaptive import chain, resumed_against_uninterrupted

    settings = Settings(0.0, 4.0, 0.001, record={"lag": ("y",)}, rates={"lag": 8},
                        adaptive=adaptive)
    whole, resumed, first, second = resumed_against_uninterrupted(chain(), settings, 2.003)
    assert len(whole) == len(resumed) > 10
    for (t1, v1), (t2, v2) in zip(whole, resumed, strict=True):
        assert t1 == t2 and np.array_equal(v1, v2)
    steps = (first.master.log.instance_steps if adaptive
             else first.master.instance_steps(first.steps))
    assert steps["lag"] < steps["source"]
    assert second.master.rates.steps == first.master.rates.steps


def test_a_long_fixed_step_run_keeps_to_the_grid(tmp_path):
    """20 s at 1 ms with an instance at 4 ms: 20 000 communication points, not one more (the
    end of a multirate step is the master's grid point, not time + 4 ms rounded
    differently, which would add a step of a few ulp before the point)."""
    report = run_scenario(scenario(tmp_path, "{start: 0, stop: 20, step: 0.001}"),
                          tmp_path / "long.h5", plot=False)
    with h5py.File(report.results) as file:
        assert file["master"].attrs["steps"] == 20000
        assert json.loads(file["master"].attrs["instance_steps"]) == {"fast": 20000,
                                                                     "slow": 5000}
