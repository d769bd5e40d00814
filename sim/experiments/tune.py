"""`tune`: search protocol parameters with an Optuna study whose trials are sets of seeded runs.

Each trial is one setting of the tuned keys run with the same seeds (common random numbers, so trials differ
by their setting, not their luck); its objectives and constraints are statistics over those runs (VaR99 of bad
debt, mean leakage, ...: `sim/analysis/metric_expr.py`), and constraints reach the sampler as the trial's
constraint values (`Trial.set_constraint`, optuna 5's replacement of the deprecated `constraints_func`; a
value <= 0 holds), which its TPE sampler uses to prefer feasible settings. Trials run in generations of
`parallel_trials`, asked together and run in parallel on the sweep backends, then told in order: the study
depends on the seeds, the sampler seed and `parallel_trials`, never on timing or the number of workers. Each
generation's TPE sampler is seeded from (sampler seed, generation), so a resumed study proposes what an
uninterrupted one would have.

The folder: `tune.json` (the configuration; another one is refused), `study.db` (the Optuna study in SQLite,
so a killed or extended study resumes), `results.jsonl` (every run, appended as it finishes; finished runs are
never run again) and, at the end, `results.parquet`, `risk.csv`, `trials.csv`, `pareto.csv`,
`recommended.json` and `figures/` (`tune_outputs`). A trial cut by a kill is failed in the study and asked
again with the same setting; its finished runs are reused.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from defistress.scenarios.loader import LoadedScenario, ScenarioError, load
from defistress.sim.analysis.metric_expr import run_metric_names
from defistress.sim.experiments.point_runs import Backend, PointRuns
from defistress.sim.experiments.sweep_folder import SweepLock, check_folder_config, check_out_target
from defistress.sim.experiments.sweep_tasks import RunFunction, point_overrides
from defistress.sim.experiments.tune_outputs import TuneResult, finished_trials, interrupted, write_outputs
from defistress.sim.experiments.tune_spec import Constraint, TuneInputError, TuneSpec, parse_spec

CONFIG = "tune.json"
STUDY_DB = "study.db"
STUDY_NAME = "defistress-tune"
CONFIG_FORMAT = 1
#: trials sampled at random before TPE models the results (Optuna's default)
STARTUP_TRIALS = 10


def _spec_allowed(loaded: LoadedScenario | None, runner: RunFunction | None) -> list[str] | None:
    if runner is not None:
        names = getattr(runner, "metrics", None)
        return list(names) if names is not None else None
    assert loaded is not None
    return run_metric_names(p.id for p in loaded.scenario.protocols)


def check_params(loaded: LoadedScenario, spec: TuneSpec) -> None:
    """Each tuned key at both ends of its range (or at each choice) must be a value the scenario accepts."""
    for p in spec.params:
        for v in p.extremes():
            try:
                load(loaded, point_overrides({p.key: v}))
            except ScenarioError as exc:
                raise TuneInputError(f"--param {p.text!r}: " + "; ".join(exc.errors)) from None


def _config(loaded: LoadedScenario | None, runner: RunFunction | None, hash_: str, overrides: list[str],
            spec: TuneSpec, seeds: list[int], sampler_seed: int, startup: int) -> dict[str, Any]:  # fmt: skip
    return {
        "format": CONFIG_FORMAT,
        "scenario": loaded.source if loaded is not None and runner is None else None,
        "run_function": None if runner is None else f"{runner.__module__}.{runner.__qualname__}",
        "scenario_sha256": hash_,
        "overrides": overrides,
        **spec.describe(),
        "seeds": seeds,
        "sampler_seed": sampler_seed,
        "startup_trials": startup,
    }


def sampler_for(spec: TuneSpec, sampler_seed: int, generation: int, startup: int) -> Any:
    """The generation's TPE sampler (pinned explicitly: optuna 5 changed the default), seeded from (seed, g)."""
    import optuna

    seed = int(np.random.SeedSequence([sampler_seed, generation]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=startup,
            multivariate=True,
            constant_liar=True,
        )


def tune(
    scenario: Any,
    params: Sequence[str],
    objectives: Sequence[str],
    constraints: Sequence[str] = (),
    *,
    seeds: Sequence[int] = tuple(range(10)),
    trials: int = 20,
    out: str | Path = "runs/tune",
    overrides: Sequence[str] | None = None,
    parallel_trials: int = 4,
    sampler_seed: int = 0,
    startup_trials: int = STARTUP_TRIALS,
    workers: int = 1,
    backend: str = "process",
    scheduler: str | None = None,
    batch_size: int = 1,
    max_in_flight: int | None = None,
    runner: RunFunction | None = None,
    on_trial: Callable[[int, int], None] | None = None,
    figures: bool = True,
) -> TuneResult:
    """Run (or resume, or extend to `trials`) a study and write its outputs; see the module docstring.

    `params`, `objectives` and `constraints` take the command line's syntax (`tune_spec`). `runner`, a
    module-level function (parameters, seed) -> metrics, replaces the simulation (then `scenario` may be None):
    the same study, folder and outputs for a cheap function with a known optimum.
    """
    import optuna

    seeds = list(dict.fromkeys(int(s) for s in seeds))
    overrides = [str(o) for o in (overrides or [])]
    be = Backend(workers, backend, scheduler, batch_size, max_in_flight)
    be.check(seeds)
    if trials < 1:
        raise TuneInputError(f"--trials: must be at least 1 (got {trials})")
    if parallel_trials < 1:
        raise TuneInputError(f"--parallel-trials: must be at least 1 (got {parallel_trials})")
    if startup_trials < 0:
        raise TuneInputError(f"--startup-trials: must be >= 0 (got {startup_trials})")
    loaded = load(scenario, overrides) if scenario is not None else None
    if loaded is None and runner is None:
        raise TuneInputError("scenario: give a scenario (or, from Python, a run function)")
    spec = parse_spec(params, objectives, constraints, _spec_allowed(loaded, runner))
    if loaded is not None and runner is None:
        check_params(loaded, spec)
    out = Path(out)
    existed = check_out_target(out, CONFIG, what="tune")
    runs_hash = PointRuns.hash_for(loaded, runner)
    config = _config(loaded, runner, runs_hash, overrides, spec, seeds, sampler_seed, startup_trials)
    check_folder_config(
        out,
        CONFIG,
        config,
        "a study",
        "its trials would be mixed with these. Use a new --out (or the folder's settings; --trials may grow)",
    )
    out.mkdir(parents=True, exist_ok=True)
    lock = SweepLock(out).acquire()
    try:
        if not (out / CONFIG).is_file():
            tmp = out / f".{CONFIG}.tmp"
            tmp.write_text(json.dumps(config, indent=2) + "\n")
            tmp.replace(out / CONFIG)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            storage=f"sqlite:///{(out / STUDY_DB).absolute()}",
            study_name=STUDY_NAME,
            directions=[cast(Any, o.direction) for o in spec.objectives],
            load_if_exists=True,
        )
        runs = PointRuns(out, loaded, seeds, be, runner)
        told = _optimise(study, spec, runs, trials, parallel_trials, sampler_seed, startup_trials, on_trial)
        return write_outputs(out, study, spec, runs, figures=figures, ran=runs.ran, told=told)
    finally:
        lock.release()
        if not existed and not any(p.name != ".sweep.lock" for p in out.iterdir()):
            out.rmdir()


