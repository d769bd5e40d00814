"""What a sweep worker runs: batches of (grid point, seed) against a scenario installed once per worker.

A worker process receives the parsed base scenario once (`install`, called by the process pool's
initializer or by the dask worker plugin), then every task carries only grid parameters, seeds and run keys.
A run that raises is recorded as a failed row with its error; it never takes the rest of the batch down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from defistress.scenarios.loader import LoadedScenario, load

#: one run of a sweep: grid parameters, seed, run key
Item = tuple[dict[str, Any], int, str]
#: a stand-in for the simulation, (parameters, seed) -> scalar metrics: a scenario-free study (tests inject a
#: cheap function with a known optimum through the same code path); a module-level function, so it pickles
RunFunction = Callable[[dict[str, Any], int], dict[str, Any]]


@dataclass(frozen=True)
class SweepContext:
    """The parsed base scenario (after --set), shared by every run of one sweep, under a unique id.

    With `runner`, each run calls it instead of simulating `loaded` (which may then be None)."""

    id: str
    loaded: LoadedScenario | None
    runner: RunFunction | None = None


#: contexts installed in this process, by id
_CONTEXTS: dict[str, SweepContext] = {}
#: how many times each context id was installed in this process (a worker should receive it once)
INSTALLS: dict[str, int] = {}


def install(ctx: SweepContext) -> None:
    """Make `ctx` available to tasks in this process and import the engine now, not in the first run."""
    import defistress.sim.experiments.runs  # noqa: F401  (the engine, pandas and the summary come with it)

    _CONTEXTS[ctx.id] = ctx
    INSTALLS[ctx.id] = INSTALLS.get(ctx.id, 0) + 1


def uninstall(ctx_id: str) -> None:
    _CONTEXTS.pop(ctx_id, None)


def point_overrides(params: dict[str, Any]) -> list[str]:
    """`--set` strings for one grid point, values in TOML syntax (strings quoted, booleans lower-case, lists)."""
    from defistress.scenarios.loader import _toml_value

    return [f"{k}={_toml_value(v)}" for k, v in params.items()]


def key_columns(params: dict[str, Any], seed: int, key: str) -> dict[str, Any]:
    return {**{f"param:{k}": v for k, v in params.items()}, "seed": seed, "run_key": key}


def failed_row(params: dict[str, Any], seed: int, key: str, exc: BaseException) -> dict[str, Any]:
    """The row of a run that did not finish: its keys, status "failed" and the error."""
    return {
        **key_columns(params, seed, key),
        "status": "failed",
        "error_type": type(exc).__name__,
        "error": str(exc).strip() or type(exc).__name__,
    }


def flat_metrics(metrics: dict) -> dict:
    """Scalar metrics, with per-protocol figures as `{pid}_{name}` columns."""
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
    for pid, m in metrics.get("protocols", {}).items():
        for k, v in m.items():
            if isinstance(v, (int, float)) or v is None:
                out[f"{pid}_{k}"] = v
    for k, v in (metrics.get("contagion") or {}).items():
        if isinstance(v, (int, float)):
            out[f"contagion_{k}"] = v
    if "scorecard_metrics" in metrics:  # the scorecard vocabulary under its flat keys (sim.analysis.scorecard)
        from defistress.sim.analysis.scorecard import flat_scorecard

        out.update({f"sc:{k}": v for k, v in flat_scorecard(metrics["scorecard_metrics"]).items()})
    return out


def one_row(loaded: LoadedScenario, params: dict[str, Any], seed: int, key: str) -> dict[str, Any]:
    """Run one (grid point, seed) and return its row; any exception becomes a failed row."""
    from defistress.sim.experiments.runs import run_scenario

    try:
        r = run_scenario(load(loaded, point_overrides(params)) if params else loaded, seed)
    except Exception as exc:  # a deterministic failure of this point: recorded, the sweep goes on
        return failed_row(params, seed, key, exc)
    row = flat_metrics(r.metrics)
    row.update(key_columns(params, seed, key))
    row.update({"status": "ok", "scenario_sha256": r.manifest["scenario_sha256"]})
    return row


def function_row(runner: RunFunction, params: dict[str, Any], seed: int, key: str) -> dict[str, Any]:
    """A run of a stand-in function: its scalar metrics, or a failed row when it raises."""
    try:
        metrics = runner(dict(params), seed)
    except Exception as exc:  # recorded like a failed simulation
        return failed_row(params, seed, key, exc)
    row = flat_metrics(metrics)
    row.update(key_columns(params, seed, key))
    row["status"] = "ok"
    return row


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """Rows as JSON lines, the bytes results.jsonl holds (encoded in the workers: the client only writes them)."""
    return b"".join((json.dumps(r, default=_json_default) + "\n").encode() for r in rows)


def _json_default(o: object) -> object:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def run_batch(ctx_id: str, items: list[Item]) -> tuple[bytes, float]:
    """Run a batch in this worker; returns its rows as JSON lines and the CPU seconds of this thread spent
    running them (CPU, not wall time, so the overhead figures do not depend on what else shares the machine)."""
    ctx = _CONTEXTS.get(ctx_id)
    if ctx is None:
        raise RuntimeError(f"sweep context {ctx_id} is not installed in this worker")
    t0 = time.thread_time()
    if ctx.runner is not None:
        rows = [function_row(ctx.runner, p, s, k) for p, s, k in items]
    else:
        assert ctx.loaded is not None, "a sweep context needs a scenario or a runner"
        rows = [one_row(ctx.loaded, p, s, k) for p, s, k in items]
    return encode_rows(rows), time.thread_time() - t0
