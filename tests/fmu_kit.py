"""FMUs for the foundation tests: the hand-written C oscillator, variants of its XML, the small
C models of the master tests, a model that fails on purpose, and broken archives;
``CInstance``/``CInstance3``, a library C FMU (FMI 2.0/3.0 edition) driven like the Python
edition's class.

Imported as ``fmu_kit`` (tests/ is on sys.path: tests/conftest.py lives there); not collected
by pytest. ``load_script``/``library_script`` load a Python file (a model script, a build
script) as a fresh module.
Variants reuse the C binary and change only ``modelDescription.xml`` (units, dependencies,
extra variables), which is what the coupling-graph checks read.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent
C_BUILD = TESTS / "fixtures" / "c_oscillator" / "build.py"
C_MODELS_BUILD = TESTS / "fixtures" / "c_models" / "build.py"
MODELS = TESTS.parent / "fmus"


def load_script(path: Path, name: str) -> ModuleType:
    """The Python file ``path`` run as a fresh module called ``name`` (not put in sys.path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def library_script(model: str) -> ModuleType:
    """The pythonfmu script of library model ``model`` (fmus/<model>/cosim_<model>.py)."""
    return load_script(MODELS / model / f"cosim_{model}.py", f"cosim_{model}_under_test")


def build_c_oscillator(dest: Path) -> Path:
    """The C oscillator FMU (``c_oscillator.fmu``) built with gcc into ``dest``."""
    return load_script(C_BUILD, "c_oscillator_build_kit").build_c_oscillator(Path(dest))


def build_c_model(name: str, dest: Path) -> Path:
    """A small C test FMU of tests/fixtures/c_models (mass1, mass2, gain, stopper) built with
    gcc into ``dest``."""
    return load_script(C_MODELS_BUILD, "c_models_build_kit").build_c_model(name, Path(dest))


def rewrite(fmu: Path, dest: Path, edit: Callable[[str], str] | None = None,
            drop: Callable[[str], bool] | None = None) -> Path:
    """A copy of ``fmu`` at ``dest`` with its XML passed through ``edit``, members dropped."""
    with zipfile.ZipFile(fmu) as source, zipfile.ZipFile(dest, "w") as target:
        for info in source.infolist():
            if drop and drop(info.filename):
                continue
            data = source.read(info)
            if info.filename == "modelDescription.xml" and edit:
                data = edit(data.decode()).encode()
            target.writestr(info.filename, data)
    return dest


def unit_variant(c_fmu: Path, dest: Path, unit: str = "mm") -> Path:
    """The C oscillator declaring ``x``, ``x_other`` and ``x0`` in ``unit`` (a length)."""
    factor = {"mm": "0.001", "cm": "0.01"}[unit]

    def edit(xml: str) -> str:
        xml = xml.replace('<Real unit="m"', f'<Real unit="{unit}"')
        return xml.replace("</UnitDefinitions>", f'  <Unit name="{unit}">\n      <BaseUnit '
                           f'm="1" factor="{factor}"/>\n    </Unit>\n  </UnitDefinitions>')
    return rewrite(c_fmu, dest, edit)


def feedthrough_variant(c_fmu: Path, dest: Path) -> Path:
    """The C oscillator declaring that ``x`` depends directly on ``x_other``."""
    def edit(xml: str) -> str:
        return xml.replace('<Unknown index="8" dependencies="" dependenciesKind=""/>',
                           '<Unknown index="8" dependencies="7" dependenciesKind="dependent"/>')
    return rewrite(c_fmu, dest, edit)


def typed_variant(c_fmu: Path, dest: Path) -> Path:
    """The C oscillator with an Integer output ``count`` and a Boolean input ``enable``."""
    extra = """
    <ScalarVariable name="enable" valueReference="9" causality="input" variability="discrete">
      <Boolean start="true"/>
    </ScalarVariable>
    <ScalarVariable name="count" valueReference="10" causality="output" variability="discrete"
      initial="exact">
      <Integer start="0"/>
    </ScalarVariable>
  </ModelVariables>"""

    def edit(xml: str) -> str:
        xml = xml.replace("</ModelVariables>", extra.lstrip("\n"))
        return xml.replace("    </Outputs>", '      <Unknown index="11" dependencies="" '
                           'dependenciesKind=""/>\n    </Outputs>')
    return rewrite(c_fmu, dest, edit)


FAILING_MODEL = '''
"""Counts time and raises in do_step once the step would pass ``fail_after`` seconds."""

from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Real


class FailingModel(Fmi2Slave):
    UNITS = {"y": "s", "fail_after": "s", "u": "m"}
    OUTPUT_DEPENDENCIES = {"y": []}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fail_after = 0.5
        self.u = 0.0
        self.y = 0.0
        self.register_variable(Real("fail_after", causality=Fmi2Causality.parameter,
                                    variability=Fmi2Variability.fixed))
        self.register_variable(Real("u", causality=Fmi2Causality.input))
        self.register_variable(Real("y", causality=Fmi2Causality.output,
                                    initial=Fmi2Initial.calculated))

    def do_step(self, current_time, step_size):
        if current_time + step_size > self.fail_after + 1e-9:
            raise RuntimeError("the failing model broke on purpose")
        self.y = current_time + step_size
        return True
'''


def build_failing_model(dest: Path) -> Path:
    """``FailingModel.fmu``: raises in ``do_step`` once t > ``fail_after`` (0.5 s).

    Built in a subprocess: a pythonfmu FMU built in the host process and then raising in
    ``do_step`` crashes that process at exit (seen with pythonfmu 0.7.0).
    """
    return _build_script_model(dest, FAILING_MODEL, "cosim_failing_model_kit.py")


def _build_script_model(dest: Path, text: str, name: str) -> Path:
    dest = Path(dest)
    source = dest / f"{Path(name).stem}_src"
    source.mkdir(parents=True, exist_ok=True)
    script = source / name
    script.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    code = ("import sys; from pathlib import Path; from cosim.library.build import build_fmu; "
            "print(build_fmu(Path(sys.argv[1]), Path(sys.argv[2])))")
    result = subprocess.run([sys.executable, "-c", code, str(script), str(dest)],
                            capture_output=True, text=True, check=True)
    return Path(result.stdout.strip().splitlines()[-1])


SABOTEUR_MODEL = '''
"""An FMU written as a hostile or broken partner would: at time ``at`` its step does ``action``.

0 nothing, 1 segmentation fault, 2 abort(), 3 exit(3), 4 never returns, 5 allocates memory
until it fails, 6 rewrites cosim's criteria in the host's Python so that every one passes,
7 (in a child process of cosim.fmi.isolation) writes a forged reply to its parent, 8 outputs as
``y`` how many HDF5 files its process holds open (the host's results file, in cosim's process).
"""

import ctypes
import dataclasses
import os
import sys
import time

from pythonfmu import Fmi2Causality, Fmi2Slave, Fmi2Variability, Integer, Real


def forge_verdict():
    criteria = sys.modules.get("cosim.scenario.criteria")
    if criteria is None:
        return
    honest = criteria.evaluate

    def forged(*args, **kwargs):
        return dataclasses.replace(honest(*args, **kwargs), passed=True)

    for name, module in list(sys.modules.items()):
        if name.startswith("cosim") and getattr(module, "evaluate", None) is honest:
            module.evaluate = forged


def open_hdf5_files():
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if ".h5" in target:
            found.append(target)
    return found


class Saboteur(Fmi2Slave):
    UNITS = {"at": "s", "y": "s"}
    OUTPUT_DEPENDENCIES = {"y": []}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.action = 0
        self.at = 0.1
        self.u = 0.0
        self.y = 0.0
        self.register_variable(Integer("action", causality=Fmi2Causality.parameter,
                                       variability=Fmi2Variability.fixed))
        self.register_variable(Real("at", causality=Fmi2Causality.parameter,
                                    variability=Fmi2Variability.fixed))
        self.register_variable(Real("u", causality=Fmi2Causality.input))
        self.register_variable(Real("y", causality=Fmi2Causality.output))

    def do_step(self, current_time, step_size):
        if current_time >= self.at - 1e-9:
            print(f"saboteur: action {self.action} at t = {current_time:g}", flush=True)
            if self.action == 1:
                ctypes.string_at(0)
            elif self.action == 2:
                os.abort()
            elif self.action == 3:
                os._exit(3)
            elif self.action == 4:
                while True:
                    time.sleep(1)
            elif self.action == 5:
                hoard = []
                while True:
                    hoard.append(bytearray(50_000_000))
            elif self.action == 6:
                forge_verdict()
            elif self.action == 7:
                reply_fd = int(sys.argv[2])  # python -m cosim.fmi.isolation_child CMD REPLY …
                os.write(reply_fd, (0).to_bytes(1, "little") + (2**31).to_bytes(4, "little"))
                time.sleep(5)
            elif self.action == 8:
                self.y = float(len(open_hdf5_files()))
                return True
        self.y = current_time + step_size
        return True
'''


def build_saboteur(dest: Path) -> Path:
    """``Saboteur.fmu``: its step crashes, hangs, hoards memory or forges the verdict
    (parameter ``action``) from time ``at`` on. Built in a subprocess, as ``FailingModel``."""
    return _build_script_model(dest, SABOTEUR_MODEL, "cosim_saboteur_kit.py")


def once_per_process_variant(c_fmu: Path, dest: Path) -> Path:
    """The C oscillator declaring ``canBeInstantiatedOnlyOncePerProcess="true"``."""
    return rewrite(c_fmu, dest, lambda xml: xml.replace(
        'canBeInstantiatedOnlyOncePerProcess="false"',
        'canBeInstantiatedOnlyOncePerProcess="true"'))


@cache
def _opened(fmu: Path):
    from fmpy import extract, read_model_description

    description = read_model_description(str(fmu))
    variables = {v.name: (v.valueReference, v.type) for v in description.modelVariables}
    return description, extract(str(fmu)), variables


class CInstance:
    """An instance of a library C FMU with the interface of the Python edition's class:
    parameters and inputs are set as attributes, ``exit_initialization_mode()`` (after an
    optional ``setup_experiment(start)``), ``do_step(t, h)``, outputs read as attributes.

    Each attribute access is one fmi2Get/Set call through fmpy."""

    def __init__(self, fmu: Path, name: str = "c"):
        from fmpy.fmi2 import FMU2Slave

        description, unzipped, variables = _opened(Path(fmu))
        slave = FMU2Slave(guid=description.guid, unzipDirectory=unzipped,
                          modelIdentifier=description.coSimulation.modelIdentifier,
                          instanceName=name)
        slave.instantiate()
        object.__setattr__(self, "_slave", slave)
        object.__setattr__(self, "_variables", variables)
        object.__setattr__(self, "_started", False)

    def setup_experiment(self, start_time: float, stop_time=None, tolerance=None) -> None:
        self._slave.setupExperiment(startTime=start_time)
        object.__setattr__(self, "_started", True)

    def exit_initialization_mode(self) -> None:
        if not self._started:
            self.setup_experiment(0.0)
        self._slave.enterInitializationMode()
        self._slave.exitInitializationMode()

    def do_step(self, current_time: float, step_size: float) -> bool:
        self._slave.doStep(current_time, step_size)
        return True

    def free(self) -> None:
        self._slave.freeInstance()

    def __getattr__(self, name: str):
        if name not in self._variables:
            raise AttributeError(name)
        reference, kind = self._variables[name]
        if kind == "Real":
            return self._slave.getReal([reference])[0]
        if kind == "String":
            return self._slave.getString([reference])[0].decode()
        if kind == "Boolean":
            return self._slave.getBoolean([reference])[0]
        return self._slave.getInteger([reference])[0]

    def __setattr__(self, name: str, value) -> None:
        if name not in self._variables:
            raise AttributeError(f"the FMU has no variable '{name}'")
        reference, kind = self._variables[name]
        if kind == "Real":
            self._slave.setReal([reference], [float(value)])
        elif kind == "String":
            self._slave.setString([reference], [str(value)])
        elif kind == "Boolean":
            self._slave.setBoolean([reference], [bool(value)])
        else:
            self._slave.setInteger([reference], [int(value)])



class CInstance3:
    """The FMI 3.0 edition of a library C FMU with the interface of ``CInstance``, through
    fmpy's ``FMU3Slave``: a structural parameter set before initialisation is set in
    configuration mode; an array output reads as a numpy array of its shape."""

    def __init__(self, fmu: Path, name: str = "c3"):
        from fmpy.fmi3 import FMU3Slave

        description, unzipped, _ = _opened(Path(fmu))
        slave = FMU3Slave(guid=description.guid, unzipDirectory=unzipped,
                          modelIdentifier=description.coSimulation.modelIdentifier,
                          instanceName=name)
        log: list[str] = []  # what the FMU logged
        slave.instantiate(logMessage=lambda env, status, category, message:
                          log.append(message.decode()))
        variables = {v.name: v for v in description.modelVariables}
        for name_, attribute in (("_slave", slave), ("_variables", variables),
                                 ("_started", False), ("_log", log)):
            object.__setattr__(self, name_, attribute)

    def setup_experiment(self, start_time: float, stop_time=None, tolerance=None) -> None:
        object.__setattr__(self, "_started", start_time)

    def exit_initialization_mode(self) -> None:
        self._slave.enterInitializationMode(startTime=self._started or 0.0)
        self._slave.exitInitializationMode()

    def do_step(self, current_time: float, step_size: float) -> bool:
        self._slave.doStep(current_time, step_size)
        return True

    def free(self) -> None:
        self._slave.freeInstance()

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(getattr(self, d.variable.name)) if d.variable is not None
                     else int(d.start) for d in self._variables[name].dimensions)

    def __getattr__(self, name: str):
        import numpy as np

        if name not in self._variables:
            raise AttributeError(name)
        variable = self._variables[name]
        getter = getattr(self._slave, f"get{variable.type}")
        if variable.dimensions:
            shape = self.shape(name)
            return np.array(getter([variable.valueReference], int(np.prod(shape)))
                            ).reshape(shape)
        value = getter([variable.valueReference])[0]
        return value.decode() if variable.type == "String" else value

    def __setattr__(self, name: str, value) -> None:
        if name not in self._variables:
            raise AttributeError(f"the FMU has no variable '{name}'")
        variable = self._variables[name]
        kind = variable.type
        convert = {"Float64": float, "String": str,
                   "Boolean": bool}.get(kind, int)
        setter = getattr(self._slave, f"set{kind}")
        if variable.causality == "structuralParameter":
            self._slave.enterConfigurationMode()
            setter([variable.valueReference], [convert(value)])
            self._slave.exitConfigurationMode()
        else:
            setter([variable.valueReference], [convert(value)])


