"""The dependency direction (docs/architecture.md) and no import cycles.

`sim.cli -> sim.experiments -> sim.engine -> agents -> protocols -> protocols.margin`; `sim.analysis` and
`sim.report` read results and never drive a run; `scenarios` holds data and the schema and never imports `sim`.
Every module's imports are read with `ast` (including imports inside functions and
`importlib.import_module("...")` with a literal name), so nothing is imported to check them.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
NS = "defistress"
#: folder in the repository -> installed package
FOLDERS = {
    "defistress": NS,
    "sim": f"{NS}.sim",
    "agents": f"{NS}.agents",
    "protocols": f"{NS}.protocols",
    "scenarios": f"{NS}.scenarios",
}
TOPS = ("protocols", "agents", "sim", "scenarios")
SIM_ROOMS = ("engine", "experiments", "analysis", "report", "cli")
#: third-party packages protocols.margin may use (house rules); the standard library is always allowed
MARGIN_THIRD_PARTY = {"numpy", "scipy", "pandas"}
#: a string that names one of our modules (e.g. in a tuple of modules a registry imports with importlib)
MODULE_STRING = re.compile(r"defistress(\.[a-z_][a-z0-9_]*)+")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of everything the module at `path` imports (its file, or `source`)."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
        ):
            out.append((node.lineno, node.args[0].value))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and MODULE_STRING.fullmatch(node.value)
        ):
            out.append((node.lineno, node.value))  # a module named in data, imported dynamically (a registry)
    return out


def layer(name: str) -> str:
    """'protocols.margin', 'protocols', 'agents', 'scenarios', 'sim.<room>' or '' for what is not ours."""
    parts = name.split(".")
    if parts[0] != NS or len(parts) < 2:
        return ""
    if parts[1] == "protocols" and len(parts) > 2 and parts[2] == "margin":
        return "protocols.margin"
    if parts[1] == "sim" and len(parts) > 2 and parts[2] in SIM_ROOMS:
        return f"sim.{parts[2]}"
    return parts[1]


def test_every_layer_has_modules():
    for folder in TOPS + ("protocols/margin",) + tuple(f"sim/{r}" for r in SIM_ROOMS):
        assert modules(folder), folder


def test_no_module_sits_loose_in_sim():
    assert [p.name for p in (ROOT / "sim").glob("*.py")] == ["__init__.py"]


def test_the_import_reader_sees_absolute_relative_lazy_and_dynamic_imports():
    src = (
        "import numpy as np\nfrom . import ledger\nfrom .margin import black76\n"
        "def f():\n    from defistress.sim.engine.model import StressModel\n"
        "    importlib.import_module('defistress.agents.tx')\n"
    )
    names = {n for _, n in imports_of(ROOT / "protocols" / "probe.py", src)}
    assert {
        "numpy",
        "defistress.protocols",
        "defistress.protocols.ledger",
        "defistress.protocols.margin",
        "defistress.protocols.margin.black76",
        "defistress.sim.engine.model",
        "defistress.sim.engine.model.StressModel",
        "defistress.agents.tx",
    } <= names
    assert (
        layer("defistress.sim.report.plots") == "sim.report"
        and layer("defistress.protocols.margin.var") == "protocols.margin"
        and layer("numpy") == ""
    )


def _ours(n: str) -> bool:
    return layer(n) != ""


def _top(n: str) -> str:
    return n.split(".", 1)[0]


#: (folder, what its modules must not import, rule name)
RULES = [
    (
        "protocols",
        lambda n: layer(n) in ("agents", "scenarios") or layer(n).startswith("sim"),
        "protocols never import agents, scenarios or sim",
    ),
    ("agents", lambda n: layer(n).startswith("sim") or layer(n) == "scenarios", "agents never import sim or scenarios"),
    (
        "protocols/margin",
        lambda n: _ours(n) and layer(n) != "protocols.margin",
        "protocols.margin imports nothing of the project outside protocols.margin",
    ),
    # the schema may embed the parameter models of protocols and agents (they live beside what they
    # parameterise); it must never reach into the engine
    ("scenarios", lambda n: layer(n).startswith("sim"), "scenarios never import sim"),
    (
        "protocols/margin",
        lambda n: (
            bool(_top(n))
            and _top(n) not in sys.stdlib_module_names
            and not _ours(n)
            and _top(n) not in MARGIN_THIRD_PARTY
            and _top(n) != "__future__"
            and n != NS
        ),
        "protocols.margin uses only numpy, scipy and pandas besides the standard library",
    ),
    (
        "sim/engine",
        lambda n: layer(n) in ("sim.experiments", "sim.analysis", "sim.report", "sim.cli"),
        "sim.engine never imports experiments, analysis, report or the CLI",
    ),
    (
        "sim/analysis",
        lambda n: layer(n) in ("sim.experiments", "sim.report", "sim.cli"),
        "sim.analysis never drives a run, draws or imports the CLI",
    ),
    (
        "sim/report",
        lambda n: layer(n) in ("sim.experiments", "sim.cli"),
        "sim.report never drives a run or imports the CLI",
    ),
    ("sim/experiments", lambda n: layer(n) == "sim.cli", "sim.experiments never import the CLI"),
]


def _cases():
    for folder, forbidden, rule in RULES:
        for path in modules(folder):
            yield pytest.param(path, forbidden, id=f"{rule} | {path.relative_to(ROOT)}")


@pytest.mark.parametrize("path, forbidden", list(_cases()))
def test_imports_follow_the_dependency_direction(path, forbidden):
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in imports_of(path) if forbidden(name)]
    assert bad == []


def import_graph() -> nx.DiGraph:
    """Module -> module it imports (ours only; `from pkg import name` counts as importing pkg.name when that
    is a module, else pkg). Package __init__ files are nodes like any module."""
    paths = [p for f in FOLDERS for p in modules(f)]
    names = {module_name(p) for p in paths}
    g = nx.DiGraph()
    g.add_nodes_from(names)
    for p in paths:
        me = module_name(p)
        for _, n in imports_of(p):
            target = n if n in names else n.rpartition(".")[0] if n.rpartition(".")[0] in names else None
            if target and target != me:
                g.add_edge(me, target)
    return g


def test_the_cycle_finder_finds_a_planted_cycle():
    g = import_graph()
    g.add_edge("defistress.protocols.ledger", "defistress.sim.engine.model")
    assert any("defistress.protocols.ledger" in c for c in nx.simple_cycles(g))


def test_no_import_cycles():
    g = import_graph()
    # a package importing its own submodules (re-exports) is not a cycle of concepts: leave __init__ edges out
    inits = {module_name(p) for f in FOLDERS for p in modules(f) if p.name == "__init__.py"}
    g.remove_edges_from([(a, b) for a, b in list(g.edges) if a in inits and b.startswith(a + ".")])
    cycles = sorted(sorted(c) for c in nx.simple_cycles(g))
    assert cycles == []
