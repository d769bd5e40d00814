"""A study's outputs: trials.csv, pareto.csv, recommended.json, results.parquet / risk.csv and figures.

- trials.csv: one row per finished trial: its setting, every objective and constraint figure with a 95%
  percentile-bootstrap interval over the trial's seeds (scipy.stats.bootstrap, `risk.with_ci`), whether each
  constraint holds, feasibility, runs and failures.
- pareto.csv: the completed trials that no other trial beats on every objective and every constrained figure
  (a constrained figure counts in the direction that satisfies it), with their feasibility: the trade-off a
  committee weighs, e.g. leakage against VaR99 of bad debt.
- recommended.json: among feasible trials, the best one (one objective) or the Pareto point nearest the ideal
  (several: `pareto.nearest_to_ideal`), with its intervals and whether each constraint still holds at the
  interval's unfavourable end; with no feasible trial, the least violating one, marked infeasible.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from defistress.sim.analysis.pareto import nearest_to_ideal, non_dominated
from defistress.sim.analysis.seed_adequacy import seed_warnings
from defistress.sim.experiments.outdir import write_file_atomically
from defistress.sim.experiments.point_runs import PointRuns
from defistress.sim.experiments.sweep_results import finalize
from defistress.sim.experiments.tune_spec import TuneSpec

TRIALS = "trials.csv"
PARETO = "pareto.csv"
RECOMMENDED = "recommended.json"
FIGURES = "figures"


@dataclass(frozen=True)
class TuneResult:
    """What a study holds after this call (the folder's files say the same)."""

    out: Path
    trials: Any  #: pandas DataFrame of trials.csv
    pareto: Any  #: pandas DataFrame of pareto.csv
    recommended: dict[str, Any] | None  #: recommended.json (None when no trial completed)
    warnings: list[str]  #: too few seeds for a quantile asked, no feasible trial, ...
    figures: list[Path]
    ran: int  #: runs done by this call
    told: int  #: trials finished by this call


def interrupted(study: Any) -> list[int]:
    return list(study.user_attrs.get("interrupted", []))


def finished_trials(study: Any) -> list[Any]:
    """Trials that count towards --trials: complete, or failed by their runs (not cut by a kill)."""
    from optuna.trial import TrialState

    cut = set(interrupted(study))
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        if t.number not in cut
    ]


def _rows(runs: PointRuns, setting: dict[str, Any]) -> list[dict[str, Any]]:
    return [runs.rows[k] for s in runs.seeds if (k := runs.key(setting, s)) in runs.rows]


def trials_table(study: Any, spec: TuneSpec, runs: PointRuns) -> pd.DataFrame:
    """One row per finished trial (see the module docstring), ordered by trial number."""
    from optuna.trial import TrialState

    records = []
    for t in sorted(finished_trials(study), key=lambda t: t.number):
        setting = {p.key: t.params.get(p.key) for p in spec.params}
        rec: dict[str, Any] = {
            "trial": t.number,
            "generation": t.user_attrs.get("generation"),
            "state": "complete" if t.state == TrialState.COMPLETE else "failed",
            **{f"param:{k}": v for k, v in setting.items()},
            "runs": t.user_attrs.get("runs", 0),
            "failed": t.user_attrs.get("failed", 0),
        }
        if t.state == TrialState.COMPLETE:
            ok = [r for r in _rows(runs, setting) if r.get("status") == "ok"]
            for m in spec.metrics:
                x = np.array([float(r[m.column]) for r in ok if r.get(m.column) is not None])
                ci = m.with_ci(x)
                rec[m.name], rec[f"{m.name}_ci_low"], rec[f"{m.name}_ci_high"] = (
                    ci["value"],
                    ci["ci_low"],
                    ci["ci_high"],
                )
            holds = [c.holds(rec[c.metric.name]) for c in spec.constraints]
            for c, h in zip(spec.constraints, holds):
                rec[f"holds:{c.text}"] = h
            rec["feasible"] = all(holds)
        else:
            rec["feasible"] = False
        rec["error"] = t.user_attrs.get("error", "")
        records.append(rec)
    return pd.DataFrame(records)


def _costs(df: pd.DataFrame, spec: TuneSpec, with_constraints: bool) -> np.ndarray:
    """Figures to minimise, one column each: objectives (maximised ones negated), then constrained figures."""
    cols = []
    for o in spec.objectives:
        v = df[f"param:{o.param}" if o.param else o.metric.name].to_numpy(float)  # type: ignore[union-attr]
        cols.append(-v if o.direction == "maximize" else v)
    if with_constraints:
        named = {o.metric.name for o in spec.objectives if o.metric}
        for c in spec.constraints:
            if c.metric.name not in named:
                v = df[c.metric.name].to_numpy(float)
                cols.append(-v if c.op in (">=", ">") else v)
                named.add(c.metric.name)
    return np.column_stack(cols) if cols else np.zeros((len(df), 0))


