"""The code base's form: ruff clean (the style the project agreed on, checked on every CI run),
and modules that import each other without a cycle."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean():
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e .[test])")
    done = subprocess.run([str(ruff), "check", "cosim", "tests", "fmus", "benchmarks"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def imports() -> nx.DiGraph:
    """Module → cosim module it imports, at the top or inside a function (a deferred import
    is still a dependency); imports for type checkers only (``if TYPE_CHECKING:``) left out."""
    package = ROOT / "cosim"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in package.rglob("*.py")}
    graph = nx.DiGraph()
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph.add_node(name)
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t if t in modules else node.module for t in targets]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name
                                 and t != "cosim")
    return graph


def _runtime_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_nodes_of(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _runtime_nodes_of(node: ast.AST):
    yield node
    yield from _runtime_nodes(node)


def test_modules_import_each_other_without_a_cycle():
    """Each module builds on the ones it imports; none of those imports it back (a cycle
    means two concepts that cannot be understood, tested or replaced apart: the pipeline
    and the MPI strategy were one, through deferred imports both ways)."""
    graph = imports()
    assert {"cosim.running.pipeline", "cosim.running.mpi", "cosim.running.strategies"} <= set(graph)
    # the scan sees imports
    assert graph.has_edge("cosim.running.pipeline", "cosim.running.strategies")
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_only_the_coupling_graph_sees_its_networkx_graph():
    """Other modules read a ``CouplingGraph`` through its methods (instances, fmu, parameters,
    scale, cost, feeding, connections), never through the networkx graph it keeps."""
    import re

    reaching = re.compile(r"\bgraph\.graph\b")
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted((ROOT / "cosim").rglob("*.py")) if path.name != "graph.py"
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if reaching.search(line)]
    assert not found, "\n".join(found)


FLOORS = ["errors", "launcher", "fmi", "library", "coupling", "master", "scenario", "results",
          "running", "twins"]  # bottom up; above them: cli, describe (and the package itself)


def floor(module: str) -> int:
    """The floor of ``cosim.<folder>.<module>`` or ``cosim.<module>`` (its folder's place in
    ``FLOORS``; the bottom utilities errors and launcher share floor 0)."""
    part = (module.split(".") + ["cosim"])[1]
    if part in ("errors", "launcher"):
        return 0
    return FLOORS.index(part) - 1 if part in FLOORS else len(FLOORS)


def test_each_folder_imports_only_the_floors_below_it():
    """The folders are the layers (docs/architecture.md): fmi → library → coupling → master →
    scenario → results → running → cli. A module importing from a floor above its own ties a
    lower concept to a higher one (a master that knows HDF5, a scenario that knows MPI)."""
    graph = imports()
    upward = [f"{a} -> {b}" for a, b in graph.edges if floor(b) > floor(a)]
    assert not upward, "imports from a floor above: " + "; ".join(sorted(upward))
