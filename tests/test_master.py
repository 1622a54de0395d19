"""The master against exact references: a two-mass oscillator split at its coupling spring.

Mass1 (inputs F; outputs x1, v1: states, no feedthrough) and Mass2 (inputs x1, v1; output
F = ck (x2 - x1) + dk (v2 - v1): direct feedthrough), each as a hand-written C FMU
(tests/fixtures/c_models) and as a pythonfmu FMU (tests/fixtures/py_models), every flavour mix,
both declaration orders. Both FMUs step exactly, so an ideal zero-order-hold co-simulation is a
linear recurrence built from matrix exponentials of the two subsystems (``ideal``): cosim must
reproduce it to 1e-9, and converge with order 1 to the monolithic solution (``exact``).

Also here: the gain-2 algebraic loop that runs to infinity (the run stops, naming the value),
an FMU that ends the simulation itself (terminateSimulation), and the busy-time bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

import fakes  # tests/fakes.py
import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest
from scipy.linalg import expm

from cosim.coupling.graph import CouplingGraph
from cosim.errors import SimulationError
from cosim.library.build import build_fmu
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.master.master import SETTLE, STEP, FixedStepMaster, Stage, make_plan
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario

FIXTURES = Path(__file__).resolve().parent / "fixtures"

MASS1 = {"m1": 1.0, "k1": 10.0, "d1": 0.1, "x1_0": 1.0, "v1_0": 0.0}
MASS2 = {"m2": 1.0, "k2": 20.0, "d2": 0.2, "ck": 100.0, "dk": 1.0, "x2_0": 0.0, "v2_0": 0.0}
RECORD = {"m1": ("x1", "v1"), "m2": ("x2", "v2", "F", "x1")}
COLUMNS = ("m1.x1", "m1.v1", "m2.x2", "m2.v2", "m2.F")
MIXES = [("c", "c"), ("c", "py"), ("py", "c"), ("py", "py")]


@pytest.fixture(scope="module")
def fmus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("master")
    built = {name: kit.build_c_model(name, folder)
             for name in ("mass1", "mass2", "gain", "stopper")}
    for name in ("mass1", "mass2"):
        built[f"py_{name}"] = build_fmu(FIXTURES / "py_models" / f"cosim_py_{name}.py", folder)
    return built


def two_mass(fmus: dict[str, Path], mix=("c", "c"), mass2_first: bool = False
             ) -> CouplingGraph:
    files = [fmus[("py_" if flavour == "py" else "") + name]
             for flavour, name in zip(mix, ("mass1", "mass2"), strict=True)]
    graph = CouplingGraph()
    declared = [("m1", files[0], MASS1), ("m2", files[1], MASS2)]
    for name, fmu, parameters in reversed(declared) if mass2_first else declared:
        graph.add_instance(name, fmu, parameters=parameters)
    graph.connect("m1.x1", "m2.x1")
    graph.connect("m1.v1", "m2.v1")
    graph.connect("m2.F", "m1.F")
    graph.validate()
    return graph


class Trace:
    """Observer keeping every recorded signal at every communication point."""

    def started(self, run: Execution) -> None:
        self.signals, layout = run.system.signals, run.layout
        self.index = {f"{i}.{v}": layout.index(i, v) for i, vs in RECORD.items() for v in vs}
        self.rows: list[np.ndarray] = []
        self.times: list[float] = []

    def stepped(self, time: float) -> None:
        self.rows.append(self.signals[list(self.index.values())].copy())
        self.times.append(time)

    def finished(self, error: BaseException | None) -> None:
        pass

    def columns(self) -> dict[str, np.ndarray]:
        rows = np.array(self.rows)
        out = {name: rows[:, i] for i, name in enumerate(self.index)}
        out["time"] = np.array(self.times)
        return out


def simulate(graph: CouplingGraph, algorithm: str, step: float, stop: float = 1.0
             ) -> dict[str, np.ndarray]:
    trace = Trace()
    Execution(graph, Settings(0.0, stop, step, algorithm, record=RECORD)).run([trace])
    return trace.columns()


# -- the references ------------------------------------------------------------------------------
def subsystems() -> tuple[np.ndarray, ...]:
    """(A1, B1, A2, B2, C2, D2): z1' = A1 z1 + B1 F; z2' = A2 z2 + B2 z1; F = C2 z2 + D2 z1."""
    p, q = MASS1, MASS2
    a1 = np.array([[0.0, 1.0], [-p["k1"] / p["m1"], -p["d1"] / p["m1"]]])
    b1 = np.array([[0.0], [1.0 / p["m1"]]])
    a2 = np.array([[0.0, 1.0], [-(q["k2"] + q["ck"]) / q["m2"], -(q["d2"] + q["dk"]) / q["m2"]]])
    b2 = np.array([[0.0, 0.0], [q["ck"] / q["m2"], q["dk"] / q["m2"]]])
    c2, d2 = np.array([[q["ck"], q["dk"]]]), np.array([[-q["ck"], -q["dk"]]])
    return a1, b1, a2, b2, c2, d2


def hold(a: np.ndarray, b: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact step of z' = a z + b u with u held over h: (Phi, Gamma) from one expm."""
    n, m = b.shape
    block = np.zeros((n + m, n + m))
    block[:n, :n], block[:n, n:] = a, b
    e = expm(block * h)
    return e[:n, :n], e[:n, n:]


