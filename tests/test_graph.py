"""The coupling graph (cosim.coupling.graph): every check, unit conversion, loops and step order."""

from __future__ import annotations

from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py: FMUs and broken archives for tests
import numpy as np
import pytest

from cosim.coupling.graph import CouplingGraph
from cosim.errors import ScenarioError, Source
from cosim.fmi.units import conversion, define
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.master.master import SETTLE, STEP, Stage, make_plan


@pytest.fixture(scope="module")
def fmus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("graph")
    c = kit.build_c_oscillator(folder)
    return {"c": c, "mm": kit.unit_variant(c, folder / "mm.fmu"),
            "feedthrough": kit.feedthrough_variant(c, folder / "feedthrough.fmu"),
            "typed": kit.typed_variant(c, folder / "typed.fmu")}


def graph_of(fmus: dict[str, Path], **instances: str) -> CouplingGraph:
    graph = CouplingGraph()
    for name, kind in instances.items():
        graph.add_instance(name, fmus[kind])
    return graph


def only_problem(graph: CouplingGraph) -> str:
    problems = graph.check()
    assert len(problems) == 1, problems
    return str(problems[0])


def test_a_correct_graph_has_no_problems(fmus):
    graph = graph_of(fmus, left="c", right="c")
    graph.connect("left.x", "right.x_other")
    graph.connect("right.x", "left.x_other")
    assert graph.check() == [] and graph.unconnected_inputs() == []
    assert graph.algebraic_loops() == [] and graph.warnings() == []
    assert [str(c) for c in graph.connections()] == ["right.x -> left.x_other",
                                                     "left.x -> right.x_other"]
    graph.validate()


def test_what_an_instance_was_given_is_read_through_the_graph(fmus):
    graph = CouplingGraph()
    graph.add_instance("b", fmus["c"], scale="tissue", parameters={"k": 2.0}, cost=3.0)
    graph.add_instance("a", fmus["c"])
    graph.connect("b.x", "a.x_other", factor=2.0)
    graph.connect("a.x", "b.x_other")
    assert "a" in graph and "z" not in graph
    assert (graph.scale("b"), graph.cost("b"), graph.parameters("b")) == ("tissue", 3.0,
                                                                          {"k": 2.0})
    graph.parameters("b")["k"] = 5.0  # a copy: the graph keeps what it was given
    assert graph.parameters("b") == {"k": 2.0} and graph.feeding("a") == ["b"]
    assert [(str(c), c.transform) for c in graph.connections(declared=True)] == [
        ("b.x -> a.x_other", (2.0, 0.0, True)), ("a.x -> b.x_other", (1.0, 0.0, True))]


def test_unknown_instance_suggests_a_name(fmus):
    graph = graph_of(fmus, left="c", right="c")
    graph.connect("lefft.x", "right.x_other", source=Source("s.yaml", 12, "connections.0"))
    text = only_problem(graph)
    assert text.startswith("s.yaml:12: connections.0: unknown instance 'lefft' "
                           "(did you mean 'left'?)")
    assert "instances declared: left, right" in text


def test_unknown_variable_suggests_a_name(fmus):
    graph = graph_of(fmus, left="c", right="c")
    graph.connect("left.xx", "right.x_other")
    text = only_problem(graph)
    assert "the FMU COscillator of 'left' has no variable 'xx' (did you mean 'x'?)" in text
    assert "its outputs: x, v" in text


def test_input_to_input_is_refused(fmus):
    graph = graph_of(fmus, left="c", right="c")
    graph.connect("left.x_other", "right.x_other")
    assert "'left.x_other' is an input, not an output" in only_problem(graph)


def test_output_to_output_is_refused(fmus):
    graph = graph_of(fmus, left="c", right="c")
    graph.connect("left.x", "right.v")
    assert "'right.v' is an output, not an input" in only_problem(graph)


def test_malformed_port_is_refused(fmus):
    graph = graph_of(fmus, left="c")
    graph.connect("leftx", "left.x_other")
    assert "'leftx' is not of the form instance.variable" in only_problem(graph)


def test_type_mismatch_is_refused(fmus):
    graph = graph_of(fmus, a="c", b="typed")
    graph.connect("a.x", "b.enable")
    assert "type mismatch: a.x is Real, b.enable is Boolean" in only_problem(graph)


def test_integer_may_feed_real(fmus):
    graph = graph_of(fmus, a="typed", b="c")
    graph.connect("a.count", "b.x_other")
    assert graph.check() == []
    assert graph.connections()[0].scale == 1.0


def test_unit_conversion_m_to_mm_and_back(fmus):
    graph = graph_of(fmus, metric="c", milli="mm")
    graph.connect("metric.x", "milli.x_other")
    graph.connect("milli.x", "metric.x_other")
    assert graph.check() == []
    by_target = {c.target: (c.scale, c.shift) for c in graph.connections()}
    assert by_target["milli"] == pytest.approx((1000.0, 0.0))
    assert by_target["metric"] == pytest.approx((0.001, 0.0))


