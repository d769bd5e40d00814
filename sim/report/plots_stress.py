"""Figures of a reverse stress test (curve.csv, break.json): the crossing probability against shock size with
its Wilson band, the target and the break size; and the liquidation curve (mean bad debt, liquidations and
leakage per run against shock size, 95% bootstrap bands). Matplotlib object API; Okabe-Ito colours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from defistress.sim.report.plots import OKABE_ITO, format_usd  # noqa: E402

DPI = 110
CURVE_LABELS = {
    "bad_debt_usd": "mean bad debt per run",
    "liquidations": "mean liquidations per run",
    "liquidator_value_leakage_usd": "mean liquidator leakage per run",
}


def plot_probability(curve: pd.DataFrame, found: dict[str, Any], threshold: str, p: float, ax: Axes) -> Axes:
    """P(threshold crossed) at each tested size with its 95% Wilson band; the target and the break size."""
    c = curve.sort_values("size")
    x = c["size"].to_numpy(float)
    ax.plot(x, c["probability"], marker="o", color=OKABE_ITO["blue"], label="share of runs crossing")
    ax.fill_between(x, c["p_low"], c["p_high"], color=OKABE_ITO["blue"], alpha=0.2, lw=0, label="95% Wilson")
    ax.axhline(p, color=OKABE_ITO["vermillion"], ls="--", lw=1, label=f"target {p:g}")
    if found.get("break_size") is not None:
        ax.axvline(found["break_size"], color=OKABE_ITO["black"], lw=1, label=f"break size {found['break_size']:.3g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("shock size (0 = FROM, 1 = TO)", fontsize=8)
    ax.set_ylabel("P(crossed)", fontsize=8)
    ax.set_title(f"P({threshold}) by shock size", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    return ax


def plot_curve(curve: pd.DataFrame, metric: str, ax: Axes) -> Axes:
    """One liquidation-curve figure (mean per run) against shock size with its bootstrap band."""
    c = curve.sort_values("size")
    x = c["size"].to_numpy(float)
    col = f"mean_{metric}"
    ax.plot(x, c[col], marker="o", color=OKABE_ITO["orange"])
    ax.fill_between(x, c[f"{col}_ci_low"], c[f"{col}_ci_high"], color=OKABE_ITO["orange"], alpha=0.2, lw=0)
    ax.set_xlabel("shock size", fontsize=8)
    ax.set_title(CURVE_LABELS.get(metric, metric), fontsize=9)
    if metric.endswith("_usd"):
        ax.yaxis.set_major_formatter(FuncFormatter(format_usd))
    ax.tick_params(labelsize=7)
    return ax


def write_stress_figures(out: Path, curve: pd.DataFrame, found: dict[str, Any], threshold: str, p: float) -> list[Path]:
    """`break_probability.png` and `liquidation_curve.png` in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.5, 3.6), dpi=DPI)
    plot_probability(curve, found, threshold, p, fig.add_subplot())
    fig.tight_layout()
    paths = [out / "break_probability.png"]
    fig.savefig(paths[0])
    metrics = [m for m in CURVE_LABELS if f"mean_{m}" in curve]
    fig = Figure(figsize=(4 * max(len(metrics), 1), 3.3), dpi=DPI)
    for i, m in enumerate(metrics):
        plot_curve(curve, m, fig.add_subplot(1, len(metrics), i + 1))
    fig.tight_layout()
    paths.append(out / "liquidation_curve.png")
    fig.savefig(paths[1])
    return paths