def ideal(algorithm: str, step: float, stop: float = 1.0, naive: bool = False
          ) -> dict[str, np.ndarray]:
    """The ideal zero-order-hold co-simulation: every FMU steps exactly from inputs held over
    the step; the inputs are the outputs at the start of the step (Jacobi) or, for Mass2,
    Mass1's at its end (Gauss-Seidel, Mass1 first); F is always F(x1, v1, x2, v2) of one
    instant. ``naive``: Jacobi that reads F right after Mass2's step, still from the old x1, v1
    (what cosim did before the settle stages)."""
    a1, b1, a2, b2, c2, d2 = subsystems()
    phi1, gam1 = hold(a1, b1, step)
    phi2, gam2 = hold(a2, b2, step)
    z1 = np.array([MASS1["x1_0"], MASS1["v1_0"]])
    z2 = np.array([MASS2["x2_0"], MASS2["v2_0"]])
    force = (c2 @ z2 + d2 @ z1)[0]
    rows = [[*z1, *z2, force]]
    for _ in range(round(stop / step)):
        z1_next = phi1 @ z1 + gam1[:, 0] * force
        z2_next = phi2 @ z2 + gam2 @ (z1_next if algorithm == "gauss-seidel" else z1)
        force = (c2 @ z2_next + d2 @ (z1 if naive else z1_next))[0]
        z1, z2 = z1_next, z2_next
        rows.append([*z1, *z2, force])
    rows = np.array(rows)
    return {name: rows[:, i] for i, name in enumerate(COLUMNS)}


def exact(times: np.ndarray) -> np.ndarray:
    """(x1, x2) of the monolithic system at ``times``."""
    a1, b1, a2, b2, c2, d2 = subsystems()
    a = np.block([[a1 + b1 @ d2, b1 @ c2], [b2, a2]])
    z0 = np.array([MASS1["x1_0"], MASS1["v1_0"], MASS2["x2_0"], MASS2["v2_0"]])
    return np.array([(expm(a * t) @ z0)[[0, 2]] for t in times])


def difference(result: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(result[name] - reference[name]))) for name in COLUMNS)


