"""Margin regimes side by side: the same scenario, seeds and shock paths under each regime.

`compare_regimes` runs every (regime, seed) pair into its own run folder (skipping pairs already finished,
so a killed comparison resumes), then writes `compare.csv` (one row per run), `compare.json` (means per
regime and the differences between regimes) and `compare.html` with its figures.

The comparison folder records the scenario it was made with (its hash after overrides, in the marker
`.defistress.json`): a rerun with a different scenario or different overrides is refused (its runs would be
pooled with the earlier ones) unless `force`, which discards the earlier runs. A folder that is not a
comparison folder is never written into (sim/experiments/outdir.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from defistress.scenarios.loader import ScenarioError, load
from defistress.sim.experiments.outdir import check_out, is_ours, make_folder, write_file_atomically

REGIMES = ("silo", "portfolio")
#: per-run figures compared between regimes (from summary.json's `margin` block and top level)
FIGURES = (
    "capital_required_usd",
    "capital_required_silo_usd",
    "capital_efficiency",
    "capital_posted_usd",
    "margin_shortfall_max_usd",
    "principals_unhealthy_max",
    "principals_flat_end",
    "liquidations",
    "liquidation_volume_usd",
    "written_off_usd",
    "unbacked_end_usd",
    "venue_bad_debt_usd",
    "principal_pnl_usd",
)
#: per-venue figures of the multi-venue rows (columns "{venue}_{figure}")
VENUE_FIGURES = ("liquidations", "written_off_usd", "unbacked_end_usd", "venue_bad_debt_usd")


def parse_regimes(text: str) -> list[str]:
    regimes = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in regimes if r not in REGIMES]
    if bad or not regimes:
        raise ValueError(f"--regimes {text!r}: allowed a comma-separated list of {list(REGIMES)}")
    return list(dict.fromkeys(regimes))


def _run_one(scenario, regime: str, seed: int, overrides: list[str], folder: Path, report: bool) -> dict:
    from defistress.sim.experiments.runs import run_scenario, write_run

    if is_ours(folder, "run") and (folder / "summary.json").exists():
        return json.loads((folder / "summary.json").read_text())
    result = run_scenario(load(scenario, [*overrides, f"margin.regime={regime}"]), seed)
    write_run(result, folder, report=report, force=True)  # a leftover run of this comparison, unfinished
    return json.loads((folder / "summary.json").read_text())


def row_of(summary: dict, regime: str, seed: int) -> dict:
    """One comparison row from a run's summary.json."""
    m = summary.get("margin") or {}
    row = {
        "regime": regime,
        "seed": seed,
        **{k: m.get(k) for k in FIGURES},
        "run_bad_debt_usd": summary.get("bad_debt_usd"),
        "run_liquidations": summary.get("liquidations"),
        "liquidation_order": ">".join(m.get("liquidation_order", [])),
        "protocols_breached": ",".join(summary.get("contagion", {}).get("protocols_breached", []) or []),
    }
    for vid, v in (m.get("by_venue") or {}).items():
        for k in VENUE_FIGURES:
            row[f"{vid}_{k}"] = v[k]
    return row


def compare_regimes(
    scenario,
    regimes: list[str],
    seeds: list[int],
    out: Path,
    overrides: list[str] | None = None,
    report: bool = False,
    on_done: Callable[[int, int], None] | None = None,
    force: bool = False,
) -> pd.DataFrame:
    """Run every regime on every seed; returns one row per run and writes the comparison files.

    `out` must be new, empty or a comparison folder of the same scenario (after overrides); `force` discards
    a comparison folder made with another one. Checked before any run starts."""
    overrides = list(overrides or [])
    if not regimes or not seeds:
        raise ValueError(f"compare: needs at least one regime and one seed, got regimes={regimes}, seeds={seeds}")
    loaded = load(scenario, overrides)
    if not any(a.kind == "multi_venue" for a in loaded.scenario.agents):
        raise ScenarioError(
            loaded.source,
            [
                "agents: no 'multi_venue' population, so every regime would be identical; "
                "add one (see the built-in 'inter-protocol-pm')"
            ],
        )
    out = Path(out)
    config = {"scenario": loaded.scenario.run.name, "scenario_sha256": loaded.hash}
    check_out(out, "compare", force=force, config=config)
    if force and is_ours(out, "compare"):
        from defistress.sim.experiments.outdir import read_marker

        if (read_marker(out) or {}).get("config") != config:
            shutil.rmtree(out)  # a comparison folder of another scenario: its runs must not be pooled
    make_folder(out, "compare", config)
    rows, total = [], len(regimes) * len(seeds)
    for seed in seeds:
        for regime in regimes:
            summary = _run_one(loaded, regime, seed, overrides, out / f"{regime}-seed{seed}", report)
            rows.append(row_of(summary, regime, seed))
            if on_done is not None:
                on_done(len(rows), total)
    df = pd.DataFrame(rows)
    write_file_atomically(out / "compare.csv", df.to_csv(index=False))
    result = differences(df, regimes)
    result.update({"scenario": loaded.scenario.run.name, "seeds": seeds, "regimes": regimes})
    write_file_atomically(out / "compare.json", json.dumps(result, indent=2, default=float))
    write_html(df, result, out)
    return df