def _recover(study: Any) -> None:
    """Trials left running by a kill are failed and asked again with the same setting and generation."""
    from optuna.trial import TrialState

    cut = interrupted(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        cut.append(t.number)
        study.enqueue_trial(t.params, user_attrs={"generation": t.user_attrs.get("generation", 0)})
    study.set_user_attr("interrupted", cut)


def _optimise(
    study: Any,
    spec: TuneSpec,
    runs: PointRuns,
    n_trials: int,
    parallel: int,
    sampler_seed: int,
    startup: int,
    on_trial: Callable[[int, int], None] | None,
) -> int:
    from optuna.trial import TrialState

    _recover(study)
    dists = {p.key: p.distribution() for p in spec.params}
    told = 0
    while True:
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if waiting:
            g, k = int(waiting[0].user_attrs.get("generation", 0)), len(waiting)
        else:
            done = len(finished_trials(study))
            if done >= n_trials:
                return told
            g = int(study.user_attrs.get("generations", 0))
            study.set_user_attr("generations", g + 1)
            k = min(parallel, n_trials - done)
        study.sampler = sampler_for(spec, sampler_seed, g, startup)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna's experimental-feature notes (multivariate TPE, constraints)
            generation = [study.ask(dists) for _ in range(k)]
        for t in generation:
            t.set_user_attr("generation", g)
        settings = [{p.key: _plain(t.params[p.key]) for p in spec.params} for t in generation]
        for t, setting, rows in zip(generation, settings, runs.run(settings)):
            _score_and_tell(study, t, spec, setting, rows)
            told += 1
            if on_trial:
                on_trial(len(finished_trials(study)), n_trials)


def _plain(v: Any) -> Any:
    """Optuna's numpy scalars as Python values (run keys and --set strings need them)."""
    return v.item() if isinstance(v, np.generic) else v


def trial_values(spec: TuneSpec, setting: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Objective and constraint figures of one trial from its runs: point estimates, runs and failures."""
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") != "ok"]
    out: dict[str, Any] = {"runs": len(ok), "failed": len(failed), "metrics": {}}
    if failed:
        out["error"] = f"{len(failed)} of {len(rows)} runs failed; first: {failed[0].get('error', '?')}"
        return out
    for m in spec.metrics:
        x = np.array([np.nan if r.get(m.column) is None else float(r[m.column]) for r in ok])
        if not len(x) or np.isnan(x).all():
            have = sorted(k for k, v in ok[0].items() if isinstance(v, (int, float)) and not k.startswith("param:"))
            raise TuneInputError(f"{m.name}: the runs have no figure {m.column!r}; they have: {', '.join(have)}")
        out["metrics"][m.name] = m.value(x[~np.isnan(x)])
    return out


def objective_values(spec: TuneSpec, setting: dict[str, Any], metrics: dict[str, float]) -> list[float]:
    return [float(setting[o.param]) if o.param else metrics[o.metric.name] for o in spec.objectives]  # type: ignore[union-attr]


def violations(constraints: Sequence[Constraint], metrics: dict[str, float]) -> list[float]:
    return [c.violation(metrics[c.metric.name]) for c in constraints]


def _score_and_tell(study: Any, trial: Any, spec: TuneSpec, setting: dict[str, Any], rows: list[dict]) -> None:
    from optuna.trial import TrialState

    v = trial_values(spec, setting, rows)
    trial.set_user_attr("runs", v["runs"])
    trial.set_user_attr("failed", v["failed"])
    if "error" in v:
        trial.set_user_attr("error", v["error"])
        study.tell(trial, state=TrialState.FAIL)
        return
    trial.set_user_attr("metrics", v["metrics"])
    for c, excess in zip(spec.constraints, violations(spec.constraints, v["metrics"])):
        trial.set_constraint(c.text, excess)
    values = objective_values(spec, setting, v["metrics"])
    if not all(np.isfinite(values)):
        trial.set_user_attr("error", f"non-finite objective {values}")
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, values)
