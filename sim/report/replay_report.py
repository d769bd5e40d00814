"""The page of a replay with uncertainty bands (`defistress replay`): for each published figure, the band of
the simulated outcome (5-95% over seeds x design samples, the median marked) against the published value and
range; a heat map of the inputs' first-order sensitivity indices; the tables behind both.

No pyplot: figures are `matplotlib.figure.Figure` objects saved as PNG next to `index.html`.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from defistress.sim.report.formatting import format_figure as _fmt
from defistress.sim.report.plots import OKABE_ITO

PAGE = "index.html"


def plot_bands(table: pd.DataFrame) -> Figure | None:
    """One panel per published figure: the simulated band (bar), its median (tick), the published value (dot)
    and range (whisker), on the figure's own scale."""
    rows = table[table["published"].notna()]
    if rows.empty:
        return None
    n = len(rows)
    fig = Figure(figsize=(7.5, 1.1 * n + 0.6))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, (_, r) in zip(axes, rows.iterrows()):
        lo, med, hi = r["band_low"], r["band_median"], r["band_high"]
        plo, phi, pv = r["published_low"], r["published_high"], r["published"]
        finite = [v for v in (lo, hi, plo, phi, pv) if v is not None and np.isfinite(v)]
        if lo is not None and np.isfinite(lo):
            ax.barh(0, hi - lo, left=lo, height=0.5, color=OKABE_ITO["sky_blue"], label="simulated 5-95%")
            ax.plot([med, med], [-0.25, 0.25], color=OKABE_ITO["blue"], lw=2, label="simulated median")
        ax.errorbar(
            [pv],
            [0],
            xerr=[[pv - plo], [phi - pv]],
            fmt="o",
            color=OKABE_ITO["vermillion"],
            capsize=4,
            label="published (range)",
        )
        span = (max(finite) - min(finite)) or abs(max(finite)) or 1.0
        ax.set_xlim(min(finite) - 0.15 * span, max(finite) + 0.15 * span)
        ax.set_yticks([])
        verdict = {True: "inside", False: "OUTSIDE"}.get(r["inside"], "no band")
        ax.set_title(f"{r['key']} ({r['unit']}): {verdict}", fontsize=9, loc="left")
    axes[0].legend(fontsize=7, loc="upper right", ncols=3)
    fig.tight_layout()
    return fig


def plot_sensitivity(table: pd.DataFrame) -> Figure | None:
    """Heat map of first-order indices S1 (rows: published figures, columns: inputs) and the seed's share."""
    cols = [c for c in table.columns if c.startswith("S1:")]
    rows = table[table["published"].notna()]
    if not cols or rows.empty:
        return None
    data = rows[cols + ["seed_share"]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(data).any():
        return None
    labels = [c[3:] for c in cols] + ["(seed)"]
    fig = Figure(figsize=(1.0 + 0.8 * len(labels), 0.5 * len(rows) + 1.6))
    ax = fig.subplots()
    im = ax.imshow(np.nan_to_num(data, nan=0.0), vmin=0, vmax=1, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), list(rows["key"]), fontsize=8)
    for (i, j), v in np.ndenumerate(data):
        ax.text(j, i, "n/a" if not math.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="share of variance")
    ax.set_title("first-order indices (RBD-FAST) and the seed's share", fontsize=9)
    fig.tight_layout()
    return fig


def write_replay_report(scenario: str, table: pd.DataFrame, manifest: dict, out: Path) -> Path:
    """index.html and its PNG figures in `out`."""
    out = Path(out)
    figs = []
    for name, fig in (("bands.png", plot_bands(table)), ("sensitivity.png", plot_sensitivity(table))):
        if fig is not None:
            fig.savefig(out / name, dpi=110)
            figs.append(name)
    e = html.escape
    pub = table[table["published"].notna()]
    head = ["figure", "published (range)", "band 5%", "median", "band 95%", "inside", "source"]
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(c))}</td>"
            for c in (
                r["key"],
                f"{_fmt(r['published'])} ({_fmt(r['published_low'])} to {_fmt(r['published_high'])})",
                _fmt(r["band_low"]),
                _fmt(r["band_median"]),
                _fmt(r["band_high"]),
                {True: "yes", False: "no"}.get(r["inside"], "n/a"),
                r["source"],
            )
        )
        + "</tr>"
        for _, r in pub.iterrows()
    )
    inputs = "".join(
        f"<li><code>{e(u['name'])}</code> ({e(', '.join([u['key']] if isinstance(u['key'], str) else u['key']))}): "
        f"{e(str(u.get('range') or u.get('values')))}, {e(u['description'])}</li>"
        for u in manifest.get("inputs", [])
    )
    assumed = "".join(f"<li>{e(a)}</li>" for a in manifest.get("assumed", []))
    images = "".join(f'<p><img src="{e(f)}" alt="{e(f)}"></p>' for f in figs)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(scenario)} scorecard</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;font-size:13px}</style></head><body>"
        f"<h1>{e(scenario)}: scorecard with uncertainty bands</h1>"
        f"<p>{manifest.get('runs', 0)} runs: {manifest.get('samples')} design samples x "
        f"{len(manifest.get('seeds', []))} seeds; band {manifest.get('quantiles')}; "
        f"{e(str(manifest.get('design')))}, design seed {manifest.get('design_seed')}.</p>"
        f"<table><thead><tr>{''.join(f'<th>{e(h)}</th>' for h in head)}</tr></thead><tbody>{body}</tbody></table>"
        f"{images}<h2>Uncertain inputs</h2><ul>{inputs or '<li>none declared</li>'}</ul>"
        f"<h2>Assumed, not varied</h2><ul>{assumed or '<li>none listed</li>'}</ul>"
        "<p>All figures: scorecard.csv (every vocabulary figure, with sensitivity indices).</p></body></html>"
    )
    path = out / PAGE
    path.write_text(page, encoding="utf-8")
    return path
