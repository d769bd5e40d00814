"""Figures of a tuning study (trials.csv, pareto.csv, recommended.json): the objective trial by trial, the
objective against each tuned parameter, and the trade-off between the objective and the constrained figure
(or a second objective) with the Pareto front, the bound and the recommended setting's intervals.
Matplotlib object API; Okabe-Ito colours; money axes in $k/$M.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from defistress.sim.report.plots import OKABE_ITO, format_usd  # noqa: E402

DPI = 110
FEASIBLE = OKABE_ITO["blue"]
INFEASIBLE = OKABE_ITO["vermillion"]
FRONT = OKABE_ITO["black"]
PICK = OKABE_ITO["orange"]


@dataclass(frozen=True)
class Axis:
    """A figure of the study to plot: its trials.csv column, how it is read, and, for a constraint, its bound."""

    column: str
    label: str
    direction: str = "minimize"  #: "minimize" or "maximize"
    bound: float | None = None
    op: str | None = None


def _money(ax: Axes, column: str, axis: str = "y") -> None:
    if column.endswith("_usd"):
        (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(FuncFormatter(format_usd))


def _complete(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["state"] == "complete"] if len(trials) else trials


def plot_history(trials: pd.DataFrame, objective: Axis, ax: Axes | None = None) -> Axes:
    """The objective of every completed trial by trial number (feasible filled, infeasible crosses) and the
    best feasible value so far."""
    if ax is None:
        ax = Figure(figsize=(5, 3.2), dpi=DPI).add_subplot()
    done = _complete(trials).sort_values("trial")
    feas = done["feasible"].astype(bool).to_numpy()
    x, y = done["trial"].to_numpy(), done[objective.column].to_numpy(float)
    ax.scatter(x[feas], y[feas], color=FEASIBLE, s=18, label="feasible", zorder=3)
    ax.scatter(x[~feas], y[~feas], color=INFEASIBLE, marker="x", s=18, label="infeasible", zorder=3)
    best = np.where(feas, y if objective.direction == "minimize" else -y, np.inf)
    running = np.minimum.accumulate(best) if len(best) else best
    running = running if objective.direction == "minimize" else -running
    ax.step(x, np.where(np.isfinite(running), running, np.nan), where="post", color=FRONT, lw=1, label="best so far")
    ax.set_xlabel("trial", fontsize=8)
    ax.set_ylabel(objective.label, fontsize=8)
    ax.set_title(f"{objective.label} by trial", fontsize=9)
    _money(ax, objective.column)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    return ax


def plot_objective_vs_param(
    trials: pd.DataFrame, param: str, objective: Axis, recommended: dict[str, Any] | None, ax: Axes | None = None
) -> Axes:
    """The objective of each completed trial against one tuned parameter; the recommended trial starred."""
    if ax is None:
        ax = Figure(figsize=(5, 3.2), dpi=DPI).add_subplot()
    done = _complete(trials)
    feas = done["feasible"].astype(bool).to_numpy()
    xs = done[param]
    numeric = pd.api.types.is_numeric_dtype(xs) and not pd.api.types.is_bool_dtype(xs)
    cats = list(dict.fromkeys(xs.astype(str))) if not numeric else []
    x = xs.to_numpy(float) if numeric else np.array([cats.index(str(v)) for v in xs], float)
    y = done[objective.column].to_numpy(float)
    ax.scatter(x[feas], y[feas], color=FEASIBLE, s=18, label="feasible")
    ax.scatter(x[~feas], y[~feas], color=INFEASIBLE, marker="x", s=18, label="infeasible")
    if recommended is not None:
        row = done[done["trial"] == recommended["trial"]]
        if len(row):
            rx = float(row[param].iloc[0]) if numeric else float(cats.index(str(row[param].iloc[0])))
            ax.scatter(
                [rx],
                [float(row[objective.column].iloc[0])],
                marker="*",
                s=160,
                color=PICK,
                edgecolor=FRONT,
                zorder=4,
                label="recommended",
            )
    if not numeric:
        ax.set_xticks(range(len(cats)), cats)
    ax.set_xlabel(param.removeprefix("param:"), fontsize=8)
    ax.set_ylabel(objective.label, fontsize=8)
    _money(ax, objective.column)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    return ax


def plot_front(
    trials: pd.DataFrame,
    pareto: pd.DataFrame,
    x: Axis,
    y: Axis,
    recommended: dict[str, Any] | None,
    ax: Axes | None = None,
) -> Axes:
    """Two figures of every completed trial, the Pareto front joined, a constraint's bound as a line, and the
    recommended trial with its 95% bootstrap intervals on both figures."""
    if ax is None:
        ax = Figure(figsize=(5, 3.6), dpi=DPI).add_subplot()
    done = _complete(trials)
    feas = done["feasible"].astype(bool).to_numpy()
    ax.scatter(done[x.column][feas], done[y.column][feas], color=FEASIBLE, s=18, label="feasible trial")
    ax.scatter(
        done[x.column][~feas], done[y.column][~feas], color=INFEASIBLE, marker="x", s=18, label="infeasible trial"
    )
    if len(pareto):
        front = pareto.sort_values(x.column)
        ax.plot(front[x.column], front[y.column], color=FRONT, lw=1, marker="o", mfc="none", ms=7, label="Pareto front")
    for a, line in ((y, ax.axhline), (x, ax.axvline)):
        if a.bound is not None:
            line(a.bound, color=INFEASIBLE, ls="--", lw=1, label=f"bound {a.label} {a.op} {_fmt(a.bound, a.column)}")
    if recommended is not None:
        row = done[done["trial"] == recommended["trial"]]
        if len(row):
            r = row.iloc[0]
            px, py = float(r[x.column]), float(r[y.column])
            ax.errorbar(
                [px],
                [py],
                xerr=_err(r, x.column, px),
                yerr=_err(r, y.column, py),
                fmt="*",
                ms=14,
                color=PICK,
                mec=FRONT,
                ecolor=PICK,
                capsize=3,
                zorder=4,
                label="recommended (95% CI)",
            )
    ax.set_xlabel(x.label, fontsize=8)
    ax.set_ylabel(y.label, fontsize=8)
    ax.set_title(f"{y.label} against {x.label}", fontsize=9)
    _money(ax, x.column, "x")
    _money(ax, y.column, "y")
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    return ax


def _fmt(v: float, column: str) -> str:
    return format_usd(v) if column.endswith("_usd") else f"{v:g}"


def _err(row: pd.Series, column: str, v: float) -> list[list[float]] | None:
    lo, hi = f"{column}_ci_low", f"{column}_ci_high"
    if lo not in row.index or hi not in row.index:
        return None
    return [[max(0.0, v - float(row[lo]))], [max(0.0, float(row[hi]) - v)]]


def write_tune_figures(
    out: Path,
    trials: pd.DataFrame,
    pareto: pd.DataFrame,
    recommended: dict[str, Any] | None,
    objectives: Sequence[Axis],
    constraints: Sequence[Axis],
    params: Sequence[str],
    warnings: Sequence[str] = (),
) -> list[Path]:
    """tune_history.png, tune_params.png and, with a second figure to trade against, tune_front.png."""
    out.mkdir(parents=True, exist_ok=True)
    if _complete(trials).empty:
        return []
    paths = []
    fig = Figure(figsize=(5 * len(objectives), 3.4 + 0.15 * len(warnings)), dpi=DPI)
    for k, o in enumerate(objectives):
        plot_history(trials, o, fig.add_subplot(1, len(objectives), k + 1))
    paths.append(_save(fig, out / "tune_history.png", warnings))
    fig = Figure(figsize=(4.4 * len(params), 3.4 + 0.15 * len(warnings)), dpi=DPI)
    for k, p in enumerate(params):
        plot_objective_vs_param(trials, p, objectives[0], recommended, fig.add_subplot(1, len(params), k + 1))
    paths.append(_save(fig, out / "tune_params.png", warnings))
    second = objectives[1] if len(objectives) > 1 else (constraints[0] if constraints else None)
    if second is not None and second.column != objectives[0].column:
        fig = Figure(figsize=(6, 4.2 + 0.15 * len(warnings)), dpi=DPI)
        plot_front(trials, pareto, objectives[0], second, recommended, fig.add_subplot())
        paths.append(_save(fig, out / "tune_front.png", warnings))
    return paths


def _save(fig: Figure, path: Path, warnings: Sequence[str]) -> Path:
    fig.tight_layout(rect=(0, min(0.4, 0.045 * len(warnings)), 1, 1))
    if warnings:
        fig.text(
            0.01,
            0.005,
            "\n".join(f"warning: {w}" for w in warnings),
            color=INFEASIBLE,
            fontsize=6.5,
            ha="left",
            va="bottom",
            wrap=True,
        )
    fig.savefig(path)
    return path
