"""Splitting a coupling graph over MPI ranks: balance the per-instance cost, cut few edges.

Balance comes first: every step waits for the busiest rank, while a cut connection only adds a
value to the one message per pair of ranks and step. Deterministic (every rank computes the
same partition from the same costs):

1. instances are laid out in breadth-first order from the first declared instance, so coupled
   instances sit side by side, and the sequence is cut into ``parts`` contiguous pieces of
   near-equal total cost;
2. balancing: while moving one instance out of the heaviest part, or swapping it with a
   cheaper one, makes the heaviest part lighter, the best such change is made — first along
   cut connections (to a neighbour's part, or with that neighbour), so parts stay compact,
   else with the lightest part;
3. refinement: single instances move to a part they are coupled with when that removes cut
   connections and no part becomes heavier than the heaviest one already is.

With measured costs, ``keep_whole_if_cheaper`` then weighs the split against what its
exchanges cost: a small, tightly coupled system (the adaptive flagship: five FMUs in one
Gauss-Seidel loop, one exchange per level crossing ranks and one agreement per attempted
step) loses more waiting for the exchanges than the ranks save it in work, and is kept on one
rank.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from cosim.coupling.graph import CouplingGraph

STEP_GAIN = 0.002  # a balancing change must lighten the heaviest part by this much of the ideal


def partition(graph: CouplingGraph, parts: int,
              cost: Mapping[str, float] | None = None) -> dict[str, int]:
    """``{instance: part}`` with parts numbered 0 … parts-1 (some may be empty if few).

    ``cost``: per-instance cost (e.g. measured seconds); default: the costs declared in the graph.
    """
    names = graph.instances
    if cost is None:
        cost = {n: float(graph.cost(n)) for n in names}
    else:  # a measured zero still counts a little
        cost = {n: max(float(cost[n]), 1e-9) for n in names}
    if parts <= 1 or len(names) <= 1:
        return dict.fromkeys(names, 0)
    links = _links(graph)
    owner = _contiguous_split(_bfs_sequence(graph, links), cost, parts)
    owner = _balance(owner, cost, parts, links)
    return _refine(graph.instances, owner, cost, parts, links)


def cut_edges(graph: CouplingGraph, owner: dict[str, int]) -> int:
    return sum(1 for c in graph.connections() if owner[c.source] != owner[c.target])


def loads(owner: dict[str, int], cost: Mapping[str, float], parts: int) -> list[float]:
    out = [0.0] * parts
    for name, part in owner.items():
        out[part] += cost[name]
    return out


def _links(graph: CouplingGraph) -> dict[str, dict[str, int]]:
    """``{instance: {neighbour: connections between them, either way}}``."""
    out: dict[str, dict[str, int]] = {n: {} for n in graph.instances}
    for c in graph.connections():
        if c.source != c.target:
            out[c.source][c.target] = out[c.source].get(c.target, 0) + 1
            out[c.target][c.source] = out[c.target].get(c.source, 0) + 1
    return out


def _cut_change(name: str, to: int, owner: dict[str, int], links: dict[str, dict[str, int]],
                ignore: str | None = None) -> int:
    """How many more connections are cut if ``name`` moves to part ``to``."""
    here = owner[name]
    change = 0
    for neighbour, count in links[name].items():
        if neighbour == ignore:
            continue
        change += count * ((owner[neighbour] != to) - (owner[neighbour] != here))
    return change


def _bfs_sequence(graph: CouplingGraph, links: dict[str, dict[str, int]]) -> list[str]:
    """Instances in breadth-first order over the connections (either way), each component from
    its first declared instance, neighbours in declaration order."""
    order = {n: i for i, n in enumerate(graph.instances)}
    sequence: list[str] = []
    seen: set[str] = set()
    for root in graph.instances:
        if root in seen:
            continue
        seen.add(root)
        sequence.append(root)
        frontier = [root]
        while frontier:
            nxt = []
            for node in frontier:
                for neighbour in sorted(links[node], key=order.get):
                    if neighbour not in seen:
                        seen.add(neighbour)
                        sequence.append(neighbour)
                        nxt.append(neighbour)
            frontier = nxt
    return sequence


def _contiguous_split(sequence: list[str], cost: dict[str, float], parts: int
                      ) -> dict[str, int]:
    total = sum(cost[n] for n in sequence)
    owner, acc, part = {}, 0.0, 0
    for index, name in enumerate(sequence):
        remaining_items = len(sequence) - index
        remaining_parts = parts - part
        # move on when this part has its share, or when later parts would go empty
        if part < parts - 1 and (acc + cost[name] / 2 > total * (part + 1) / parts
                                 and acc > total * part / parts
                                 or remaining_items < remaining_parts):
            part += 1
        owner[name] = part
        acc += cost[name]
    return owner


def _balance(owner: dict[str, int], cost: dict[str, float], parts: int,
             links: dict[str, dict[str, int]]) -> dict[str, int]:
    """Lighten the heaviest part, one move or swap at a time, while that gains at least
    ``STEP_GAIN`` of the ideal load. Changes along a cut connection (an instance to its
    neighbour's part, or swapped with that neighbour) come first, so parts stay compact; only
    when none helps is an instance moved to, or swapped with one of, the lightest part."""
    owner = dict(owner)
    load = loads(owner, cost, parts)
    members = [sorted((cost[n], n) for n in owner if owner[n] == p) for p in range(parts)]
    gain = STEP_GAIN * sum(load) / parts
    for _ in range(4 * len(owner)):
        heavy = max(range(parts), key=lambda p: (load[p], -p))
        if len(members[heavy]) == 1:
            break  # one instance: nothing to gain
        best = _best_change(heavy, _along_cuts(heavy, members, owner, links), owner, load,
                            cost, links)
        if best is None or best[0] > load[heavy] - gain:
            light = min(range(parts), key=lambda p: (load[p], p))
            best = _best_change(heavy, _with_part(heavy, light, members, load), owner, load,
                                cost, links)
        if best is None or best[0] > load[heavy] - gain:
            break
        _, _, name, to, other = best
        _move(name, to, owner, members, load, cost)
        if other is not None:
            _move(other, heavy, owner, members, load, cost)
    return owner


def _along_cuts(heavy: int, members: list[list[tuple[float, str]]], owner: dict[str, int],
                links: dict[str, dict[str, int]]):
    """(name, to, swap partner or None) for each cut connection leaving the heavy part."""
    for _, name in members[heavy]:
        for neighbour in links[name]:
            to = owner[neighbour]
            if to != heavy:
                yield name, to, None
                yield name, to, neighbour


def _with_part(heavy: int, light: int, members: list[list[tuple[float, str]]],
               load: list[float]):
    """(name, light, partner or None): moves to the lightest part, and for each the swap whose
    partner brings the two loads closest together."""
    for weight, name in members[heavy]:
        yield name, light, None
        wanted = weight - (load[heavy] - load[light]) / 2
        at = bisect.bisect_left(members[light], (wanted, ""))
        for _, other in members[light][max(at - 1, 0):at + 1]:
            yield name, light, other


def _best_change(heavy: int, changes, owner: dict[str, int], load: list[float],
                 cost: dict[str, float], links: dict[str, dict[str, int]]):
    """The change that leaves the lower maximum of the two parts (then: fewer cuts), as
    (that maximum, cut change, name, to, partner)."""
    best = None
    for name, to, other in changes:
        delta = cost[name] - (cost[other] if other is not None else 0.0)
        if delta <= 0:
            continue
        if other is None:
            cut = _cut_change(name, to, owner, links)
        else:
            cut = (_cut_change(name, to, owner, links, ignore=other)
                   + _cut_change(other, heavy, owner, links, ignore=name))
        option = (max(load[heavy] - delta, load[to] + delta), cut, name, to, other)
        if best is None or option[:2] < best[:2]:
            best = option
    return best


def _move(name: str, to: int, owner: dict[str, int], members: list[list[tuple[float, str]]],
          load: list[float], cost: dict[str, float]) -> None:
    here = owner[name]
    members[here].remove((cost[name], name))
    bisect.insort(members[to], (cost[name], name))
    load[here] -= cost[name]
    load[to] += cost[name]
    owner[name] = to


def _refine(names: list[str], owner: dict[str, int], cost: dict[str, float], parts: int,
            links: dict[str, dict[str, int]]) -> dict[str, int]:
    """Move single instances next to their neighbours where that cuts fewer connections and
    leaves the heaviest part no heavier."""
    load = loads(owner, cost, parts)
    limit = max(load) * (1 + 1e-9)
    members = [sorted((cost[n], n) for n in names if owner[n] == p) for p in range(parts)]
    for _ in range(4):
        moved = False
        for name in names:
            here = owner[name]
            if len(members[here]) == 1:
                continue
            best, gain = here, 0
            for part in sorted({owner[n] for n in links[name]} - {here}):
                change = _cut_change(name, part, owner, links)
                if -change > gain and load[part] + cost[name] <= limit:
                    best, gain = part, -change
            if best != here:
                _move(name, best, owner, members, load, cost)
                moved = True
        if not moved:
            break
    return owner


def keep_whole_if_cheaper(graph: CouplingGraph, owner: dict[str, int],
                          cost: Mapping[str, float], parts: int,
                          exchange_seconds: float) -> dict[str, int]:
    """``owner``, or, where its exchanges cost more than the ranks save, each connected
    component of the graph whole on one part (largest first onto the lightest part).

    ``cost``: seconds each instance's work took over some steps; ``exchange_seconds``: the
    least any part spent exchanging and waiting over the same steps (a pilot's split). Saved
    by the split: the total work less the heaviest part's (what one process would do more).
    Nothing crosses parts between components, so keeping them whole costs no exchange; a split
    that cuts no connection is kept as it is.
    """
    saved = sum(cost.values()) - max(loads(owner, cost, parts))
    if exchange_seconds < saved or cut_edges(graph, owner) == 0:
        return owner
    links = _links(graph)
    components: list[list[str]] = []
    seen: set[str] = set()
    for name in _bfs_sequence(graph, links):
        if name not in seen:
            component = _component(name, links)
            seen.update(component)
            components.append([n for n in graph.instances if n in component])
    components.sort(key=lambda c: -sum(cost[n] for n in c))  # stable: declaration order
    load = [0.0] * parts
    whole: dict[str, int] = {}
    for component in components:
        part = min(range(parts), key=lambda p: (load[p], p))
        load[part] += sum(cost[n] for n in component)
        whole.update(dict.fromkeys(component, part))
    return {name: whole[name] for name in graph.instances}


def _component(root: str, links: dict[str, dict[str, int]]) -> set[str]:
    found, frontier = {root}, [root]
    while frontier:
        frontier = [n for node in frontier for n in links[node] if n not in found]
        found.update(frontier)
    return found