SLOW_MODEL = '''
"""Takes ``delay`` seconds of wall time per step (sleeping: no CPU); ``y`` is the time. At
``kill_at`` (s, if > 0) it kills its own process with SIGKILL, as the OOM killer would."""

import os
import signal
import time

from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Real


class SlowModel(Fmi2Slave):
    UNITS = {"y": "s", "delay": "s", "kill_at": "s"}
    OUTPUT_DEPENDENCIES = {"y": []}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.delay = 0.0005
        self.kill_at = 0.0
        self.y = 0.0
        for name in ("delay", "kill_at"):
            self.register_variable(Real(name, causality=Fmi2Causality.parameter,
                                        variability=Fmi2Variability.fixed))
        self.register_variable(Real("y", causality=Fmi2Causality.output,
                                    initial=Fmi2Initial.calculated))

    def do_step(self, current_time, step_size):
        if 0 < self.kill_at <= current_time + step_size:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.delay)
        self.y = current_time + step_size
        return True
'''


def build_slow_model(dest: Path) -> Path:
    """``SlowModel.fmu``: sleeps ``delay`` s per step (a writer slow enough to watch), kills
    its process at ``kill_at`` s. Built in a subprocess like ``build_failing_model``."""
    return _build_script_model(dest, SLOW_MODEL, "cosim_slow_model_kit.py")
