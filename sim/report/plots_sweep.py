"""Figures of a sweep's risk table (risk.csv): each risk metric against each swept parameter with its bootstrap
band, and a heat map when two parameters are swept. A metric that rests on too few seeds for its quantile
carries the warning on the figure (`sim/analysis/seed_adequacy.py`). Matplotlib object API; Okabe-Ito colours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from defistress.sim.report.plots import OKABE_ITO, PALETTE, format_usd  # noqa: E402

DPI = 110
#: lines drawn per panel at most (one per combination of the other swept parameters)
MAX_LINES = 8
#: risk.csv's metric columns and their labels
LABELS = {
    "var95_bad_debt_usd": "VaR95 of bad debt",
    "evar99_bad_debt_usd": "EVaR99 of bad debt",
    "es99_bad_debt_usd": "ES99 of bad debt",
    "lar95_liquidation_usd": "LaR95 of liquidation volume",
    "mean_bad_debt_usd": "mean bad debt",
}


def label(metric: str) -> str:
    return LABELS.get(metric, metric.replace("_", " "))


def metric_columns(risk: pd.DataFrame) -> list[str]:
    """Columns of a risk table that have a bootstrap interval beside them."""
    return [c for c in risk.columns if f"{c}_ci_low" in risk.columns and f"{c}_ci_high" in risk.columns]


def param_columns(risk: pd.DataFrame) -> list[str]:
    return [c for c in risk.columns if c.startswith("param:")]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.removeprefix("param:")).strip("-").lower()


def cell_text(v: float, metric: str) -> str:
    """How a heat-map cell prints its value (money short, others with 3 significant figures)."""
    if not np.isfinite(v):
        return "n/a"
    return format_usd(v) if metric.endswith("_usd") else f"{v:.3g}"


def _numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s)) and not pd.api.types.is_bool_dtype(s)


def _warn(fig: Figure, warnings: Sequence[str]) -> None:
    if warnings:
        fig.text(
            0.01,
            0.005,
            "\n".join(f"warning: {w}" for w in warnings),
            color=OKABE_ITO["vermillion"],
            fontsize=7,
            ha="left",
            va="bottom",
            wrap=True,
        )


def plot_metric_vs_param(risk: pd.DataFrame, param: str, metric: str, ax: Axes | None = None) -> Axes:
    """One risk metric against one swept parameter: the point estimate per grid point and its 95% bootstrap
    band; one line per combination of the other swept parameters (at most MAX_LINES)."""
    if ax is None:
        ax = Figure(figsize=(5, 3.2), dpi=DPI).add_subplot()
    others = [c for c in param_columns(risk) if c != param]
    groups = list(risk.groupby(others, dropna=False, sort=True)) if others else [((), risk)]
    numeric = _numeric(risk[param])
    cats = list(dict.fromkeys(risk[param].astype(str))) if not numeric else []
    for i, (key, df) in enumerate(groups[:MAX_LINES]):
        df = df.sort_values(param) if numeric else df
        x = df[param].to_numpy(float) if numeric else np.array([cats.index(str(v)) for v in df[param]], float)
        y = df[metric].to_numpy(float)
        lo, hi = df[f"{metric}_ci_low"].to_numpy(float), df[f"{metric}_ci_high"].to_numpy(float)
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{o.removeprefix('param:').rsplit('.', 1)[-1]}={v}" for o, v in zip(others, key)) or None
        color = PALETTE[i % len(PALETTE)]
        ax.plot(x, y, marker="o", color=color, label=name)
        if numeric:
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
        else:
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", color=color, capsize=3)
    if not numeric:
        ax.set_xticks(range(len(cats)), cats)
    ax.set_xlabel(param.removeprefix("param:"), fontsize=8)
    ax.set_ylabel(label(metric), fontsize=8)
    ax.set_title(f"{label(metric)} (95% bootstrap band)", fontsize=9)
    if metric.endswith("_usd"):
        ax.yaxis.set_major_formatter(FuncFormatter(format_usd))
    ax.tick_params(labelsize=7)
    if others and len(groups) > 1:
        ax.legend(fontsize=6)
    return ax


def plot_heatmap(risk: pd.DataFrame, x: str, y: str, metric: str, ax: Axes | None = None) -> Axes:
    """A risk metric over two swept parameters, each cell printed with its value."""
    if ax is None:
        ax = Figure(figsize=(5, 4), dpi=DPI).add_subplot()
    table = risk.pivot_table(index=y, columns=x, values=metric, aggfunc="first", dropna=False)
    values = table.to_numpy(float)
    im = ax.imshow(values, origin="lower", aspect="auto", cmap="YlOrRd")
    ax.set_xticks(range(table.shape[1]), [f"{v:g}" if isinstance(v, float) else str(v) for v in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v) for v in table.index])
    finite = values[np.isfinite(values)]
    mid = (finite.min() + finite.max()) / 2 if len(finite) else 0.0
    for (i, j), v in np.ndenumerate(values):
        ax.text(
            j,
            i,
            cell_text(v, metric),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if np.isfinite(v) and v > mid else "black",
        )
    ax.set_xlabel(x.removeprefix("param:"), fontsize=8)
    ax.set_ylabel(y.removeprefix("param:"), fontsize=8)
    ax.set_title(label(metric), fontsize=9)
    ax.tick_params(labelsize=7)
    cbar = ax.figure.colorbar(im, ax=ax)
    if metric.endswith("_usd"):
        cbar.ax.yaxis.set_major_formatter(FuncFormatter(format_usd))
    cbar.ax.tick_params(labelsize=7)
    return ax


def write_sweep_figures(risk: pd.DataFrame, out: Path, warnings: dict[str, list[str]] | None = None) -> list[Path]:
    """`sweep_<param>.png` (every metric against the parameter) per swept parameter and, with two swept
    parameters, `heatmap_<metric>.png` per metric; `warnings` (metric -> lines) go under the panels."""
    out.mkdir(parents=True, exist_ok=True)
    warnings = warnings or {}
    metrics, params = metric_columns(risk), param_columns(risk)
    ok = risk[risk["runs"] > 0] if "runs" in risk else risk
    paths = []
    for p in params:
        n = len(metrics)
        fig = Figure(figsize=(4.2 * min(n, 3), 3.3 * -(-n // 3) + 0.5), dpi=DPI)
        for k, m in enumerate(metrics):
            plot_metric_vs_param(ok, p, m, fig.add_subplot(-(-n // 3), min(n, 3), k + 1))
        notes = list(dict.fromkeys(w for m in metrics for w in warnings.get(m, [])))
        fig.tight_layout(rect=(0, 0.03 * len(notes), 1, 1))
        _warn(fig, notes)
        path = out / f"sweep_{slug(p)}.png"
        fig.savefig(path)
        paths.append(path)
    if len(params) == 2:
        for m in metrics:
            fig = Figure(figsize=(5.5, 4.4), dpi=DPI)
            plot_heatmap(ok, params[0], params[1], m, fig.add_subplot())
            notes = warnings.get(m, [])
            fig.tight_layout(rect=(0, 0.05 * len(notes), 1, 1))
            _warn(fig, notes)
            path = out / f"heatmap_{slug(m)}.png"
            fig.savefig(path)
            paths.append(path)
    return paths
