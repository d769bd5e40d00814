"""`stress-search` (a reverse stress test): the smallest shock at which a loss threshold is crossed with a given
probability, and the liquidation curve (bad debt, liquidations, leakage against shock size).

A shock is a direction: one or more `--shock KEY=FROM..TO` (a jump, a drift, a volatility multiplier, a depeg
target, ...), all moved together by one size s in [0, 1], each key at FROM + s (TO - FROM). At each tested size
every seed runs once (the same seeds at every size, so sizes differ by the shock, not by luck); the crossing
probability is the share of runs whose metric passes the threshold, with its Wilson interval
(`sim/analysis/crossing.py`). The search tests the curve's evenly spaced sizes, then bisects between the
largest size below the target probability and the smallest one reaching it; the break size is the smallest
tested size that reaches it, bracketed by the tested sizes on either side and given with the interval of
sizes where the target cannot be ruled out / is established (`crossing.bracket`).

The folder: `stress.json` (the configuration; another is refused), `results.jsonl` (every run, appended as
it finishes: the search is deterministic, so a killed one replays from the finished runs), and at the end
`curve.csv` (one row per tested size), `break.json` and `figures/`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from defistress.scenarios.loader import ScenarioError, load
from defistress.sim.analysis.crossing import bracket, crossed, wilson
from defistress.sim.analysis.metric_expr import run_metric_names
from defistress.sim.analysis.risk import with_ci
from defistress.sim.experiments.outdir import write_file_atomically
from defistress.sim.experiments.point_runs import Backend, PointRuns
from defistress.sim.experiments.sweep_folder import SweepLock, check_folder_config, check_out_target
from defistress.sim.experiments.sweep_tasks import RunFunction, point_overrides
from defistress.sim.experiments.tune_spec import TuneInputError, _number

CONFIG = "stress.json"
CURVE = "curve.csv"
BREAK = "break.json"
#: the liquidation curve's figures, per run means with 95% bootstrap intervals
CURVE_METRICS = ("bad_debt_usd", "liquidations", "liquidator_value_leakage_usd")
OPS = (">=", "<=", ">", "<")


class StressInputError(TuneInputError):
    """A --shock, --threshold or search option that cannot be used; the message names it and the allowed values."""


@dataclass(frozen=True)
class ShockAxis:
    """One scenario key moved by the shock size: FROM at size 0, TO at size 1."""

    key: str
    start: float
    end: float

    def at(self, size: float) -> float:
        return self.start + size * (self.end - self.start)


@dataclass(frozen=True)
class Threshold:
    metric: str  #: a per-run metric, e.g. bad_debt_usd
    op: str
    value: float
    text: str


def parse_shock(text: str) -> ShockAxis:
    where = f"--shock {text!r}"
    key, eq, rng = text.partition("=")
    lo, dots, hi = rng.partition("..")
    if not eq or not key.strip() or not dots:
        raise StressInputError(f"{where}: expected KEY=FROM..TO, e.g. shocks.0.jump=-0.05..-0.6")
    a, b = _number(lo, where), _number(hi, where)
    if a == b:
        raise StressInputError(f"{where}: FROM and TO must differ")
    return ShockAxis(key.strip(), a, b)


def parse_threshold(text: str, allowed: Sequence[str] | None) -> Threshold:
    where = f"--threshold {text!r}"
    for op in OPS:
        name, found, value = text.partition(op)
        if found:
            break
    else:
        raise StressInputError(f"{where}: expected METRIC>VALUE (or >=, <, <=), e.g. bad_debt_usd>1M")
    name = name.strip()
    if allowed is not None and name not in allowed:
        raise StressInputError(f"{where}: unknown run metric {name!r}; allowed: {', '.join(allowed)}")
    return Threshold(name, op, _number(value, where), text)


@dataclass(frozen=True)
class StressResult:
    out: Path
    curve: pd.DataFrame  #: curve.csv
    found: dict[str, Any]  #: break.json
    figures: list[Path]
    ran: int  #: runs done by this call


def stress_search(
    scenario: Any,
    shocks: Sequence[str],
    threshold: str,
    *,
    probability: float = 0.5,
    seeds: Sequence[int] = tuple(range(20)),
    curve_points: int = 5,
    iterations: int = 4,
    out: str | Path = "runs/stress",
    overrides: Sequence[str] | None = None,
    workers: int = 1,
    backend: str = "process",
    scheduler: str | None = None,
    runner: RunFunction | None = None,
    on_step: Callable[[float, float], None] | None = None,
    figures: bool = True,
) -> StressResult:
    """Search the smallest shock size crossing `threshold` with `probability` (see the module docstring).

    `runner`, a module-level function (parameters, seed) -> metrics, replaces the simulation (then `scenario`
    may be None): the same search, folder and outputs for a function with a known answer.
    """
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    be = Backend(workers, backend, scheduler)
    be.check(seeds)
    if not 0.0 < probability <= 1.0:
        raise StressInputError(f"--probability: must be in (0, 1] (got {probability:g})")
    if curve_points < 2:
        raise StressInputError(f"--curve-points: at least 2 (both ends), got {curve_points}")
    if iterations < 0:
        raise StressInputError(f"--iterations: must be >= 0 (got {iterations})")
    if not shocks:
        raise StressInputError("--shock: give at least one, e.g. --shock shocks.0.jump=-0.05..-0.6")
    axes = [parse_shock(s) for s in shocks]
    keys = [a.key for a in axes]
    if len(set(keys)) < len(keys):
        raise StressInputError(f"--shock: {next(k for k in keys if keys.count(k) > 1)} is given twice")
    loaded = load(scenario, list(overrides or [])) if scenario is not None else None
    if loaded is None and runner is None:
        raise StressInputError("scenario: give a scenario (or, from Python, a run function)")
    if runner is not None:
        names = getattr(runner, "metrics", None)
        allowed = list(names) if names is not None else None
    else:
        assert loaded is not None
        allowed = run_metric_names(p.id for p in loaded.scenario.protocols)
    thr = parse_threshold(threshold, allowed)
    if loaded is not None and runner is None:
        for size in (0.0, 1.0):
            try:
                load(loaded, point_overrides({a.key: a.at(size) for a in axes}))
            except ScenarioError as exc:
                raise StressInputError(f"--shock at size {size:g}: " + "; ".join(exc.errors)) from None
    out = Path(out)
    existed = check_out_target(out, CONFIG, what="stress-search")
    config = {
        "format": 1,
        "scenario": loaded.source if loaded is not None and runner is None else None,
        "run_function": None if runner is None else f"{runner.__module__}.{runner.__qualname__}",
        "scenario_sha256": PointRuns.hash_for(loaded, runner),
        "overrides": list(overrides or []),
        "shocks": [f"{a.key}={a.start:g}..{a.end:g}" for a in axes],
        "threshold": thr.text,
        "probability": probability,
        "seeds": seeds,
        "curve_points": curve_points,
        "iterations": iterations,
    }
    check_folder_config(out, CONFIG, config, "a stress search")
    out.mkdir(parents=True, exist_ok=True)
    lock = SweepLock(out).acquire()
    try:
        if not (out / CONFIG).is_file():
            write_file_atomically(out / CONFIG, json.dumps(config, indent=2) + "\n")
        runs = PointRuns(out, loaded, seeds, be, runner)
        tested: dict[float, dict[str, Any]] = {}

        def test(sizes: Sequence[float]) -> None:
            new = [s for s in sizes if s not in tested]
            settings = [{a.key: a.at(s) for a in axes} for s in new]
            for s, rows in zip(new, runs.run(settings)):
                tested[s] = _point(s, axes, rows, thr)
                if on_step:
                    on_step(s, tested[s]["probability"])

        test([float(x) for x in np.linspace(0.0, 1.0, curve_points)])
        for _ in range(iterations):
            b = _bracket(tested, probability)
            if b.size is None or b.below is None:
                break  # not crossed in range, or crossed already at size 0: nothing to bisect
            test([round((b.below + b.size) / 2, 12)])
        curve = pd.DataFrame([tested[s] for s in sorted(tested)])
        found = _describe(_bracket(tested, probability), axes, thr, probability, len(seeds))
        write_file_atomically(out / CURVE, curve.to_csv(index=False))
        write_file_atomically(out / BREAK, json.dumps(found, indent=2) + "\n")
        paths: list[Path] = []
        if figures:
            from defistress.sim.report.plots_stress import write_stress_figures

            paths = write_stress_figures(out / "figures", curve, found, thr.text, probability)
        return StressResult(out, curve, found, paths, runs.ran)
    finally:
        lock.release()
        if not existed and not any(p.name != ".sweep.lock" for p in out.iterdir()):
            out.rmdir()


def _point(size: float, axes: Sequence[ShockAxis], rows: list[dict[str, Any]], thr: Threshold) -> dict[str, Any]:
    """One tested size: the shocked values, the crossing probability with its Wilson interval, curve means."""
    ok = [r for r in rows if r.get("status") == "ok"]
    rec: dict[str, Any] = {"size": size, **{a.key: a.at(size) for a in axes}, "runs": len(ok)}
    rec["failed"] = len(rows) - len(ok)
    x = np.array([float(r.get(thr.metric) or 0.0) for r in ok])
    k = int(crossed(x, thr.value, thr.op).sum()) if len(ok) else 0
    lo, hi = wilson(k, len(ok))
    rec.update({"crossed": k, "probability": k / len(ok) if ok else math.nan, "p_low": lo, "p_high": hi})
    for m in CURVE_METRICS:
        v = np.array([float(r[m]) for r in ok if r.get(m) is not None])
        ci = with_ci(v, lambda a, axis=-1: np.mean(a, axis=axis)) if len(v) else {"value": math.nan}
        rec[f"mean_{m}"] = ci["value"]
        rec[f"mean_{m}_ci_low"] = ci.get("ci_low", math.nan)
        rec[f"mean_{m}_ci_high"] = ci.get("ci_high", math.nan)
    return rec


def _bracket(tested: dict[float, dict[str, Any]], p: float) -> Any:
    sizes = sorted(tested)
    col = [[tested[s][k] for s in sizes] for k in ("probability", "p_low", "p_high")]
    return bracket(sizes, col[0], col[1], col[2], p)


def _describe(b: Any, axes: Sequence[ShockAxis], thr: Threshold, p: float, n: int) -> dict[str, Any]:
    def values(size: float | None) -> dict[str, float] | None:
        return None if size is None else {a.key: a.at(size) for a in axes}

    if b.size is None:
        verdict = f"{thr.text} is not crossed with probability {p:g} at any tested size up to 1 (the TO end)"
    elif b.below is None:
        verdict = f"{thr.text} is crossed with probability {p:g} already at the smallest tested size"
    else:
        verdict = f"{thr.text} is first crossed with probability >= {p:g} between sizes {b.below:g} and {b.size:g}"
    return {
        "threshold": thr.text,
        "probability": p,
        "seeds": n,
        "break_size": b.size,
        "break_values": values(b.size),
        "bracket_below": b.below,
        "bracket_below_values": values(b.below),
        "interval": [b.interval_low, b.interval_high],
        "interval_meaning": "smallest tested sizes where the target probability is within the 95% Wilson interval / "
        "below its lower end (crossing cannot be ruled out / is established)",
        "verdict": verdict,
    }
