"""compare.html of a regime comparison: readable tables (human headers, money in $k/$M, runs transposed), the spread
over seeds, and figures with captions. Built from a hand-made comparison table (no runs)."""

import re
from pathlib import Path

import pandas as pd
from html_support import parse

from defistress.sim.experiments.compare import differences
from defistress.sim.report.compare_page import compare_html
from defistress.sim.report.plots_compare import compare_figures


def _df() -> pd.DataFrame:
    rows = []
    # capital required: silo 18.0M / 19.0M over seeds 1 and 2, portfolio 6.0M / 8.0M
    for seed, silo, pm in ((1, 18.0e6, 6.0e6), (2, 19.0e6, 8.0e6)):
        for regime, cap in (("silo", silo), ("portfolio", pm)):
            rows.append(
                {
                    "regime": regime,
                    "seed": seed,
                    "capital_required_usd": cap,
                    "liquidations": 10 if regime == "silo" else 4,
                    "unbacked_end_usd": 1_500.0,
                    "written_off_usd": 0.0,
                    "liquidation_order": "lend>perps",
                    "protocols_breached": "",
                    "lend_liquidations": 3,
                    "lend_written_off_usd": 0.0,
                    "lend_unbacked_end_usd": 1_500.0,
                    "lend_venue_bad_debt_usd": 25_000.0,
                }
            )
    return pd.DataFrame(rows)


def test_compare_page_has_human_headers_money_in_millions_and_the_seed_spread(tmp_path: Path):
    df = _df()
    result = differences(df, ["silo", "portfolio"])
    result.update({"scenario": "toy", "seeds": [1, 2], "regimes": ["silo", "portfolio"]})
    page = compare_html(df, result, compare_figures(df, tmp_path))
    tables = parse(page).tables
    means = {r[0]: r[1:] for r in tables[0][1:]}
    # means of (18.0, 19.0) and (6.0, 8.0) M, with the lowest and highest seed in brackets
    assert means["Capital required"] == ["$18.5M ($18M to $19M)", "$7M ($6M to $8M)"]
    diff = {r[0]: r[1] for r in tables[1][1:]}
    assert diff["Netting benefit"] == "$11.5M"  # 18.5 - 7.0
    runs = tables[-1]
    assert runs[0] == ["figure", "silo, seed 1", "portfolio, seed 1", "silo, seed 2", "portfolio, seed 2"]
    headers = [h for t in tables for h in t[0]]
    assert not [h for h in headers if re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", h)]  # no snake_case headers
    cells = [c for t in tables for r in t for c in r]
    assert not [c for c in cells if re.search(r"\d[eE][+-]?\d", c)]  # no scientific notation in any cell
    assert page.count("<figcaption>") == page.count("<img") >= 2
