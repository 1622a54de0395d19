"""The runtime system: FMU instances and the one array through which their values flow.

Every value that crosses an FMU boundary or is recorded lives in ``System.signals``, a flat
float64 array whose layout (``Layout``) is computed from the coupling graph alone, so it is the
same on every MPI rank. Instance ``i`` writes its outputs into its own slice
(``Layout.slices[i]``) straight from ``fmi2GetReal``; before a step its inputs are gathered from
the signals of the instances feeding it (``System.gather``), converted to the input's unit. The
instances come from a factory (``cosim.fmi.isolation.make_instance`` unless another is given) and
are used through ``cosim.fmi.instances.InstanceLike`` only.

This module knows nothing about algorithms (``cosim.master.master``), files or MPI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosim.coupling.event_times import EVENT_OUTPUT, announces_events
from cosim.coupling.graph import CouplingGraph
from cosim.fmi.fmu import FLOAT64_TYPES
from cosim.fmi.instances import InstanceFactory, InstanceLike
from cosim.fmi.isolation import isolation_by_instance, make_instance

FEW_INPUTS = 4  # up to this many inputs (without unit conversion) are copied one by one


@dataclass(frozen=True)
class Layout:
    """Where each instance's read variables sit in the signal array (same on every rank)."""

    instances: tuple[str, ...]
    variables: dict[str, tuple[str, ...]]  # instance -> variables read after each step
    slices: dict[str, slice]
    size: int
    shapes: dict[str, dict[str, tuple[int, ...]]]  # instance -> variable -> shape (() scalar)
    offsets: dict[str, dict[str, int]]  # instance -> variable -> first slot
    # instance -> slot of its announced next event time (cosim.coupling.event_times)
    event_slots: dict[str, int]

    def index(self, instance: str, variable: str) -> int:
        """The slot of a scalar variable (of an array's first element, row-major)."""
        return self.offsets[instance][variable]

    def indices(self, instance: str, variable: str) -> range:
        """Every slot of a variable: one for a scalar, one per element (row-major)."""
        start = self.offsets[instance][variable]
        return range(start, start + int(np.prod(self.shapes[instance][variable],
                                                dtype=np.int64)))


def make_layout(graph: CouplingGraph, recorded: Mapping[str, Iterable[str]]) -> Layout:
    """Read connected outputs, recorded variables and announced event times, Float64 ones
    first, in a fixed order; an array takes one slot per element."""
    needed: dict[str, set[str]] = {name: set(recorded.get(name, ())) for name in graph.instances}
    for c in graph.connections():
        needed[c.source].add(c.output)
    announcing = [name for name in graph.instances if announces_events(graph.fmu(name))]
    for name in announcing:
        needed[name].add(EVENT_OUTPUT)
    variables, slices, shapes, offsets, offset = {}, {}, {}, {}, 0
    for name in graph.instances:
        fmu = graph.fmu(name)
        ordered = sorted(needed[name], key=lambda v: (
            fmu.variables[v].type not in FLOAT64_TYPES, fmu.variables[v].value_reference, v))
        variables[name] = tuple(ordered)
        shapes[name] = {v: graph.shape(name, v) for v in ordered}
        start = offset
        offsets[name] = {}
        for v in ordered:
            offsets[name][v] = offset
            offset += int(np.prod(shapes[name][v], dtype=np.int64))
        slices[name] = slice(start, offset)
    return Layout(tuple(graph.instances), variables, slices, offset, shapes, offsets,
                  {name: offsets[name][EVENT_OUTPUT] for name in announcing})


@dataclass
class _Inputs:
    """How one instance's connected inputs are gathered from the signal array."""

    names: tuple[str, ...]
    source_index: np.ndarray
    scale: np.ndarray | None
    shift: np.ndarray | None
    buffer: np.ndarray | None = None


