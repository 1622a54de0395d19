"""Where a value crosses ranks: after each stage of the plan, ``Exchange`` sends exactly the
signals a remote instance reads (Isend/Irecv, the plan made once), receives what this rank's
instances read, and agrees on what every rank must decide alike (``maximum``: the adaptive
master's step; the announced event times go to every rank)."""

from __future__ import annotations

import time

import numpy as np

from cosim.coupling.graph import CouplingGraph
from cosim.coupling.system import System
from cosim.master.master import Plan


class Exchange:
    """Moves the signals that cross ranks after each stage of the plan."""

    def __init__(self, comm, graph: CouplingGraph, plan: Plan, system: System,
                 owner: dict[str, int]):
        from mpi4py import MPI

        self.comm = comm
        self.signals = system.signals
        self._waitall = MPI.Request.Waitall
        self._max = MPI.MAX
        me = comm.Get_rank()
        stages = plan.stages
        members = [set(stage.instances) for stage in stages]
        crossing: dict[tuple[int, int, int], set[int]] = {}
        for c in graph.connections():
            src, dst = owner[c.source], owner[c.target]
            if src == dst:
                continue
            for stage, names in enumerate(members):  # every stage that reads c's output
                if c.source in names:
                    key = (stage, src, dst)
                    crossing.setdefault(key, set()).update(
                        system.layout.indices(c.source, c.output))  # every element of an array
        for name, slot in system.layout.event_slots.items():  # every rank steps to the same
            src = owner[name]  # announced events (cosim.coupling.event_times)
            for dst in set(range(comm.Get_size())) - {src}:  # a rank owning none too
                for stage, names in enumerate(members):
                    if name in names:
                        crossing.setdefault((stage, src, dst), set()).add(slot)
        self.sends: list[list] = [[] for _ in stages]
        self.recvs: list[list] = [[] for _ in stages]
        for (stage, src, dst), indices in sorted(crossing.items()):
            index = np.array(sorted(indices), dtype=np.intp)
            if src == me:
                self.sends[stage].append((dst, index, np.empty(len(index))))
            elif dst == me:
                self.recvs[stage].append((src, index, np.empty(len(index))))
        steps = range(len(stages) - len(plan.step), len(stages))
        self.values_per_step = sum(len(i) for k in steps for _, i, _ in self.sends[k])
        self.seconds = 0.0  # spent here: sending, and waiting for the other ranks' values

    def __call__(self, stage: int) -> None:
        sends, recvs = self.sends[stage], self.recvs[stage]
        if not sends and not recvs:
            return
        started = time.perf_counter()
        comm, signals = self.comm, self.signals
        requests = [comm.Irecv(buffer, source=peer, tag=stage) for peer, _, buffer in recvs]
        for peer, index, buffer in sends:
            np.take(signals, index, out=buffer)
            requests.append(comm.Isend(buffer, dest=peer, tag=stage))
        self._waitall(requests)
        for _, index, buffer in recvs:
            signals[index] = buffer
        self.seconds += time.perf_counter() - started

    def maximum(self, values: np.ndarray) -> np.ndarray:
        """Each of ``values``, the largest over the ranks (a master's decision every rank takes
        alike: cosim.master.adaptive)."""
        started = time.perf_counter()
        out = np.empty_like(values)
        self.comm.Allreduce(np.ascontiguousarray(values), out, op=self._max)
        self.seconds += time.perf_counter() - started
        return out


def exchanging(comm, graph: CouplingGraph, owner: dict[str, int]):
    """The exchange factory of an ``Execution`` whose instances ``owner`` spreads over the
    ranks of ``comm``."""
    return lambda plan, system: Exchange(comm, graph, plan, system, owner)
