"""A sweep folder's figures (figures/*.png from risk.csv) and the seed warnings for its quantiles."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from defistress.sim.analysis.metric_expr import MetricError, parse_metric
from defistress.sim.analysis.seed_adequacy import seed_warning
from defistress.sim.experiments.sweep_folder import FIGURES
from defistress.sim.experiments.sweep_results import RISK

__all__ = ["FIGURES", "quantile_warnings", "write_figures"]


def quantile_warnings(risk: pd.DataFrame) -> dict[str, list[str]]:
    """Metric column -> warning lines, for quantile metrics computed from fewer seeds than they need."""
    from defistress.sim.report.plots_sweep import label, metric_columns

    runs = risk.loc[risk["runs"] > 0, "runs"] if "runs" in risk else pd.Series(dtype=int)
    if runs.empty:
        return {}
    seeds = int(runs.min())
    out: dict[str, list[str]] = {}
    for col in metric_columns(risk):
        try:
            q = parse_metric(col, None).quantile
        except MetricError:
            continue
        w = seed_warning(label(col), q, seeds) if q is not None else None
        if w:
            out[col] = [w]
    return out


def write_figures(out: Path) -> tuple[list[Path], list[str]]:
    """Figures of `out/risk.csv` into `out/figures/`; returns their paths and the warnings (also on them)."""
    from defistress.sim.report.plots_sweep import write_sweep_figures

    path = Path(out) / RISK
    if not path.is_file():
        return [], []
    risk = pd.read_csv(path)
    if not len(risk) or "runs" not in risk or not (risk["runs"] > 0).any():
        return [], []
    notes = quantile_warnings(risk)
    paths = write_sweep_figures(risk, Path(out) / FIGURES, notes)
    return paths, list(dict.fromkeys(w for ws in notes.values() for w in ws))