class System:
    """The instances this process runs, bound to the shared signal layout."""

    def __init__(self, graph: CouplingGraph, layout: Layout, local: Iterable[str],
                 factory: InstanceFactory = make_instance):
        self.graph = graph
        self.layout = layout
        self.signals = np.zeros(layout.size)
        self.local = [n for n in layout.instances if n in set(local)]
        isolation = isolation_by_instance(graph)
        self.instances: dict[str, InstanceLike] = {
            name: factory(graph.fmu(name), name, isolation[name], graph.interface(name),
                          graph.solver(name)) for name in self.local}
        self._kept_signals: np.ndarray | None = None  # a rollback's (keep, return_to_kept)
        self._kept_bytes: dict[str, bytes] = {}
        self._keepers: list[tuple] = []
        self.inputs: dict[str, _Inputs] = {}
        self.gatherers: dict[str, Callable[[], None]] = {}  # name -> its gather, after bind
        by_target: dict[str, list] = {}
        for c in graph.connections():
            by_target.setdefault(c.target, []).append(c)
        for name in self.local:
            fmu = graph.fmu(name)
            conns = sorted(by_target.get(name, []), key=lambda c: (
                fmu.variables[c.input].type not in FLOAT64_TYPES, c.input))
            sources = [layout.indices(c.source, c.output) for c in conns]  # arrays: elements
            scale = np.array([c.scale for c, s in zip(conns, sources, strict=True) for _ in s])
            shift = np.array([c.shift for c, s in zip(conns, sources, strict=True) for _ in s])
            identity = bool(np.all(scale == 1.0) and np.all(shift == 0.0))
            self.inputs[name] = _Inputs(
                names=tuple(c.input for c in conns),
                source_index=np.array([i for s in sources for i in s], dtype=np.intp),
                scale=None if identity else scale, shift=None if identity else shift)

    def instantiate(self, name: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Load local instance ``name`` and set its parameters and start values."""
        instance = self.instances[name]
        instance.instantiate()
        if parameters:
            instance.set(parameters)

    def bind(self) -> None:
        """Preallocate the per-step buffers and the gatherers (after instantiation)."""
        for name in self.local:
            inputs = self.inputs[name]
            inputs.buffer = self.instances[name].bind(
                inputs.names, self.layout.variables[name], self.signals[self.layout.slices[name]])
            self.gatherers[name] = self._gatherer(name)

    def gather(self, name: str) -> None:
        """Copy (and convert) the values feeding ``name``'s inputs, then set them."""
        self.gatherers[name]()

    def _gatherer(self, name: str) -> Callable[[], None]:
        """``gather(name)`` as one call without arguments, specialised once.

        A few inputs without unit conversion are copied one by one: ``np.take`` costs about
        1 µs whatever the count, a copy of one value about 0.1 µs.
        """
        inputs, set_inputs = self.inputs[name], self.instances[name].set_inputs
        signals, buffer, index = self.signals, inputs.buffer, inputs.source_index
        if not inputs.names:
            return _nothing
        if inputs.scale is None and len(index) == 1:
            source = int(index[0])

            def copy_one() -> None:
                buffer[0] = signals[source]
                set_inputs()
            return copy_one
        if inputs.scale is None and len(index) <= FEW_INPUTS:
            pairs = tuple(enumerate(index.tolist()))

            def copy_few() -> None:
                for target, source in pairs:
                    buffer[target] = signals[source]
                set_inputs()
            return copy_few
        scale, shift = inputs.scale, inputs.shift

        def take() -> None:
            np.take(signals, index, out=buffer)
            if scale is not None:
                np.multiply(buffer, scale, out=buffer)
                np.add(buffer, shift, out=buffer)
            set_inputs()
        return take

    def snapshot(self) -> tuple[dict[str, bytes], np.ndarray]:
        """This process's part of the system's state: every local instance's serialised FMU
        state (by name) and a copy of the signal array (a checkpoint; a rollback)."""
        states = {name: self.instances[name].serialize_state() for name in self.local}
        return states, self.signals.copy()

    def restore(self, states: Mapping[str, bytes], signals: np.ndarray,
                calling: Callable[[str], None] = lambda name: None) -> None:
        """Put every local instance back into its state of ``states`` (``calling(name)``
        before each) and the signal array to ``signals``: the state ``snapshot`` gave."""
        for name in self.local:
            calling(name)
            self.instances[name].restore_state(states[name])
        self.signals[:] = signals

    def keep(self) -> bool:
        """Keep the state of every local instance and the signal array for a rollback
        (``return_to_kept``): the FMU state kept in place where the instance offers it
        (``Instance.keep_state``: fmi2GetFMUstate into the same memory each time), else its
        bytes. True."""
        if self._kept_signals is None:
            self._kept_signals = np.empty_like(self.signals)
            self._keepers = [(name, getattr(instance, "keep_state", None),
                              getattr(instance, "return_to_kept_state", None))
                             for name, instance in self.instances.items()]
        kept = self._kept_bytes
        for name, keep, _ in self._keepers:
            if keep is not None:
                keep()
            else:
                kept[name] = self.instances[name].serialize_state()
        self._kept_signals[:] = self.signals
        return True

    def return_to_kept(self) -> None:
        """Every local instance and the signal array back to what ``keep`` kept."""
        for name, _, back in self._keepers:
            if back is not None:
                back()
            else:
                self.instances[name].restore_state(self._kept_bytes[name])
        self.signals[:] = self._kept_signals

    def close(self) -> None:
        """Terminate and free every instance, whatever state each is in."""
        for instance in self.instances.values():
            instance.close()


def _nothing() -> None:
    return None