def pareto_table(trials: pd.DataFrame, spec: TuneSpec) -> pd.DataFrame:
    done = trials[trials["state"] == "complete"] if len(trials) else trials
    if done.empty:
        return done.copy()
    front = done[non_dominated(_costs(done, spec, with_constraints=True))]
    first = spec.objectives[0]
    key = f"param:{first.param}" if first.param else first.metric.name  # type: ignore[union-attr]
    return front.sort_values(key, ascending=first.direction == "minimize").reset_index(drop=True)


def recommend(trials: pd.DataFrame, spec: TuneSpec) -> dict[str, Any] | None:
    """The recommended trial with its intervals (see the module docstring), or None without completed trials."""
    done = trials[trials["state"] == "complete"] if len(trials) else trials
    if done.empty:
        return None
    feasible = done[done["feasible"].astype(bool)]
    if len(feasible):
        costs = _costs(feasible, spec, with_constraints=False)
        front = feasible[non_dominated(costs)]
        fc = _costs(front, spec, with_constraints=False)
        pick = front.iloc[int(np.argmin(fc[:, 0])) if fc.shape[1] == 1 else nearest_to_ideal(fc)]
        rule = "best objective among feasible trials" if fc.shape[1] == 1 else "feasible Pareto point nearest the ideal"
    else:
        excess = np.zeros(len(done))
        for c in spec.constraints:  # relative violation, so bounds of different units add up
            v = np.array([max(0.0, c.violation(x)) for x in done[c.metric.name].to_numpy(float)])
            excess += v / max(abs(c.bound), 1e-12)
        pick = done.iloc[int(np.argmin(excess))]
        rule = "no trial met every constraint: the least violating one"
    return _describe(pick, spec, rule)


def _describe(row: pd.Series, spec: TuneSpec, rule: str) -> dict[str, Any]:
    def fig(name: str) -> dict[str, float]:
        return {
            "value": float(row[name]),
            "ci_low": float(row[f"{name}_ci_low"]),
            "ci_high": float(row[f"{name}_ci_high"]),
        }

    objectives = []
    for o in spec.objectives:
        entry: dict[str, Any] = {"objective": o.text, "direction": o.direction}
        entry.update({"value": _py(row[f"param:{o.param}"])} if o.param else fig(o.metric.name))  # type: ignore[union-attr]
        objectives.append(entry)
    constraints = []
    for c in spec.constraints:
        f = fig(c.metric.name)
        worst = f["ci_high"] if c.op in ("<=", "<") else f["ci_low"]
        constraints.append(
            {
                "constraint": c.text,
                "bound": c.bound,
                **f,
                "holds": c.holds(f["value"]),
                "holds_at_interval_end": c.holds(worst),
            }
        )
    return {
        "trial": int(row["trial"]),
        "feasible": bool(row["feasible"]),
        "rule": rule,
        "params": {p.key: _py(row[f"param:{p.key}"]) for p in spec.params},
        "runs": int(row["runs"]),
        "objectives": objectives,
        "constraints": constraints,
        "interval": "95% percentile bootstrap over the trial's seeds (scipy.stats.bootstrap)",
    }


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _figures(
    out: Path, trials: pd.DataFrame, pareto: pd.DataFrame, rec: dict[str, Any] | None, spec: TuneSpec, notes: list[str]
) -> list[Path]:
    from defistress.sim.report.plots_tune import Axis, write_tune_figures

    objectives = [
        Axis(f"param:{o.param}" if o.param else o.metric.name, o.text.split(":", 1)[1], o.direction)  # type: ignore[union-attr]
        for o in spec.objectives
    ]
    constraints = [Axis(c.metric.name, c.metric.name, bound=c.bound, op=c.op) for c in spec.constraints]
    params = [f"param:{p.key}" for p in spec.params]
    return write_tune_figures(out, trials, pareto, rec, objectives, constraints, params, notes)


def write_outputs(out: Path, study: Any, spec: TuneSpec, runs: PointRuns, *, figures: bool, ran: int, told: int) -> Any:
    trials = trials_table(study, spec, runs)
    pareto = pareto_table(trials, spec)
    rec = recommend(trials, spec)
    write_file_atomically(out / TRIALS, trials.to_csv(index=False))
    write_file_atomically(out / PARETO, pareto.to_csv(index=False))
    tmp = out / f".{RECOMMENDED}.tmp"
    tmp.write_text(json.dumps(rec, indent=2) + "\n")
    os.replace(tmp, out / RECOMMENDED)
    if runs.runner is None and (out / "results.jsonl").exists():  # a run function has no bad debt to tabulate
        finalize(out, sorted(p.key for p in spec.params))
    notes = seed_warnings(((m.name, m.quantile) for m in spec.metrics), len(runs.seeds))
    n_failed = int((trials["state"] == "failed").sum()) if len(trials) else 0
    if n_failed:
        notes.append(f"{n_failed} trial(s) failed (their runs failed or the setting was refused): see trials.csv")
    if rec is not None and not rec["feasible"]:
        notes.append("no trial met every constraint: recommended.json holds the least violating trial")
    paths: list[Path] = []
    if figures and len(trials):
        paths = _figures(out / FIGURES, trials, pareto, rec, spec, notes)
    return TuneResult(out, trials, pareto, rec, notes, paths, ran, told)
