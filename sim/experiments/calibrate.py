"""Calibration: fit a scenario's uncertain inputs to one event's published figures, and test the fit on
other events (out of sample).

The loss of a set of inputs is the sum over the event's published figures of the squared relative miss of
the seed-averaged simulated figure from the published range (zero inside the range; outside, the distance
to the nearer end over the published value's size). Optuna's TPE sampler (Bergstra et al. 2011), seeded,
proposes the inputs; each trial runs every seed. Trials are asked and told in batches of `workers`, so a
given seed, batch size and trial count give the same fit; they are stored in an Optuna journal file, so a
killed calibration, run again with the same folder, continues where it stopped.

A fit is carried to another event by input name (schema_uncertainty: the same name is the same quantity),
clipped to that event's declared range; the other event's own inputs not in the fit keep their file values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from defistress.scenarios.loader import LoadedScenario, load
from defistress.scenarios.schema_uncertainty import UncertainInput, Value

#: floor of a published value's size in the relative miss (a published 0 counts misses in absolute units)
_MIN_SCALE = 1e-9


def miss(simulated: float | None, published: tuple[float, float], value: float) -> float:
    """Relative distance of a simulated figure from the published range (0 inside; 1 when missing)."""
    if simulated is None or not math.isfinite(simulated):
        return 1.0
    lo, hi = published
    gap = lo - simulated if simulated < lo else simulated - hi if simulated > hi else 0.0
    return gap / max(abs(value), _MIN_SCALE)


def loss(figures: dict[str, float | None], published: Sequence[Any]) -> float:
    """Sum of squared relative misses over the published figures (`figures` by flat scorecard key)."""
    return float(sum(miss(figures.get(p.key), p.range, p.value) ** 2 for p in published))


@dataclass
class Fit:
    """The best inputs found, their loss and per-figure simulated means, and every trial."""

    scenario: str
    inputs: dict[str, Value]
    loss: float
    figures: list[dict]
    trials: pd.DataFrame

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "inputs": self.inputs, "loss": self.loss, "figures": self.figures}


def _suggest(trial: Any, u: UncertainInput) -> Value:
    if u.values is not None:
        return trial.suggest_categorical(u.name, list(u.values))
    assert u.range is not None
    lo, hi = u.range
    if u.integer:
        return int(trial.suggest_int(u.name, math.ceil(lo), math.floor(hi)))
    return float(trial.suggest_float(u.name, lo, hi, log=u.scale == "log"))


def optimise(
    inputs: Sequence[UncertainInput],
    objective: Callable[[list[dict[str, Value]]], list[float]],
    trials: int,
    batch: int = 1,
    seed: int = 0,
    storage: Path | None = None,
    study_name: str = "calibrate",
) -> tuple[dict[str, Value], float, pd.DataFrame]:
    """Minimise `objective` (a batch of input sets -> their losses) over the inputs with Optuna TPE.

    Returns the best inputs, their loss and the trials table. With `storage` (a journal file) the study is
    resumed: trials already told count toward `trials`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(trials // 3, 1)))
    kwargs: dict[str, Any] = {}
    if storage is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        kwargs["storage"] = JournalStorage(JournalFileBackend(str(storage)))
        kwargs["load_if_exists"] = True
    study = optuna.create_study(direction="minimize", sampler=sampler, study_name=study_name, **kwargs)
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # cut by a kill: proposed again below
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    while done < trials:
        asked = [study.ask() for _ in range(min(batch, trials - done))]
        sets = [{u.name: _suggest(t, u) for u in inputs} for t in asked]
        for t, value in zip(asked, objective(sets)):
            study.tell(t, value)
        done += len(asked)
    frame = study.trials_dataframe(attrs=("number", "value", "params", "state"))
    best = study.best_trial
    assert best.value is not None  # a completed trial has its value
    return {u.name: best.params[u.name] for u in inputs}, float(best.value), frame


def run_figures(args: tuple) -> dict[str, float | None]:
    """One seeded run's flat scorecard (a worker function: arguments are plain data)."""
    from defistress.sim.analysis.scorecard import flat_scorecard
    from defistress.sim.experiments.runs import run_scenario

    ref, overrides, seed = args
    r = run_scenario(ref, seed, overrides)
    return flat_scorecard(r.metrics["scorecard_metrics"])


def mean_figures(per_seed: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Seed-averaged figures (a figure undefined in any seed is undefined)."""
    keys = set().union(*per_seed) if per_seed else set()
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [d.get(k) for d in per_seed]
        out[k] = None if any(v is None for v in vals) else float(np.mean([float(v) for v in vals]))  # type: ignore[arg-type]
    return out


class Evaluator:
    """Runs input sets of one scenario at the given seeds (inline, or in a process pool of `workers`)."""

    def __init__(self, ref: Any, base_overrides: list[str], loaded: LoadedScenario, seeds: list[int], workers: int = 1):
        self.ref, self.base, self.seeds, self.workers = ref, list(base_overrides), list(seeds), workers
        self.by_name = {u.name: u for u in loaded.scenario.uncertain}
        self._pool: ProcessPoolExecutor | None = None

    def overrides(self, values: dict[str, Value]) -> list[str]:
        from defistress.sim.experiments.sweep_tasks import point_overrides

        point = {k: v for name, v in values.items() for k in self.by_name[name].keys}
        return self.base + point_overrides(point)

    def figures(self, sets: list[dict[str, Value]]) -> list[dict[str, float | None]]:
        jobs = [(self.ref, self.overrides(v), s) for v in sets for s in self.seeds]
        if self.workers > 1:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=self.workers)
            results = list(self._pool.map(run_figures, jobs))
        else:
            results = [run_figures(j) for j in jobs]
        n = len(self.seeds)
        return [mean_figures(results[i * n : (i + 1) * n]) for i in range(len(sets))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def figure_rows(figures: dict[str, float | None], published: Sequence[Any]) -> list[dict]:
    """Per published figure: simulated mean, published value and range, inside, relative miss."""
    rows = []
    for p in published:
        sim = figures.get(p.key)
        m = miss(sim, p.range, p.value)
        rows.append(
            {
                "key": p.key,
                "published": p.value,
                "published_low": p.range[0],
                "published_high": p.range[1],
                "simulated_mean": sim,
                "inside": sim is not None and m == 0.0,
                "relative_miss": m,
            }
        )
    return rows


def calibrate(
    scenario_ref: Any,
    out: Path,
    trials: int = 30,
    seeds: list[int] | None = None,
    workers: int = 1,
    sampler_seed: int = 0,
    overrides: list[str] | None = None,
    smoke: bool = False,
    names: list[str] | None = None,
) -> Fit:
    """Fit the scenario's uncertain inputs (or those in `names`) to its published figures; write out/fit.json,
    out/trials.csv and out/study.journal (the resumable Optuna study)."""
    from defistress.sim.experiments.outdir import write_file_atomically
    from defistress.sim.experiments.replay import smoke_overrides, source_and_overrides

    seeds = list(seeds or [1])
    base = load(scenario_ref)
    ref, ov = source_and_overrides(base, scenario_ref, smoke_overrides(base, smoke) + list(overrides or []))
    loaded = load(ref, ov)
    s = loaded.scenario
    if not s.run.published:
        raise ValueError(f"{s.run.name}: no published figures (run.published) to calibrate to")
    inputs = [u for u in s.uncertain if names is None or u.name in names]
    if names is not None and len(inputs) != len(set(names)):
        unknown = sorted(set(names) - {u.name for u in s.uncertain})
        raise ValueError(f"--inputs: unknown input(s) {unknown}; allowed: {[u.name for u in s.uncertain]}")
    if not inputs:
        raise ValueError(f"{s.run.name}: no uncertain inputs ([[uncertain]]) to fit")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ev = Evaluator(ref, ov, loaded, seeds, workers)
    cache: dict[str, dict] = {}

    def objective(sets: list[dict[str, Value]]) -> list[float]:
        figs = ev.figures(sets)
        for v, f in zip(sets, figs):
            cache[json.dumps(v, sort_keys=True, default=str)] = f
        return [loss(f, s.run.published) for f in figs]

    try:
        best, best_loss, frame = optimise(
            inputs, objective, trials, batch=max(workers // len(seeds), 1), seed=sampler_seed,
            storage=out / "study.journal", study_name=f"{s.run.name}-seed{sampler_seed}",
        )  # fmt: skip
        figs = cache.get(json.dumps(best, sort_keys=True, default=str)) or ev.figures([best])[0]
    finally:
        ev.close()
    fit = Fit(s.run.name, best, best_loss, figure_rows(figs, s.run.published), frame)
    record = {
        **fit.as_dict(),
        "seeds": seeds,
        "trials": trials,
        "sampler": "optuna TPESampler",
        "sampler_seed": sampler_seed,
        "overrides": ov,
        "smoke": smoke,
        "inputs_declared": [u.model_dump(mode="json") for u in inputs],
        "in_sample_inside": sum(1 for r in fit.figures if r["inside"]),
        "in_sample_figures": len(fit.figures),
    }
    write_file_atomically(out / "fit.json", json.dumps(record, indent=2, default=str))
    write_file_atomically(out / "trials.csv", frame.to_csv(index=False))
    return fit


def transfer(
    fitted: dict[str, Value],
    scenario_ref: Any,
    seeds: list[int],
    workers: int = 1,
    smoke: bool = False,
    overrides: list[str] | None = None,
) -> dict:
    """Run another event with the fitted inputs it shares by name (clipped to its declared range) and score
    it against its published figures: the out-of-sample test of a fit."""
    from defistress.sim.experiments.replay import smoke_overrides, source_and_overrides

    base = load(scenario_ref)
    ref, ov = source_and_overrides(base, scenario_ref, smoke_overrides(base, smoke) + list(overrides or []))
    loaded = load(ref, ov)
    s = loaded.scenario
    applied: dict[str, Value] = {}
    for u in s.uncertain:
        if u.name in fitted:
            applied[u.name] = clip_to(u, fitted[u.name])
    ev = Evaluator(ref, ov, loaded, seeds, workers)
    try:
        figs = ev.figures([applied])[0]
        baseline = ev.figures([{}])[0] if applied else figs
    finally:
        ev.close()
    rows = figure_rows(figs, s.run.published)
    base_rows = figure_rows(baseline, s.run.published)
    for r, b in zip(rows, base_rows):
        r["baseline_mean"] = b["simulated_mean"]
        r["baseline_inside"] = b["inside"]
    return {
        "scenario": s.run.name,
        "applied": applied,
        "shared_inputs": sorted(applied),
        "loss": loss(figs, s.run.published),
        "baseline_loss": loss(baseline, s.run.published),
        "figures": rows,
    }


def clip_to(u: UncertainInput, value: Value) -> Value:
    """A fitted value carried to an input of the same name: clipped to its range, or kept if in its set
    (else the nearest value of the set for numbers, else the set's first value)."""
    if u.values is not None:
        if value in u.values:
            return value
        nums = [v for v in u.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if isinstance(value, (int, float)) and nums:
            return min(nums, key=lambda v: abs(float(v) - float(value)))
        return u.values[0]
    assert u.range is not None
    lo, hi = u.range
    v = float(min(max(float(value), lo), hi))
    return int(round(v)) if u.integer else v