# -- correctness 1-3: initialisation, order, consistent outputs ------------------------------
@pytest.mark.parametrize("mix", MIXES, ids=["-".join(m) for m in MIXES])
@pytest.mark.parametrize("algorithm", ["jacobi", "gauss-seidel"])
def test_two_mass_equals_the_ideal_co_simulation_in_both_declaration_orders(fmus, mix,
                                                                           algorithm):
    reference = ideal(algorithm, 0.001)
    runs = [simulate(two_mass(fmus, mix, mass2_first), algorithm, 0.001)
            for mass2_first in (False, True)]
    for result in runs:
        assert result["m2.F"][0] == -100.0, "F(0) = ck (x2 - x1) = -100 N, whatever the order"
        assert result["m2.x1"][0] == 1.0, "every connection holds at t = 0"
        assert difference(result, reference) < 1e-9
        if algorithm == "jacobi":  # the naive scheme is far off: 1e-9 tells them apart
            assert difference(result, ideal(algorithm, 0.001, naive=True)) > 0.5
        consistent = 100.0 * (result["m2.x2"] - result["m1.x1"]) + (result["m2.v2"]
                                                                    - result["m1.v1"])
        np.testing.assert_allclose(result["m2.F"], consistent, rtol=0, atol=1e-9,
                                   err_msg="F belongs to the states of the same instant")
    for name in COLUMNS:  # the plan depends on the data flow only: the same arithmetic
        assert np.array_equal(runs[0][name], runs[1][name]), name


@pytest.mark.parametrize("algorithm", ["jacobi", "gauss-seidel"])
def test_error_against_the_exact_solution_is_first_order(fmus, algorithm):
    graph = two_mass(fmus, mass2_first=True)
    steps = (0.004, 0.002, 0.001)
    errors = []
    for h in steps:
        result = simulate(graph, algorithm, h)
        errors.append(float(np.max(np.abs(
            np.c_[result["m1.x1"], result["m2.x2"]] - exact(result["time"])))))
    order = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((order > 0.85) & (order < 1.15)), (errors, order)


def test_plan_follows_the_data_flow_not_the_declaration(fmus):
    graph = two_mass(fmus, mass2_first=True)
    assert graph.instances == ["m2", "m1"]
    gauss_seidel = make_plan(graph, "gauss-seidel")
    assert gauss_seidel.levels == (("m1",), ("m2",)), "m2's F depends directly on m1's x1, v1"
    assert gauss_seidel.step == (Stage(STEP, ("m1",)), Stage(STEP, ("m2",)))
    jacobi = make_plan(graph, "jacobi")
    assert jacobi.step == (Stage(STEP, ("m1", "m2")), Stage(SETTLE, ("m2",)))
    # initialisation: read all, then m2 (F from x1, v1), then m1 (its input F, once final)
    assert jacobi.initial[1:] == (Stage(SETTLE, ("m2",)), Stage(SETTLE, ("m1",)))


# -- the master interface ----------------------------------------------------------------------
def test_the_fixed_step_master_lands_on_its_grid_whatever_it_is_asked():
    """``advance(time, until)`` returns the next communication point, start + (n + 1) h
    computed, never summed (0.1 added ten times is not 1.1), even when asked to stop short of
    it; ``landing`` puts what is due between two points on the next one."""
    graph = CouplingGraph()
    graph.add_instance("i", fakes.fmu(fakes.integrator()))
    execution = Execution(graph, Settings(0.1, 1.1, 0.1), instances=fakes.instances)
    master = execution.master
    assert isinstance(master, FixedStepMaster) and master.plan is execution.plan
    execution.start()
    time, summed = 0.1, 0.1
    for n in range(10):
        time = master.advance(time, until=time + 0.01)
        summed += 0.1
        assert time == 0.1 + (n + 1) * 0.1
    assert time == 1.1 != summed
    assert master.landing(0.35) == 0.1 + 3 * 0.1
    assert master.landing(0.1 + 3 * 0.1 + 1e-12) == 0.1 + 3 * 0.1  # within 1e-9 of a step
    assert master.landing(-5.0) == 0.1


