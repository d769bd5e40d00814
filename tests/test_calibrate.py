"""Calibration: the loss on published ranges (by hand), the optimiser recovering a known minimum, a fit of a
small simulated event recovering the input that made its 'published' figure, and carrying a fit by name."""

from __future__ import annotations

import json

import pytest

from defistress.scenarios.schema_scorecard import PublishedOutcome
from defistress.scenarios.schema_uncertainty import UncertainInput
from defistress.sim.experiments.calibrate import calibrate, clip_to, loss, miss, optimise, transfer


def test_miss_is_zero_inside_the_range_and_relative_outside():
    assert miss(5.0, (4.0, 6.0), 5.0) == 0.0
    assert miss(8.0, (4.0, 6.0), 5.0) == pytest.approx(2.0 / 5.0)
    assert miss(1.0, (4.0, 6.0), 5.0) == pytest.approx(3.0 / 5.0)
    assert miss(None, (4.0, 6.0), 5.0) == 1.0


def test_loss_sums_squared_misses_of_the_published_figures():
    pub = [
        PublishedOutcome(metric="bad_debt_usd", value=100.0, source="s"),
        PublishedOutcome(metric="auctions", protocol="m", value=10.0, low=8.0, high=12.0, source="s"),
    ]
    figures = {"bad_debt_usd": 150.0, "auctions@m": 9.0}
    assert loss(figures, pub) == pytest.approx(0.5**2 + 0.0)


def test_optimise_finds_a_known_minimum():
    inputs = [
        UncertainInput(name="a", key="k.a", range=(0.0, 10.0), description="d"),
        UncertainInput(name="b", key="k.b", values=[1, 2, 3, 4], description="d"),
    ]

    def objective(sets):
        return [(v["a"] - 3.3) ** 2 + (v["b"] - 2) ** 2 for v in sets]

    best, value, trials = optimise(inputs, objective, trials=60, batch=3, seed=0)
    assert best["b"] == 2
    assert best["a"] == pytest.approx(3.3, abs=0.35)
    assert value < 0.15 and len(trials) == 60
    again, _, _ = optimise(inputs, objective, trials=60, batch=3, seed=0)
    assert again == best  # the same seed and batch give the same fit


def test_a_killed_study_resumes_from_its_journal(tmp_path):
    inputs = [UncertainInput(name="a", key="k.a", range=(0.0, 1.0), description="d")]
    calls = []

    def objective(sets):
        calls.extend(sets)
        return [abs(v["a"] - 0.5) for v in sets]

    optimise(inputs, objective, trials=5, storage=tmp_path / "j.journal")
    optimise(inputs, objective, trials=8, storage=tmp_path / "j.journal")
    assert len(calls) == 8  # the second call ran only the 3 trials missing


SYNTH = "black-thursday-lending"
SMALL = {"agents.borrowers.accounts": 150, "run.block_seconds": 120, "run.duration": "12h"}


def test_calibrate_recovers_the_input_behind_a_synthetic_published_figure(tmp_path):
    """The 'event' is a run of a small lending replay at health-factor median 1.35 (seed 1); its debt repaid is
    published; the fit over [1.1, 2.2] finds a median whose run repays the same (within 5%), near 1.35."""
    from defistress.sim.experiments.runs import run_scenario

    truth = 1.35
    target = run_scenario(SYNTH, 1, {**SMALL, "agents.borrowers.health_factor.median": truth})
    repaid = target.metrics["scorecard_metrics"]["total"]["debt_repaid_usd"]
    assert repaid > 0
    over = {
        "run.published": [
            {"metric": "debt_repaid_usd", "value": repaid, "low": repaid * 0.98, "high": repaid * 1.02, "source": "x"}
        ],
        "uncertain": [
            {
                "name": "hf_median",
                "key": "agents.borrowers.health_factor.median",
                "range": [1.1, 2.2],
                "description": "synthetic",
            }
        ],
    }
    from defistress.scenarios.loader import load

    loaded = load(SYNTH, {**SMALL, **over})
    fit = calibrate(loaded, tmp_path / "fit", trials=24, seeds=[1])
    assert fit.loss < 0.1**2  # within 10% of the published range
    assert fit.inputs["hf_median"] == pytest.approx(truth, rel=0.1)
    assert fit.figures[0]["simulated_mean"] == pytest.approx(repaid, rel=0.12)
    record = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert record["inputs"] == fit.inputs and record["in_sample_figures"] == 1
    # carried to the same event unchanged, the fitted input reproduces the fit (out-of-sample machinery)
    out = transfer(fit.inputs, loaded, [1])
    assert out["shared_inputs"] == ["hf_median"]
    assert out["figures"][0]["simulated_mean"] == pytest.approx(fit.figures[0]["simulated_mean"])


def test_a_fitted_value_is_clipped_to_the_other_events_range_or_set():
    r = UncertainInput(name="x", key="k", range=(2.0, 4.0), description="d")
    i = UncertainInput(name="x", key="k", range=(1.0, 9.0), integer=True, description="d")
    s = UncertainInput(name="x", key="k", values=[10, 20, 40], description="d")
    t = UncertainInput(name="x", key="k", values=["30m", "1h"], description="d")
    assert clip_to(r, 5.0) == 4.0 and clip_to(r, 3.0) == 3.0
    assert clip_to(i, 4.6) == 5
    assert clip_to(s, 33) == 40 and clip_to(s, 20) == 20
    assert clip_to(t, "2h") == "30m" and clip_to(t, "1h") == "1h"
