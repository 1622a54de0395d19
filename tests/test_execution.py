"""The execution: what it builds (plan, system, master, exchange) and how it drives them."""

from __future__ import annotations

import fmu_kit as kit  # tests/fmu_kit.py
import pytest

from cosim.execution import Execution, Settings
from cosim.graph import CouplingGraph


@pytest.fixture(scope="module")
def two_mass(tmp_path_factory) -> CouplingGraph:
    folder = tmp_path_factory.mktemp("execution")
    graph = CouplingGraph()
    graph.add_instance("m1", kit.build_c_model("mass1", folder), parameters={"x1_0": 1.0})
    graph.add_instance("m2", kit.build_c_model("mass2", folder))
    graph.connect("m1.x1", "m2.x1")
    graph.connect("m1.v1", "m2.v1")
    graph.connect("m2.F", "m1.F")
    graph.validate()
    return graph


def test_the_exchange_is_made_with_the_execution_and_follows_every_stage(two_mass):
    """The exchange (MPI: the values crossing ranks) is built from the execution's plan and
    system when the execution is, and called after every stage, in the plan's order."""
    made, exchanged = [], []

    def exchange(plan, system):
        made.append((plan, system))
        return exchanged.append

    execution = Execution(two_mass, Settings(0.0, 0.03, 0.01), exchange=exchange)
    assert made == [(execution.plan, execution.system)]
    execution.run()
    plan = execution.plan
    setup = list(range(len(plan.initial) + len(plan.start)))
    step = list(range(len(setup), len(plan.stages)))
    assert step and exchanged == setup + step * 3
