"""Light modules stay light (issue 14, CLI start-up): importing them in a fresh interpreter must not load the
heavy libraries they do not need at import time. A layering-style check on `sys.modules`, no timing (the
start-up time itself is measured by benchmarks/bench_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PLOTTING_AND_CLUSTER = ["matplotlib", "dask", "distributed", "optuna", "SALib"]
#: module -> heavy modules it must not import at import time
LIGHT = {
    # the package itself: lazy entry points only
    "defistress": ["numpy", "pandas", "pyarrow", "scipy", "pydantic", "mesa", "networkx", *PLOTTING_AND_CLUSTER],
    # `defistress --help` and the start of `defistress run`: the scenario schema, not the tables or the engine
    "defistress.sim.cli.app": ["pandas", "pyarrow", "scipy", "mesa", "networkx", *PLOTTING_AND_CLUSTER],
    # a run: the engine and the run folder's tables, but no plotting (report.html imports it when written),
    # no statistics library and no cluster
    "defistress.sim.experiments.runs": ["scipy.stats", *PLOTTING_AND_CLUSTER],
    # the start of `defistress sweep`: neither the tables and statistics of the gathering step (pandas, pyarrow,
    # scipy.stats load when results.parquet and risk.csv are written) nor the engine nor a cluster
    "defistress.sim.cli.sweep": ["pandas", "pyarrow", "scipy", "mesa", "networkx", *PLOTTING_AND_CLUSTER],
    "defistress.sim.experiments.sweep": ["pandas", "pyarrow", "scipy", "mesa", "networkx", *PLOTTING_AND_CLUSTER],
}


def imported_by(module: str) -> set[str]:
    """Top-level and dotted names in sys.modules after importing `module` in a fresh interpreter."""
    code = f"import importlib, json, sys; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_the_check_sees_a_heavy_import():
    assert "json" in imported_by("json") and "numpy" in imported_by("numpy.linalg")


@pytest.mark.parametrize("module", sorted(LIGHT))
def test_light_modules_do_not_import_heavy_ones(module: str):
    loaded = imported_by(module)
    assert module in loaded
    assert sorted(h for h in LIGHT[module] if h in loaded) == []
