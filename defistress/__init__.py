"""defistress: agent-based stress testing of DeFi margin protocols.

The project's folders install as subpackages of this namespace: `defistress.sim` (engine, experiments,
analysis, report, CLI), `defistress.agents`, `defistress.protocols` (with the stand-alone margin library
`defistress.protocols.margin`) and `defistress.scenarios`. The main entry points are importable from here and
load lazily, so `import defistress` stays cheap and the margin library keeps its own small dependencies.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from defistress.kernels import pin as _pin_kernels

# before anything imports numpy: the same bits on AVX2 and AVX-512 machines (defistress.kernels)
_pin_kernels()

try:
    __version__ = version("defistress")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

#: public name -> module that defines it
_ENTRY_POINTS = {
    "run_scenario": "defistress.sim.experiments.runs",
    "RunResult": "defistress.sim.experiments.runs",
    "write_run": "defistress.sim.experiments.runs",
    "load": "defistress.scenarios.loader",
    "ScenarioError": "defistress.scenarios.loader",
    "StressModel": "defistress.sim.engine.model",
}

__all__ = ["__version__", *_ENTRY_POINTS]

if TYPE_CHECKING:  # pragma: no cover
    from defistress.scenarios.loader import ScenarioError, load  # noqa: F401
    from defistress.sim.engine.model import StressModel  # noqa: F401
    from defistress.sim.experiments.runs import RunResult, run_scenario, write_run  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _ENTRY_POINTS:
        return getattr(import_module(_ENTRY_POINTS[name]), name)
    raise AttributeError(f"module 'defistress' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
