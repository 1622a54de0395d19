"""Splitting a coupling graph over MPI ranks: balance the per-instance cost, cut few edges.

Deterministic (every rank computes the same partition): instances are laid out in
breadth-first order from the first declared instance, so coupled instances sit side by side;
the sequence is cut into ``parts`` contiguous pieces of near-equal total cost; then a
refinement pass moves single instances to a neighbouring part when that removes cut edges
without making the heaviest part heavier than ``tolerance`` above the ideal.
"""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx

from cosim.graph import CouplingGraph


def partition(graph: CouplingGraph, parts: int, tolerance: float = 0.05,
              cost: Mapping[str, float] | None = None) -> dict[str, int]:
    """``{instance: part}`` with parts numbered 0 … parts-1 (some may be empty if few).

    ``cost``: per-instance cost (e.g. measured seconds); default: the costs declared in the graph.
    """
    names = graph.instances
    if cost is None:
        cost = {n: float(graph.graph.nodes[n]["cost"]) for n in names}
    else:  # a measured zero still counts a little
        cost = {n: max(float(cost[n]), 1e-9) for n in names}
    if parts <= 1 or len(names) <= 1:
        return dict.fromkeys(names, 0)
    sequence = _bfs_sequence(graph)
    owner = _contiguous_split(sequence, cost, parts)
    return _refine(graph, owner, cost, parts, tolerance)


def cut_edges(graph: CouplingGraph, owner: dict[str, int]) -> int:
    return sum(1 for c in graph.connections() if owner[c.source] != owner[c.target])


def loads(owner: dict[str, int], cost: dict[str, float], parts: int) -> list[float]:
    out = [0.0] * parts
    for name, part in owner.items():
        out[part] += cost[name]
    return out


def _bfs_sequence(graph: CouplingGraph) -> list[str]:
    undirected = nx.Graph(graph.graph)
    order = {n: graph.graph.nodes[n]["order"] for n in graph.instances}
    sequence: list[str] = []
    seen: set[str] = set()
    for root in graph.instances:
        if root in seen:
            continue
        for node in _ordered_bfs(undirected, root, order):
            if node not in seen:
                seen.add(node)
                sequence.append(node)
    return sequence


def _ordered_bfs(graph: nx.Graph, root: str, order: dict[str, int]) -> list[str]:
    out, frontier, seen = [root], [root], {root}
    while frontier:
        nxt = []
        for node in frontier:
            for neighbour in sorted(graph.neighbors(node), key=order.get):
                if neighbour not in seen:
                    seen.add(neighbour)
                    out.append(neighbour)
                    nxt.append(neighbour)
        frontier = nxt
    return out


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


def _refine(graph: CouplingGraph, owner: dict[str, int], cost: dict[str, float], parts: int,
            tolerance: float) -> dict[str, int]:
    limit = max(sum(cost.values()) / parts * (1 + tolerance), max(cost.values()))
    undirected = nx.Graph(graph.graph)
    load = loads(owner, cost, parts)
    for _ in range(4):
        moved = False
        for name in graph.instances:
            here = owner[name]
            links: dict[int, int] = {}
            for neighbour in undirected.neighbors(name):
                weight = graph.graph.number_of_edges(name, neighbour) + \
                    graph.graph.number_of_edges(neighbour, name)
                links[owner[neighbour]] = links.get(owner[neighbour], 0) + weight
            best, gain = here, 0
            for part, count in sorted(links.items()):
                delta = count - links.get(here, 0)
                if part != here and delta > gain and load[part] + cost[name] <= limit \
                        and sum(1 for v in owner.values() if v == here) > 1:
                    best, gain = part, delta
            if best != here:
                load[here] -= cost[name]
                load[best] += cost[name]
                owner[name] = best
                moved = True
        if not moved:
            break
    return owner
