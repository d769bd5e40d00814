"""`defistress stress-search` (issue 12): the smallest shock crossing a loss threshold with a given probability,
bracketed on a case with a hand-computable answer (a price gap through positions of known debt), the
probabilities and Wilson intervals as stated, resumable folder, keyed errors; a tiny real scenario end-to-end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from tune_support import gap_lending
from typer.testing import CliRunner

from defistress.sim.cli.app import app
from defistress.sim.experiments.stress_search import StressInputError, stress_search

SHOCK = "shocks.0.jump=-0.05..-0.6"  # jump = -0.05 - 0.55 * size


def search(out, **kw):
    args = {"seeds": range(10), "backend": "inline", "curve_points": 5, "iterations": 4, "figures": False, **kw}
    return stress_search(None, [SHOCK], "bad_debt_usd>0", out=out, runner=gap_lending, **args)


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    return search(tmp_path_factory.mktemp("gap") / "s", figures=True)


def test_brackets_the_hand_computed_break_size(found):
    # bad debt > 0 in half the seeds once 1 + jump < 0.75 (seeds 5..9): jump < -0.25, size > 0.2 / 0.55 = 4/11
    b = found.found
    assert b["bracket_below"] < 4 / 11 <= b["break_size"]
    # the curve's sizes bracket it in (0.25, 0.5]; four halvings leave a width of 0.25 / 16
    assert b["break_size"] - b["bracket_below"] == pytest.approx(0.25 / 16)
    assert b["break_values"]["shocks.0.jump"] == pytest.approx(-0.05 - 0.55 * b["break_size"])


def test_probabilities_are_counts_of_runs_crossing(found):
    c = found.curve
    for _, row in c.iterrows():
        jump = -0.05 - 0.55 * row["size"]
        k = sum(0.5 + 0.05 * s > 1 + jump + 1e-12 for s in range(10))  # hand count of r > 1 + jump
        assert int(row["crossed"]) == k and row["probability"] == pytest.approx(k / 10)
    # the curve's five sizes plus four bisection steps, each tested once
    assert len(c) == 9 and c["size"].is_monotonic_increasing
    row = c[c["crossed"] == 5].iloc[0]  # Wilson 95% for 5/10 by hand: 0.5 -/+ 0.26341
    assert (row["p_low"], row["p_high"]) == pytest.approx((0.23659, 0.76341), abs=1e-4)


def test_liquidation_curve_means_bad_debt_per_run(found):
    row = found.curve.iloc[-1]  # size 1: jump -0.6, bad debt = r - 0.4 = 0.1 + 0.05 s over s = 0..9: mean 0.325
    assert row["mean_bad_debt_usd"] == pytest.approx(0.325)
    assert row["mean_bad_debt_usd_ci_low"] <= 0.325 <= row["mean_bad_debt_usd_ci_high"]
    assert {p.name for p in found.figures} == {"break_probability.png", "liquidation_curve.png"}
    assert pd.read_csv(found.out / "curve.csv")["crossed"].tolist() == found.curve["crossed"].tolist()
    assert json.loads((found.out / "break.json").read_text())["break_size"] == found.found["break_size"]


def test_a_second_call_reuses_every_run_and_gives_the_same_answer(found):
    again = search(found.out)
    assert again.ran == 0 and again.found == found.found


def test_not_crossed_in_range_is_said(tmp_path):
    r = stress_search(None, ["shocks.0.jump=0..-0.1"], "bad_debt_usd>0", out=tmp_path / "n", runner=gap_lending,
                      seeds=range(10), backend="inline", figures=False)  # fmt: skip
    assert r.found["break_size"] is None and "not crossed" in r.found["verdict"]


@pytest.mark.parametrize(
    ("shock", "threshold", "match"),
    [
        ("shocks.0.jump", "bad_debt_usd>0", "--shock 'shocks.0.jump': expected KEY=FROM..TO"),
        ("shocks.0.jump=-0.1..-0.1", "bad_debt_usd>0", "FROM and TO must differ"),
        (SHOCK, "bad_debt>0", "unknown run metric 'bad_debt'; allowed: bad_debt_usd, liquidations"),
        (SHOCK, "bad_debt_usd=0", "--threshold 'bad_debt_usd=0': expected METRIC>VALUE"),
    ],
)
def test_keyed_errors(tmp_path, shock, threshold, match):
    with pytest.raises(StressInputError, match=match):
        stress_search(None, [shock], threshold, out=tmp_path / "e", runner=gap_lending, seeds=[0], backend="inline")
    assert not (tmp_path / "e").exists()


def test_cli_on_a_tiny_real_scenario(tmp_path):
    base = ["agents.borrowers.accounts=100", "run.duration=1h", *(f"shocks.{i}.at=30m" for i in range(3))]
    base += ["shocks.1.until=50m", "shocks.2.until=50m"]
    out = tmp_path / "s"
    args = ["stress-search", "eth-crash", "--shock", "shocks.0.jump=-0.05..-0.6", "--threshold", "liquidations>0"]
    args += ["--seeds", "2", "--curve-points", "2", "--iterations", "1", "--backend", "inline", "--out", str(out)]
    args += [a for s in base for a in ("--set", s)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    curve = pd.read_csv(out / "curve.csv")
    assert curve["size"].iloc[0] == 0.0 and curve["size"].iloc[-1] == 1.0
    assert (curve["probability"] == curve["crossed"] / curve["runs"]).all()
    assert "liquidation_curve.png" in {p.name for p in (out / "figures").iterdir()}
    bad = CliRunner().invoke(app, args[:4] + ["--threshold", "liquidations>>0", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--threshold" in bad.output
