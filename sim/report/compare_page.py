"""compare.html of a regime comparison (`defistress compare`), rendered from templates/compare.html: the means per
regime with their spread over seeds, the differences that answer "does portfolio margin net capital, and does it
spread losses", the per-venue figures, the figures with what to see in them, and every run (transposed: one column
per run, since a row per run is 30 columns wide).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from defistress.sim.report.formatting import format_value
from defistress.sim.report.render import render
from defistress.sim.report.tables import Cell, Table, cell, text

#: figure -> (label, format kind, definition) of a regime comparison's per-run figures
FIGURE_TERMS: dict[str, tuple[str, str, str]] = {
    "capital_required_usd": ("Capital required", "usd", "Σ initial margin of the multi-venue accounts at the start"),
    "capital_required_silo_usd": ("Capital required if siloed", "usd", "the same accounts margined venue by venue"),
    "capital_efficiency": ("Capital efficiency", "x", "siloed capital required / capital required"),
    "capital_posted_usd": ("Capital posted", "usd", "the accounts' equity at the start"),
    "margin_shortfall_max_usd": (
        "Largest margin shortfall",
        "usd",
        "most the accounts' maintenance margin exceeded their equity, in any block",
    ),
    "principals_unhealthy_max": ("Most accounts below maintenance", "int", "in any block"),
    "principals_flat_end": ("Accounts closed out by the end", "int", "with no position left"),
    "liquidations": ("Liquidations of their rows", "int", "liquidation events on the accounts' venue rows"),
    "liquidation_volume_usd": ("Liquidation volume of their rows", "usd", "debt those liquidations repaid"),
    "written_off_usd": ("Written off", "usd", "bad debt written off on the accounts' rows"),
    "unbacked_end_usd": (
        "Unbacked at the end",
        "usd",
        "the rows' negative equity at the end, backed only by their positions on other venues",
    ),
    "venue_bad_debt_usd": ("Venues' bad debt (all accounts)", "usd", "bad debt of the venues, every account"),
    "principal_pnl_usd": ("The accounts' PnL", "usd", "change of the accounts' equity over the run"),
    "run_bad_debt_usd": ("Bad debt of the run", "usd", "every protocol, every account (summary.json bad_debt_usd)"),
    "run_liquidations": ("Liquidations of the run", "int", "every protocol, every account"),
}
#: the differences block of compare.json -> (label, kind, meaning)
DIFFERENCE_TERMS: dict[str, tuple[str, str, str]] = {
    "netting_benefit_usd": (
        "Netting benefit",
        "usd",
        "capital required: silo − portfolio (positive: portfolio needs less)",
    ),
    "capital_efficiency_portfolio": ("Capital efficiency under portfolio", "x", "siloed / portfolio requirement"),
    "liquidations_avoided": ("Liquidations avoided", "num", "silo − portfolio (positive: fewer under portfolio)"),
    "written_off_change_usd": ("Change in write-offs", "usd", "portfolio − silo (positive: more under portfolio)"),
    "unbacked_change_usd": ("Change in unbacked debt", "usd", "portfolio − silo"),
    "venue_bad_debt_change_usd": ("Change in venues' bad debt", "usd", "portfolio − silo"),
    "principal_pnl_change_usd": ("Change in the accounts' PnL", "usd", "portfolio − silo"),
    "venues_losing_more_under_portfolio": (
        "Venues losing more under portfolio",
        "plain",
        "written off plus unbacked larger under portfolio",
    ),
    "losses_spread": ("Losses spread to other venues", "plain", "true when any venue loses more under portfolio"),
}
#: what each figure of compare_figures shows and what to look for
FIGURE_CAPTIONS = {
    "regimes": (
        "Capital and losses by regime",
        "Bars are means over seeds, whiskers the lowest and highest seed. Portfolio margin should need less capital "
        "(left); watch whether it buys that with more liquidations or more unbacked debt (middle, right).",
    ),
    "venues": (
        "Per venue",
        "Liquidations of the multi-venue accounts' rows and each venue's bad debt (all its accounts), by regime: a "
        "venue whose bars grow under portfolio takes losses the netting moved onto it.",
    ),
    "shortfall": (
        "Shortfall over time (first seed)",
        "The accounts' maintenance margin (dotted) and how far their equity fell short of it (solid), per regime: "
        "a shortfall that lasts is a loss the liquidations did not stop.",
    ),
}


def _stats(col: pd.Series) -> tuple[float | None, float | None, float | None, int]:
    v = pd.to_numeric(col, errors="coerce").dropna()
    if not len(v):
        return None, None, None, 0
    return float(v.mean()), float(v.min()), float(v.max()), int(len(v))


def means_table(df: pd.DataFrame, regimes: list[str]) -> Table:
    """Rows: the figures; columns: regimes; each cell the mean over seeds and, with several seeds, its range."""
    rows = []
    for key, (label, kind, meaning) in FIGURE_TERMS.items():
        if key not in df:
            continue
        cells = []
        for r in regimes:
            mean, lo, hi, n = _stats(df.loc[df["regime"] == r, key])
            if mean is None:
                cells.append(Cell("–", "", "muted"))
            elif n > 1:
                spread = f"{format_value(lo, kind)} to {format_value(hi, kind)}"
                cells.append(Cell(f"{format_value(mean, kind)} ({spread})", f"mean of {n} seeds", "num"))
            else:
                cells.append(cell(mean, kind))
        rows.append([text(label, title=meaning), *cells])
    n = df["seed"].nunique()
    return Table(
        ["figure", *regimes],
        rows,
        caption=f"Means over {n} seed(s)"
        + (", the lowest to highest seed in brackets" if n > 1 else "")
        + ": the same market path and agents under each regime, only the margin rule differs.",
    )


def differences_table(diff: dict) -> Table:
    rows = []
    for key, v in diff.items():
        label, kind, meaning = DIFFERENCE_TERMS.get(key, (key.replace("_", " "), "plain", ""))
        value = ", ".join(v) or "none" if isinstance(v, list) else v
        rows.append([text(label, title=meaning), cell(value, kind), text(meaning, cls="muted")])
    return Table(["difference", "value", "meaning"], rows, caption="What portfolio margin changed against silo.")


def venue_table(df: pd.DataFrame, regimes: list[str]) -> Table | None:
    venues = sorted({c[: -len("_unbacked_end_usd")] for c in df.columns if c.endswith("_unbacked_end_usd")} - {""})
    if not venues:
        return None
    figs = (
        ("liquidations", "liquidations of their rows", "int"),
        ("written_off_usd", "written off", "usd"),
        ("unbacked_end_usd", "unbacked at the end", "usd"),
        ("venue_bad_debt_usd", "venue's bad debt (all accounts)", "usd"),
    )
    rows = []
    for v in venues:
        for f, label, kind in figs:
            col = f"{v}_{f}"
            if col in df:
                rows.append(
                    [text(f"{v}: {label}"), *[cell(_stats(df.loc[df["regime"] == r, col])[0], kind) for r in regimes]]
                )
    return Table(["venue and figure", *regimes], rows, caption="Per venue, means over seeds.")


def runs_table(df: pd.DataFrame) -> Table:
    """Every run, one column each ('silo, seed 1'), one row per figure (a row per run would be too wide)."""
    head = [f"{r}, seed {s}" for r, s in zip(df["regime"], df["seed"])]
    rows = []
    for c in df.columns:
        if c in ("regime", "seed"):
            continue
        label, kind, meaning = FIGURE_TERMS.get(c, (c.replace("_", " "), _kind(c), ""))
        vals = df[c].tolist()
        rows.append([text(label, title=meaning), *[cell(_clean(v), kind) for v in vals]])
    return Table(["figure", *head], rows, caption="Every run of the comparison (its folder holds its own report).")


def _kind(col: str) -> str:
    return "usd" if col.endswith("_usd") else "int" if col.endswith("liquidations") else "plain"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and np.isnan(v):
        return None
    return v if not isinstance(v, str) else v.replace(">", " > ").replace(",", ", ") or "–"


def compare_html(df: pd.DataFrame, result: dict, figures: list[Path]) -> str:
    """The page as one string (figures linked as the PNG files beside it)."""
    regimes = list(result.get("regimes") or dict.fromkeys(df["regime"]))
    tables = [means_table(df, regimes)]
    if result.get("difference"):
        tables.append(differences_table(result["difference"]))
    venues = venue_table(df, regimes)
    if venues is not None:
        tables.append(venues)
    figs = [
        {
            "name": f.stem,
            "title": FIGURE_CAPTIONS.get(f.stem, (f.stem, ""))[0],
            "caption": FIGURE_CAPTIONS.get(f.stem, ("", ""))[1],
            "src": f.name,
            "file": "",
        }
        for f in figures
    ]
    return render(
        "compare.html",
        scenario=result["scenario"],
        seeds=result["seeds"],
        regimes=regimes,
        tables=tables,
        figures=figs,
        runs=runs_table(df),
    )
