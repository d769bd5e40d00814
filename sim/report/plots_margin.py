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


#: marker and colour of a model that cannot hold a book (never drawn as a zero bar)
UNSUPPORTED_MARK = "x"
UNSUPPORTED_COLOR = "#9a6700"
BOOK_COLUMNS = 2  # panels per row
BOOK_ROW_HEIGHT = 2.6  # inches
#: a book whose requirements span more than this factor across models gets a log axis
LOG_RANGE = 100.0


def _unsupported(sub: pd.DataFrame) -> np.ndarray:
    if "unsupported_positions" in sub:
        return (sub["unsupported_positions"].fillna(0).to_numpy() > 0) | sub["mm_usd"].isna().to_numpy()
    return sub["mm_usd"].isna().to_numpy()


def plot_compare_books(df: pd.DataFrame, fig=None) -> list:
    """One panel per book (account), each on its own scale, so a small book is not flattened against a large one:
    bars of maintenance margin (filled) and initial margin (outline) per model. A model that cannot hold the book
    (unsupported positions) gets a marked 'n/a' slot, never a bar of zero. Returns the panels' Axes."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    from defistress.sim.report.formatting import format_usd

    accounts = list(dict.fromkeys(df["account"]))
    models = list(dict.fromkeys(df["model"]))
    n = max(len(accounts), 1)
    ncols = min(n, BOOK_COLUMNS)
    nrows = -(-n // ncols)
    fig = fig or Figure(figsize=(9.0, BOOK_ROW_HEIGHT * nrows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel().tolist()
    x = np.arange(len(models))
    for i, ax in enumerate(axes):
        if i >= len(accounts):
            ax.set_axis_off()
            continue
        sub = df[df["account"] == accounts[i]].set_index("model").reindex(models)
        flag = _unsupported(sub)
        for j, m in enumerate(models):
            colour = OKABE_ITO[j % len(OKABE_ITO)]
            if flag[j]:
                continue
            ax.bar(j, sub["mm_usd"].iloc[j], 0.7, color=colour, label=m)
            ax.bar(j, sub["im_usd"].iloc[j], 0.7, fill=False, edgecolor=colour, linewidth=1.0)
        top = float(np.nanmax(np.r_[sub["im_usd"].to_numpy(dtype=float), 1.0]))
        ax.set_ylim(0, top * 1.25)
        for j in np.flatnonzero(flag).tolist():
            k = sub["unsupported_positions"].iloc[j] if "unsupported_positions" in sub else 0
            ax.plot(j, top * 0.04, marker=UNSUPPORTED_MARK, color=UNSUPPORTED_COLOR, ms=8, mew=2)
            ax.text(
                j,
                top * 0.1,
                "n/a" + (f"\n{int(k)} pos." if k else ""),
                ha="center",
                va="bottom",
                fontsize=7,
                color=UNSUPPORTED_COLOR,
            )
        ax.set_xticks(x, models, rotation=35, ha="right", fontsize=7)
        for lbl, f in zip(ax.get_xticklabels(), flag):
            if f:
                lbl.set_color(UNSUPPORTED_COLOR)
        ax.yaxis.set_major_formatter(FuncFormatter(format_usd))
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(str(accounts[i]), fontsize=9)
    fig.suptitle(
        "Margin requirement by model, one book per panel on its own scale (filled: MM, outline: IM; x / n/a: the "
        "model's venue cannot hold the book)",
        fontsize=9,
    )
    return axes[: len(accounts)]


def plot_compare(df: pd.DataFrame, ax=None):
    """Grouped bars of maintenance margin (filled) and initial margin (outline) per account and model, on a log
    axis (books differ by orders of magnitude); a model that cannot hold a book gets an x at the axis, no bar."""
    ax = _axes(ax)
    accounts = list(dict.fromkeys(df["account"]))
    models = list(dict.fromkeys(df["model"]))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(accounts))
    lowest, marks = [], []
    for j, m in enumerate(models):
        sub = df[df["model"] == m].set_index("account").reindex(accounts)
        colour = OKABE_ITO[j % len(OKABE_ITO)]
        hatch = None if j < len(OKABE_ITO) else "//"
        pos = x - 0.4 + width * (j + 0.5)
        flag = _unsupported(sub)
        mm = np.where(flag, np.nan, sub["mm_usd"].to_numpy(dtype=float))
        im = np.where(flag, np.nan, sub["im_usd"].to_numpy(dtype=float))
        ax.bar(pos[~flag], mm[~flag], width, color=colour, hatch=hatch, label=m)
        ax.bar(pos[~flag], im[~flag], width, fill=False, edgecolor=colour, linewidth=1.0)
        marks += pos[flag].tolist()
        lowest += [v for v in mm[~flag] if v > 0]
    ax.set_yscale("log")
    bottom = max(min(lowest, default=1.0) / 3, 0.5)
    ax.set_ylim(bottom=bottom)
    if marks:
        ax.plot(marks, [bottom * 1.3] * len(marks), ls="", marker=UNSUPPORTED_MARK, color=UNSUPPORTED_COLOR)
    ax.set_xticks(x, accounts, rotation=30, ha="right")
    ax.set_ylabel("requirement, USD, log scale (filled: MM, outline: IM; x: unsupported)")
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
