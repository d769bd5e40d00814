"""Figures of a regime comparison (matplotlib object API, Okabe-Ito colours): capital and losses per regime,
and the margin shortfall of the multi-venue accounts over time for the first seed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from defistress.sim.report.plots import OKABE_ITO  # noqa: E402

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


def _bars(df: pd.DataFrame, out: Path) -> Path:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    panels = (
        ("capital_required_usd", "capital required (IM), USD"),
        ("liquidations", "liquidations"),
        ("unbacked_end_usd", "unbacked debt at the end, USD"),
    )
    regimes = list(dict.fromkeys(df["regime"]))
    for k, (col, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        means = [pd.to_numeric(df.loc[df["regime"] == r, col], errors="coerce").mean() for r in regimes]
        ax.bar(regimes, means, color=[REGIME_COLORS.get(r, OKABE_ITO["black"]) for r in regimes])
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle("Multi-venue accounts by margin regime (mean over seeds)", fontsize=10)
    fig.tight_layout()
    path = out / "regimes.png"
    fig.savefig(path)
    return path


def _venues(df: pd.DataFrame, out: Path) -> Path:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    regimes = list(dict.fromkeys(df["regime"]))
    venues = sorted({c[: -len("_unbacked_end_usd")] for c in df.columns if c.endswith("_unbacked_end_usd")} - {""})
    for k, (suffix, title) in enumerate(
        (
            ("_liquidations", "liquidations of multi-venue rows"),
            ("_venue_bad_debt_usd", "bad debt of the venue (all accounts), USD"),
        )
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        width = 0.8 / max(len(regimes), 1)
        for j, r in enumerate(regimes):
            vals = [pd.to_numeric(df.loc[df["regime"] == r, f"{v}{suffix}"], errors="coerce").mean() for v in venues]
            ax.bar(
                [i + j * width for i in range(len(venues))],
                vals,
                width,
                label=r,
                color=REGIME_COLORS.get(r, OKABE_ITO["black"]),
            )
        ax.set_xticks([i + width * (len(regimes) - 1) / 2 for i in range(len(venues))], venues)
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
    ax.set_xlabel("hours")
    ax.set_ylabel("USD")
    ax.set_title(f"Maintenance margin and shortfall of multi-venue accounts (seed {seed})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "shortfall.png"
    fig.savefig(path)
    return path
