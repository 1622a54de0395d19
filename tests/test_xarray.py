"""Results open where scientists work: xarray (through h5netcdf) reads every group of a results
file with ``time`` as its coordinate, CF ``units`` and ``long_name`` attributes, named array
dimensions; the documented reader examples use names that exist; a wrong name gets a hint.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from cosim.coupling.graph import CouplingGraph
from cosim.fmi.fmu import read_fmu
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*REPO.glob("scenarios/*.yaml"), *REPO.glob("scenarios/examples/*.yaml")])
COHORT_MEMBERS = 2  # a shipped cohort is cut to its first members here (same layout)


@pytest.fixture(scope="module")
def shipped_results(tmp_path_factory):
    """``results(path)``: the results file of a shipped scenario, run once per module."""
    folder = tmp_path_factory.mktemp("shipped")
    cache: dict[Path, Path] = {}

    def results(scenario: Path) -> Path:
        if scenario not in cache:
            data = yaml.safe_load(scenario.read_text(encoding="utf-8"))
            cohort = data.get("cohort")
            if cohort and "size" in cohort:
                cohort["size"] = min(cohort["size"], COHORT_MEMBERS)
            copy = folder / scenario.name
            copy.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            for fmu in scenario.parent.glob("*.fmu"):  # FMU files named beside the scenario
                (folder / fmu.name).write_bytes(fmu.read_bytes())
            cache[scenario] = run_scenario(copy, folder / f"{scenario.stem}.h5",
                                           plot=False).results
        return cache[scenario]

    return results


def run_groups(path: Path) -> list[str]:
    """The groups holding one run: the root, or each cohort member."""
    with h5py.File(path, "r") as file:
        return [f"members/{m}" for m in file["members"]] if "members" in file else [""]


def check_group(path: Path, run: str) -> int:
    """Every instance of one run opens in xarray with its time coordinate and CF attributes;
    returns the number of variables checked."""
    checked = 0
    with open_results(path, run.partition("/")[2] or None) as res:
        time, instances = res.time, {v.partition(".")[0] for v in res.variables}
        fmus = {name: read_fmu(REPO / "build" / "fmus" / res.file[
            f"{res.group.name}/instances/{name}"].attrs["fmu"]) for name in instances}
    for instance in sorted(instances):
        group = f"{run}/instances/{instance}".lstrip("/")
        with xr.open_dataset(path, group=group, engine="h5netcdf") as ds:
            assert "time" in ds.coords and ds.time.dims == ("time",)
            np.testing.assert_array_equal(ds.time.values, time)
            assert ds.time.attrs["units"] == "s"
            for name, array in ds.data_vars.items():
                assert array.dims[0] == "time", (group, name)
                assert not any(d.startswith("phony_dim") for d in array.dims), (group, name)
                declared = fmus[instance].variables[name]
                assert array.attrs["long_name"] == declared.description != "", (group, name)
                if declared.unit:
                    assert array.attrs["units"] == declared.unit, (group, name)
                checked += 1
    return checked


@pytest.mark.parametrize("scenario", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_scenarios_results_open_in_xarray(scenario, shipped_results):
    path = shipped_results(scenario)
    assert sum(check_group(path, run) for run in run_groups(path)) > 0
    with xr.open_dataset(path, engine="h5netcdf") as root:  # the root: time and provenance
        assert "time" in root.coords or run_groups(path) != [""]
        assert root.attrs["format_version"] == 2


def test_fmi3_arrays_have_named_dimensions(c_test_fmu, tmp_path):
    from cosim.master.description import Settings
    from cosim.master.execution import Execution
    from cosim.results.recorder import Recorder, create_results_file

    arrays = c_test_fmu("arrays")
    graph = CouplingGraph()
    graph.add_instance("a", arrays, parameters={"n": 4, "u": [1.0, 2, 3, 4]})
    graph.add_instance("b", arrays, parameters={"n": 4})
    graph.connect("a.y", "b.u")
    graph.validate()
    path = tmp_path / "arrays.h5"
    with create_results_file(path, {}) as file:
        Execution(graph, Settings(0.0, 1.0, 0.25, record={"a": ["grid", "y"], "b": ["u"]})
                  ).run([Recorder(file)])
    with xr.open_dataset(path, group="instances/a", engine="h5netcdf") as ds:
        # grid: Dimension start="2" then the structural parameter n; y: sized by n too
        assert ds.grid.dims == ("time", "grid_dim1", "n") and ds.grid.shape == (5, 2, 4)
        assert ds.y.dims == ("time", "n") and ds.y.attrs["units"] == "m"
        np.testing.assert_array_equal(ds.n.values, [0, 1, 2, 3])
        np.testing.assert_array_equal(ds.y.isel(time=-1).values, [2.0, 4.0, 6.0, 8.0])
    with xr.open_dataset(path, group="instances/b", engine="h5netcdf") as ds:
        assert ds.u.dims == ("time", "n")
    with open_results(path) as res:  # the dimension scales are not recorded variables
        assert sorted(res.variables) == ["a.grid", "a.y", "b.u"]


def test_python_editions_describe_every_variable_as_the_c_editions_do(build_model):
    """The descriptions pythonfmu left empty come from the C model's table at build time."""
    for name in ("generator", "cell", "lead", "organ", "tissue"):
        python, c = read_fmu(build_model(name, python=True)), read_fmu(build_model(name))
        for variable in python.variables.values():
            assert variable.description, (name, variable.name)
            assert variable.description == c.variables[variable.name].description
    oscillator = read_fmu(build_model("oscillator"))
    assert all(v.description for v in oscillator.variables.values())