def test_unit_conversion_is_applied_during_the_run(fmus):
    graph = graph_of(fmus, metric="c", milli="mm")
    graph.connect("metric.x", "milli.x_other")
    seen = []

    class Probe:
        def started(self, run):
            self.run = run

        def stepped(self, time):
            metric = self.run.system.instances["metric"].get(["x"])["x"]
            seen.append((metric, self.run.system.instances["milli"].get(["x_other"])["x_other"]))

        def finished(self, error):
            assert error is None

    execution = Execution(graph, Settings(0.0, 0.05, 0.01, record={"metric": ["x"]}))
    execution.run([Probe()])
    metric, milli = np.array(seen).T
    # Jacobi: the input of step n is the output at point n, in mm
    np.testing.assert_allclose(milli[1:], 1000.0 * metric[:-1], rtol=1e-12)
    assert np.ptp(metric) > 0.0


def test_offset_units_convert_with_scale_and_shift():
    scale, shift = conversion(define("degC"), define("degF"))
    assert scale * 100.0 + shift == pytest.approx(212.0)
    assert scale * -40.0 + shift == pytest.approx(-40.0)
    assert conversion(define("mmHg"), define("kPa"))[0] == pytest.approx(0.133322, rel=1e-5)


def test_incompatible_units_are_refused(fmus):
    graph = graph_of(fmus, a="c", b="c")
    graph.connect("a.v", "b.x_other")
    assert ("unit mismatch: a.v is in m/s, b.x_other is in m, which measure different "
            "quantities") in only_problem(graph)


def test_double_fed_input_is_refused(fmus):
    graph = graph_of(fmus, a="c", b="c", target="c")
    graph.connect("a.x", "target.x_other", source=Source("s.yaml", 20))
    graph.connect("b.x", "target.x_other", source=Source("s.yaml", 21))
    text = only_problem(graph)
    assert text.startswith("s.yaml:21: input target.x_other is fed twice: already by a.x "
                           "(line 20)")
    assert len(graph.connections()) == 1


def test_unconnected_inputs_are_listed(fmus):
    graph = graph_of(fmus, a="c", b="c", t="typed")
    graph.connect("a.x", "b.x_other")
    assert graph.unconnected_inputs() == ["a.x_other", "t.x_other", "t.enable"]


def test_instance_declared_twice_and_bad_parameters(fmus):
    graph = graph_of(fmus, a="c")
    graph.add_instance("a", fmus["c"])
    graph.add_instance("b", fmus["c"], parameters={"kc": 1.0, "x": 2.0, "k": "stiff"},
                       scale="atomic")
    texts = [str(p) for p in graph.check()]
    assert texts[0].startswith("instance 'a' is declared twice")
    assert any("unknown scale 'atomic'" in t for t in texts)
    assert any("has no variable 'kc' (did you mean 'k_c'?)" in t for t in texts)
    assert any("'b.x' is output and cannot be set" in t for t in texts)
    assert any("'b.k' is Real, got str 'stiff'" in t for t in texts)
    with pytest.raises(ScenarioError, match="5 problems found"):
        graph.validate()


def test_empty_graph_is_a_problem():
    assert "no instances declared" in str(CouplingGraph().check()[0])


def test_algebraic_loop_is_found_through_direct_feedthrough(fmus):
    graph = graph_of(fmus, p="feedthrough", q="feedthrough")
    graph.connect("p.x", "q.x_other")
    graph.connect("q.x", "p.x_other")
    loops = graph.algebraic_loops()
    assert len(loops) == 1
    assert set(loops[0]) == {"p.x", "q.x_other", "q.x", "p.x_other"}
    assert graph.warnings()[0].startswith("algebraic loop (broken by a one-step delay): ")
    plan = make_plan(graph, "jacobi")
    assert plan.step == (Stage(STEP, ("p", "q")),), "a loop is not settled after a step"
    # one side without feed-through breaks the loop; p's x follows q's x at every point
    graph = graph_of(fmus, p="feedthrough", q="c")
    graph.connect("p.x", "q.x_other")
    graph.connect("q.x", "p.x_other")
    assert graph.algebraic_loops() == []
    assert make_plan(graph, "jacobi").step == (Stage(STEP, ("q", "p")), Stage(SETTLE, ("p",)))


def test_gauss_seidel_order_follows_the_data_flow(fmus):
    graph = graph_of(fmus, c="c", b="c", a="c", lone="c")  # declared against the flow
    graph.connect("a.x", "b.x_other")
    graph.connect("b.x", "c.x_other")
    assert graph.gauss_seidel_order() == ["a", "b", "c", "lone"]
    assert make_plan(graph, "gauss-seidel").levels == (("a", "lone"), ("b",), ("c",))
    assert make_plan(graph, "jacobi").levels == (("a", "b", "c", "lone"),)


