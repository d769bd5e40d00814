"""Plots of the margin library's outputs (kept in sim/ so that protocols.margin needs no matplotlib)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from defistress.sim.report.plots import PALETTE as OKABE_ITO


def _axes(ax, size=(8.0, 4.5)):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot()


def plot_compare(df: pd.DataFrame, ax=None):
    """Grouped bars of maintenance margin (filled) and initial margin (outline) per account and model."""
    ax = _axes(ax)
    accounts = list(dict.fromkeys(df["account"]))
    models = list(dict.fromkeys(df["model"]))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(accounts))
    for j, m in enumerate(models):
        sub = df[df["model"] == m].set_index("account").reindex(accounts)
        colour = OKABE_ITO[j % len(OKABE_ITO)]
        hatch = None if j < len(OKABE_ITO) else "//"
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, sub["mm_usd"], width, color=colour, hatch=hatch, label=m)
        ax.bar(pos, sub["im_usd"], width, fill=False, edgecolor=colour, linewidth=1.0)
    ax.set_xticks(x, accounts, rotation=30, ha="right")
    ax.set_ylabel("requirement, USD (filled: MM, outline: IM)")
    ax.set_title("Margin requirement by model")
    ax.legend(fontsize="small", ncols=2)
    return ax


def plot_backtest(result, ax=None):
    """Realised losses, the forecast requirement and the exceedances of a BacktestResult."""
    ax = _axes(ax)
    f = result.frame
    ax.plot(f["timestamp"], f["loss_usd"], color="#999999", linewidth=0.8, label="realised loss")
    ax.step(f["timestamp"], f["forecast_usd"], where="mid", color=OKABE_ITO[0], label="forecast requirement")
    hit = f[f["exceedance"]]
    ax.scatter(
        hit["timestamp"],
        hit["loss_usd"],
        color=OKABE_ITO[3],
        marker="v",
        zorder=3,
        label=f"exceedances ({result.exceedances})",
    )
    tl = result.traffic_light
    ax.set_title(
        f"{result.model} at {result.confidence:.1%}: {result.exceedances}/{result.n} exceedances, "
        f"Kupiec p={result.kupiec_p:.3f}, {tl.zone}"
    )
    ax.set_ylabel("USD")
    ax.legend(fontsize="small")
    return ax