def test_gauss_seidel_steps_in_levels_and_settles_what_feeds_through():
    """An integrator feeding a gain (direct feedthrough) feeding a second integrator, declared
    against the flow: Gauss-Seidel steps them one level each in data-flow order, each with
    the inputs of t + h; Jacobi steps all with the inputs of t, then settles the gain (its
    input set to the value of t + h, its output read again); the second integrator keeps
    its input for the next step (no feedthrough)."""
    graph = CouplingGraph()
    graph.add_instance("late", fakes.fmu(fakes.integrator("late")))
    graph.add_instance("gain", fakes.fmu(fakes.gain()))
    graph.add_instance("early", fakes.fmu(fakes.integrator("early", x0=1.0)))
    graph.connect("early.x", "gain.u")
    graph.connect("gain.y", "late.u")
    for algorithm, expected in (
            ("gauss-seidel", ["step early", "get early", "set gain", "step gain", "get gain",
                              "set late", "step late", "get late"]),
            ("jacobi", ["set gain", "set late", "step early", "step gain", "step late",
                        "get early", "get gain", "get late", "set gain", "get gain"])):
        fakes.reset()
        execution = Execution(graph, Settings(0.0, 0.01, 0.01, algorithm),
                              instances=fakes.instances)
        execution.start()
        fakes.reset()
        execution.master.advance(0.0, 0.01)
        execution.system.close()
        said = [f"{call.split()[0]} {name}" for name, call, _ in fakes.CALLS
                if call in ("set inputs", "step", "get outputs")]
        assert said == expected, (algorithm, said)


# -- correctness 4: values that are not finite ----------------------------------------------
def gain_loop(fmus: dict[str, Path], folder: Path) -> Path:
    scenario = folder / "loop.yaml"
    scenario.write_text(f"""\
version: 1
name: a loop with gain 2
fmus: {{gain: {fmus['gain']}}}
instances:
  g: {{fmu: gain, parameters: {{k: 2.0}}}}
connections: [g.y -> g.u]
simulation: {{start: 0, stop: 2, step: 0.001}}
record: [g.y]
""")
    return scenario