PULSES = {"generator": {"V_pace_v", "pulse_width_v", "V_pace_a", "pulse_width_a"},
          "lead": {"I_stim", "stim_width"}}


@pytest.mark.parametrize("model", ["generator", "lead"])
def test_the_pulse_outputs_are_discrete_in_every_edition(build_model, model):
    """A pulse is held over the step it starts in: its outputs are declared
    variability="discrete" (so an adaptive or multirate master holds them, never extrapolates)
    by the C, the Python and the FMI 3.0 editions alike, and every other variable's variability
    agrees between them."""
    editions = [read_fmu(build_model(model, python=python, fmi3=fmi3))
                for python, fmi3 in ((False, False), (True, False), (False, True))]
    c = editions[0]
    discrete = {name for name, v in c.variables.items()
                if v.causality == "output" and v.type in ("Real", "Float64")
                and v.variability == "discrete"}
    assert discrete == PULSES[model]
    for edition in editions[1:]:
        for name, variable in c.variables.items():
            if name in edition.variables:
                assert edition.variables[name].variability == variable.variability, name


DOCUMENTED = [REPO / "README.md", REPO / "docs" / "results-format.md"]


def test_the_documented_reader_examples_name_recorded_variables(shipped_results):
    path = shipped_results(REPO / "scenarios" / "vvi_complete_av_block.yaml")
    with open_results(path) as res:
        recorded = set(res.variables)
    for doc in DOCUMENTED:
        text = "\n".join(re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"),
                                     re.S))
        assert "results/flagship.h5" in text, doc
        names = re.findall(r'res(?:ults)?(?:\.unit|\.description)?[\[(]"([\w.]+)"[\])]', text)
        groups = re.findall(r'group="instances/(\w+)"', text)
        assert names, doc
        for name in names:
            assert name in recorded, f"{doc.name} reads '{name}', which the flagship lacks"
        for instance in groups:
            assert any(v.startswith(instance + ".") for v in recorded), (doc.name, instance)


def test_a_wrong_name_gets_did_you_mean(shipped_results):
    path = shipped_results(REPO / "scenarios" / "vvi_complete_av_block.yaml")
    with open_results(path) as res:
        with pytest.raises(KeyError, match=r"did you mean 'myocyte\.V'"):
            res["cell.V"]  # the model's name, not the instance's
        with pytest.raises(KeyError, match=r"did you mean 'heart\.P_ao'"):
            res["heart.Pao"]