def test_gauss_seidel_breaks_a_cycle_by_declaration_order(fmus):
    graph = graph_of(fmus, second="c", first="c")
    graph.connect("first.x", "second.x_other")
    graph.connect("second.x", "first.x_other")
    assert graph.gauss_seidel_order() == ["second", "first"]
    assert make_plan(graph, "gauss-seidel").levels == (("second",), ("first",))


# -- partition over MPI ranks (cosim.coupling.partition) -------------------------------------------
def chain_of(fmus: dict[str, Path], costs: list[float]) -> CouplingGraph:
    graph = CouplingGraph()
    for i, cost in enumerate(costs):
        graph.add_instance(f"o{i}", fmus["c"], cost=cost)
    for i in range(1, len(costs)):
        graph.connect(f"o{i - 1}.x", f"o{i}.x_other")
    return graph


def balance(owner: dict[str, int], cost: dict[str, float], parts: int) -> float:
    from cosim.coupling.partition import loads

    load = loads(owner, cost, parts)
    return sum(load) / parts / max(load)


def test_partition_balances_uneven_costs_better_than_cutting_the_chain(fmus):
    """16 instances with the uneven costs of the scaling benchmark's tissue patches (seconds
    measured in a 4 s run): cutting the chain into pieces leaves 2, 4, 8 ranks 95, 85, 73 %
    balanced; moving and swapping instances along the cut connections: 99, 92, 91 %."""
    from cosim.coupling.partition import _bfs_sequence, _contiguous_split, _links, partition

    seconds = [1.44, 1.38, 1.25, 1.11, 1.09, 0.92, 0.93, 1.04, 1.06, 1.08, 0.92, 0.93, 0.96,
               0.96, 1.11, 0.94]
    graph = chain_of(fmus, seconds)
    cost = dict(zip(graph.instances, seconds, strict=True))
    for parts, cut_only, wanted in ((2, 0.96, 0.98), (4, 0.86, 0.91), (8, 0.74, 0.90)):
        contiguous = _contiguous_split(_bfs_sequence(graph, _links(graph)), cost, parts)
        owner = partition(graph, parts)
        assert owner == partition(graph, parts), "deterministic: every rank computes it alike"
        assert sorted(set(owner.values())) == list(range(parts))
        assert balance(contiguous, cost, parts) < cut_only
        assert balance(owner, cost, parts) >= wanted, (parts, owner)
    same = chain_of(fmus, [1.0] * 16)
    assert partition(same, 4) == {f"o{i}": i // 4 for i in range(16)}, "equal costs: one cut"


def test_partition_on_measured_costs_overrides_the_declared_ones(fmus):
    from cosim.coupling.partition import partition

    graph = chain_of(fmus, [1.0] * 4)
    measured = {"o0": 0.01, "o1": 0.01, "o2": 0.01, "o3": 0.5}
    assert partition(graph, 2) == {"o0": 0, "o1": 0, "o2": 1, "o3": 1}
    assert partition(graph, 2, cost=measured) == {"o0": 0, "o1": 0, "o2": 0, "o3": 1}
    # test_parallel.py's measured balance: a ring of three and an unconnected expensive patch
    ring = graph_of(fmus, o0="c", o1="c", o2="c", patch="c")
    for i in range(3):
        ring.connect(f"o{i}.x", f"o{(i + 1) % 3}.x_other")
    assert partition(ring, 2) == {"o0": 0, "o1": 0, "o2": 1, "patch": 1}
    measured = {"o0": 0.003, "o1": 0.003, "o2": 0.003, "patch": 0.05}
    assert partition(ring, 2, cost=measured) == {"o0": 0, "o1": 0, "o2": 0, "patch": 1}


def test_coupled_components_are_kept_whole_when_the_exchanges_cost_more_than_the_split_saves(
        fmus):
    """Two chains of two (a-b, c-d) over 2 parts on costs that split a-b: kept as split while
    its exchanges cost less than the work it moves off the heaviest part, each chain whole on
    a part (the heavier first) once they cost more; one chain alone: all on part 0."""
    from cosim.coupling.partition import keep_whole_if_cheaper, loads, partition

    graph = graph_of(fmus, a="c", b="c", c="c", d="c")
    graph.connect("a.x", "b.x_other")
    graph.connect("c.x", "d.x_other")
    cost = {"a": 0.4, "b": 0.4, "c": 0.1, "d": 0.1}
    split = partition(graph, 2, cost=cost)
    assert split["a"] != split["b"]
    saved = sum(cost.values()) - max(loads(split, cost, 2))
    assert keep_whole_if_cheaper(graph, split, cost, 2, saved / 2) == split
    assert keep_whole_if_cheaper(graph, split, cost, 2, saved * 2) == {
        "a": 0, "b": 0, "c": 1, "d": 1}
    chain = chain_of(fmus, [1.0] * 4)
    owner = partition(chain, 2)
    assert keep_whole_if_cheaper(chain, owner, dict.fromkeys(owner, 1e-4), 2, 1.0) == \
        dict.fromkeys(owner, 0)