def test_a_value_that_is_not_finite_stops_the_run_naming_it(fmus, tmp_path, capsys):
    """y doubles every step (16 at t = 0, after 3 initialisation passes): 2^1024 overflows
    at step 1020. The run stops there with one message; the file keeps what came before."""
    from cosim import cli

    out = tmp_path / "loop.h5"
    assert cli.main(["run", str(gain_loop(fmus, tmp_path)), "-o", str(out), "--no-plot"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: instance 'g', t = 1.02 s: g.y = inf is not finite")
    assert "Traceback" not in error
    assert not out.exists()  # a run that did not complete keeps its partial file aside
    [kept] = tmp_path.glob("loop.partial-*.h5")
    assert f"kept in {kept}" in error
    with open_results(kept) as results:
        assert results.status == "failed"
        assert results["g.y"][0] == 16.0
        assert np.isfinite(results["g.y"]).all() and results.time[-1] == pytest.approx(1.019)


# -- correctness 5: an FMU that ends the simulation -----------------------------------------
def stopper_scenario(fmus: dict[str, Path], folder: Path, algorithm: str, t_end: float,
                     stop: float = 1.0, isolation: str = "none") -> Path:
    scenario = folder / f"stopper_{algorithm}_{stop:g}.yaml"
    scenario.write_text(f"""\
version: 1
name: ends early
fmus: {{mass1: {fmus['mass1']}, mass2: {fmus['mass2']}, stopper: {fmus['stopper']}}}
instances:
  m1: {{fmu: mass1}}
  m2: {{fmu: mass2}}
  stop: {{fmu: stopper, isolation: {isolation}, parameters: {{t_end: {t_end}}}}}
connections: [m1.x1 -> m2.x1, m1.v1 -> m2.v1, m2.F -> m1.F, m1.x1 -> stop.u]
simulation: {{start: 0, stop: {stop}, step: 0.01, algorithm: {algorithm}}}
record: ['*.*', m2.x2]
""")
    return scenario


@pytest.mark.parametrize(("algorithm", "isolation"), [("jacobi", "none"),
                                                      ("gauss-seidel", "none"),
                                                      ("jacobi", "process")])
def test_an_fmu_that_ends_the_simulation_ends_the_run_normally(fmus, tmp_path, algorithm,
                                                               isolation):
    """stop ends the simulation at 0.255 s, inside the step 0.25 → 0.26: that step completes
    for the others (same values as a run to 0.26), the point 0.26 is the last one recorded,
    and the file says why. stop's input is not set after it ended (FMI 2.0 forbids it; this
    FMU refuses it): under Jacobi its echo (direct feedthrough) keeps its last value. The
    same in its own process (isolation: process)."""
    ended = run_scenario(stopper_scenario(fmus, tmp_path, algorithm, 0.255,
                                          isolation=isolation), tmp_path / "a.h5", plot=False)
    plain = run_scenario(stopper_scenario(fmus, tmp_path, algorithm, 5.0, stop=0.26),
                         tmp_path / "b.h5", plot=False)
    with open_results(ended.results) as a, open_results(plain.results) as b:
        assert a.status == "completed" and a.attrs["error"] == ""
        assert a.attrs["end_reason"] == ("'stop' ended the simulation at t = 0.255 s "
                                         "(terminateSimulation)")
        assert b.attrs["end_reason"] == "stop time reached"
        assert a.time[-1] == pytest.approx(0.26) and len(a.time) == len(b.time) == 27
        assert a["stop.clock"][-1] == 0.255
        for name in ("m1.x1", "m2.F", "m2.x2"):
            assert np.array_equal(a[name], b[name]), name
        assert np.array_equal(a["stop.echo"][:-1], b["stop.echo"][:-1])
        if algorithm == "jacobi":  # its settle stage would set u = x1(0.26): skipped
            assert a["stop.echo"][-1] == a["stop.echo"][-2] != b["stop.echo"][-1]
        else:  # stepped after m1, from u = x1(0.26)
            assert a["stop.echo"][-1] == b["stop.echo"][-1]


def test_a_refused_step_with_an_error_logged_is_a_failure_not_an_end(tmp_path):
    """pythonfmu answers "terminated" to every step its model refuses (do_step returning
    False): with an error in the FMU's log that is a failure, named with the log."""
    failing = build_fmu(Path(__file__).parent / "mpi" / "failing_model.py", tmp_path)
    graph = CouplingGraph()
    graph.add_instance("pump", failing, parameters={"fail_time": 0.05})
    with pytest.raises(SimulationError) as caught:
        Execution(graph, Settings(0.0, 1.0, 0.01)).run()
    assert "instance 'pump', t = 0.05 s: the FMU could not complete a step" in str(caught.value)
    assert "the pump model diverged (on purpose)" in str(caught.value)


# -- busy seconds ---------------------------------------------------------------------------
def test_busy_seconds_go_to_the_instance_whose_calls_took_them(monkeypatch):
    """A fake clock that advances only inside the slow model's step: all of it is its, none
    the other's, scaled from the timed steps (every 4th here) to the whole run."""
    import cosim.master.master as master

    ticks = [0.0]
    monkeypatch.setattr(master, "perf_counter", lambda: ticks[0])

    def slow(v: dict, t: float, h: float) -> None:
        ticks[0] += 0.5

    graph = CouplingGraph()
    graph.add_instance("fast", fakes.fmu(fakes.integrator("fast")))
    graph.add_instance("slow", fakes.fmu(fakes.FakeModel("slow", outputs=("y",), step=slow)))
    execution = Execution(graph, Settings(0.0, 0.1, 0.01), time_every=4,
                          instances=fakes.instances)
    execution.run()
    # steps 0, 4, 8 timed: 3 × 0.5 s, times 4
    assert execution.master.busy == {"fast": 0.0, "slow": 6.0}


def test_cosim_graph_shows_the_settle_stages(fmus, tmp_path):
    from cosim.describe import graph_text

    scenario = tmp_path / "two_mass.yaml"
    scenario.write_text(f"""\
version: 1
fmus: {{mass1: {fmus['mass1']}, mass2: {fmus['mass2']}}}
instances: {{m2: {{fmu: mass2}}, m1: {{fmu: mass1}}}}
connections: [m1.x1 -> m2.x1, m1.v1 -> m2.v1, m2.F -> m1.F]
simulation: {{start: 0, stop: 1, step: 0.001}}
""")
    text = graph_text(scenario, tmp_path / "g.dot")
    assert "jacobi levels: m1, m2\nthen settled (direct feedthrough): m2\n" in text