def differences(df: pd.DataFrame, regimes: list[str]) -> dict:
    """Means per regime and, with silo and portfolio, the netting benefit and whether losses spread: a venue
    loses more under portfolio when its written-off plus unbacked debt of multi-venue rows is larger there."""
    num = [c for c in df.columns if c not in ("regime", "seed", "liquidation_order", "protocols_breached")]
    means = {r: {c: _mean(df.loc[df["regime"] == r, c]) for c in num} for r in regimes}
    out: dict = {"means": means}
    if {"silo", "portfolio"} <= set(regimes):
        s, p = means["silo"], means["portfolio"]
        venues = sorted({c[: -len("_unbacked_end_usd")] for c in df.columns if c.endswith("_unbacked_end_usd")} - {""})

        def loss(m: dict, v: str) -> float:
            return (m.get(f"{v}_unbacked_end_usd") or 0.0) + (m.get(f"{v}_written_off_usd") or 0.0)

        spread = [v for v in venues if loss(p, v) > loss(s, v)]
        out["difference"] = {
            "netting_benefit_usd": _sub(s.get("capital_required_usd"), p.get("capital_required_usd")),
            "capital_efficiency_portfolio": p.get("capital_efficiency"),
            "liquidations_avoided": _sub(s.get("liquidations"), p.get("liquidations")),
            "written_off_change_usd": _sub(p.get("written_off_usd"), s.get("written_off_usd")),
            "unbacked_change_usd": _sub(p.get("unbacked_end_usd"), s.get("unbacked_end_usd")),
            "venue_bad_debt_change_usd": _sub(p.get("venue_bad_debt_usd"), s.get("venue_bad_debt_usd")),
            "principal_pnl_change_usd": _sub(p.get("principal_pnl_usd"), s.get("principal_pnl_usd")),
            "venues_losing_more_under_portfolio": spread,
            "losses_spread": bool(spread),
        }
    return out


def _mean(col: pd.Series):
    vals = pd.to_numeric(col, errors="coerce").dropna()
    return float(vals.mean()) if len(vals) else None


def _sub(a, b):
    return None if a is None or b is None else float(a) - float(b)


def write_html(df: pd.DataFrame, result: dict, out: Path) -> Path:
    """compare.html: the side-by-side table and figures (self-contained but for the PNGs beside it)."""
    from defistress.sim.report.plots_compare import compare_figures

    figs = compare_figures(df, out)
    means = pd.DataFrame(result["means"]).T
    table = means.to_html(float_format=lambda x: f"{x:,.2f}", na_rep="–", border=0)
    diff = result.get("difference", {})
    items = "".join(f"<li><b>{k}</b>: {v if not isinstance(v, float) else f'{v:,.2f}'}</li>" for k, v in diff.items())
    imgs = "".join(
        f'<figure><img src="{f.name}" alt="{f.stem}"><figcaption>{f.stem}</figcaption></figure>' for f in figs
    )
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>Regime comparison: {result["scenario"]}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>Margin regimes compared: {result["scenario"]}</h1>
<p>Seeds {result["seeds"]}; the same market path and agents in every regime. Means over seeds.</p>
{table}<h2>Differences</h2><ul>{items}</ul>{imgs}
<h2>Runs</h2>{df.to_html(index=False, border=0, na_rep="–")}</body></html>"""
    return write_file_atomically(out / "compare.html", html)


def summary_rows(df: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Rows for a console table: figure -> mean per regime."""
    regimes = list(dict.fromkeys(df["regime"]))
    rows = []
    for c in FIGURES:
        vals = [_mean(df.loc[df["regime"] == r, c]) for r in regimes]
        rows.append((c, ["–" if v is None or np.isnan(v) else f"{v:,.2f}" for v in vals]))
    return rows
