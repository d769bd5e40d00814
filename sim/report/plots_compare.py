"""Figures of a regime comparison (matplotlib object API, Okabe-Ito colours): capital and losses per regime (means,
whiskers from the lowest to the highest seed), per venue, and the margin shortfall of the multi-venue accounts over
time for the first seed. Money axes are in $M."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from defistress.sim.report.plots import OKABE_ITO, money_axis  # noqa: E402

REGIME_COLORS = {"silo": OKABE_ITO["vermillion"], "portfolio": OKABE_ITO["blue"]}
FIGSIZE = (9.0, 3.6)  # inches
DPI = 110


def compare_figures(df: pd.DataFrame, out: Path) -> list[Path]:
    """Write the comparison PNGs into `out`; returns their paths."""
    paths = [_bars(df, out), _venues(df, out)]
    ts = _shortfall(df, out)
    if ts is not None:
        paths.append(ts)
    return paths


def _spread(df: pd.DataFrame, regimes: list[str], col: str) -> tuple[list[float], list[list[float]]]:
    """Means per regime and the (below, above) distances to the lowest and highest seed, for error bars."""
    means, lo, hi = [], [], []
    for r in regimes:
        v = pd.to_numeric(df.loc[df["regime"] == r, col], errors="coerce").dropna()
        m = float(v.mean()) if len(v) else 0.0
        means.append(m)
        lo.append(m - float(v.min()) if len(v) else 0.0)
        hi.append(float(v.max()) - m if len(v) else 0.0)
    return means, [lo, hi]


def _bars(df: pd.DataFrame, out: Path) -> Path:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    panels = (
        ("capital_required_usd", "capital required (initial margin)", True),
        ("liquidations", "liquidations of their rows", False),
        ("unbacked_end_usd", "unbacked debt at the end", True),
    )
    regimes = list(dict.fromkeys(df["regime"]))
    several = df["seed"].nunique() > 1
    for k, (col, title, money) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        means, err = _spread(df, regimes, col)
        ax.bar(
            regimes,
            means,
            yerr=err if several else None,
            capsize=4,
            color=[REGIME_COLORS.get(r, OKABE_ITO["black"]) for r in regimes],
        )
        if money:
            money_axis(ax)
        ax.set_title(title + (" ($M)" if money else ""), fontsize=9)
        ax.tick_params(labelsize=8)
    seeds = df["seed"].nunique()
    fig.suptitle(
        f"Multi-venue accounts by margin regime (mean of {seeds} seed(s)" + (", whiskers: range)" if several else ")"),
        fontsize=10,
    )
    fig.tight_layout()
    path = out / "regimes.png"
    fig.savefig(path)
    return path


def _venues(df: pd.DataFrame, out: Path) -> Path:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    regimes = list(dict.fromkeys(df["regime"]))
    venues = sorted({c[: -len("_unbacked_end_usd")] for c in df.columns if c.endswith("_unbacked_end_usd")} - {""})
    for k, (suffix, title, money) in enumerate(
        (
            ("_liquidations", "liquidations of multi-venue rows", False),
            ("_venue_bad_debt_usd", "bad debt of the venue, all accounts ($M)", True),
        )
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        width = 0.8 / max(len(regimes), 1)
        shown: list[float] = []
        for j, r in enumerate(regimes):
            vals = [pd.to_numeric(df.loc[df["regime"] == r, f"{v}{suffix}"], errors="coerce").mean() for v in venues]
            shown += [float(x) for x in vals if x == x]
            ax.bar(
                [i + j * width for i in range(len(venues))],
                vals,
                width,
                label=r,
                color=REGIME_COLORS.get(r, OKABE_ITO["black"]),
            )
        ax.set_xticks([i + width * (len(regimes) - 1) / 2 for i in range(len(venues))], venues)
        if money:
            money_axis(ax, shown)  # log scale when one venue's loss dwarfs another's
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "venues.png"
    fig.savefig(path)
    return path


def _shortfall(df: pd.DataFrame, out: Path) -> Path | None:
    seed = int(df["seed"].iloc[0])
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for r in dict.fromkeys(df["regime"]):
        f = out / f"{r}-seed{seed}" / "timeseries.parquet"
        if not f.exists():
            continue
        ts = pd.read_parquet(f, columns=["time_s", "regime_shortfall_usd", "regime_mm_usd"])
        hours = ts["time_s"] / 3600.0
        ax.plot(hours, ts["regime_shortfall_usd"], color=REGIME_COLORS.get(r), label=f"{r}: shortfall")
        ax.plot(hours, ts["regime_mm_usd"], color=REGIME_COLORS.get(r), ls="dotted", label=f"{r}: maintenance")
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("time (h)")
    money_axis(ax)
    ax.set_ylabel("USD ($M)")
    ax.set_title(f"Maintenance margin and shortfall of multi-venue accounts (seed {seed})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "shortfall.png"
    fig.savefig(path)
    return path
