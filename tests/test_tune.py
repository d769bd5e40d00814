"""`defistress tune` (issue 12): an Optuna study over seeded runs finds a known optimum through the same code path
as the simulation (a scenario-free run function), honours constraints, resumes from SQLite exactly as an
uninterrupted study would run, writes its Pareto front and recommended setting with intervals, refuses bad input
by name; and a tiny real scenario end-to-end through the CLI."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from tune_support import BOWL_OPTIMUM, bowl
from typer.testing import CliRunner

from defistress.sim.analysis.risk import with_ci
from defistress.sim.cli.app import app
from defistress.sim.experiments.tune import tune
from defistress.sim.experiments.tune_spec import TuneInputError, parse_param

XY = ["x=-1.0..1.0", "y=-1.0..1.0"]
FAST = {"backend": "inline", "parallel_trials": 2, "startup_trials": 6, "figures": False}


def run(out, trials, objectives=("min:mean_loss_usd",), constraints=(), **kw):
    args = {**FAST, **kw}
    return tune(
        None, XY, list(objectives), list(constraints), seeds=[0, 1], trials=trials, out=out, runner=bowl, **args
    )


@pytest.fixture(scope="module")
def bowl_study(tmp_path_factory):
    return run(tmp_path_factory.mktemp("bowl") / "t", 30)


def test_finds_the_known_optimum_of_a_bowl(bowl_study):
    rec = bowl_study.recommended
    # loss = (x - 0.3)^2 + (y + 0.2)^2: 30 TPE trials come within 0.15 of (0.3, -0.2)
    assert abs(rec["params"]["x"] - BOWL_OPTIMUM["x"]) < 0.15
    assert abs(rec["params"]["y"] - BOWL_OPTIMUM["y"]) < 0.15
    trials = bowl_study.trials
    assert len(trials) == 30 and (trials["state"] == "complete").all()
    assert rec["trial"] == int(trials.loc[trials["mean_loss_usd"].idxmin(), "trial"])  # the best trial


def test_recommended_interval_is_the_bootstrap_over_the_trials_seeds(bowl_study):
    rec = bowl_study.recommended
    p = rec["params"]
    runs = [bowl(p, s)["loss_usd"] for s in (0, 1)]  # recomputed independently of the study's rows
    ci = with_ci(np.array(runs), lambda x, axis=-1: np.mean(x, axis=axis))
    o = rec["objectives"][0]
    assert o["value"] == pytest.approx(np.mean(runs))
    assert (o["ci_low"], o["ci_high"]) == pytest.approx((ci["ci_low"], ci["ci_high"]))
    assert o["ci_low"] <= o["value"] <= o["ci_high"]


def test_the_study_is_stored_in_sqlite(bowl_study):
    with sqlite3.connect(bowl_study.out / "study.db") as db:
        (n,) = db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()
    assert n == 30
    # every run of every trial is in results.jsonl, once
    keys = [json.loads(line)["run_key"] for line in (bowl_study.out / "results.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 60


def test_constraint_is_respected(tmp_path):
    # risk = x (+ a little noise): with mean risk <= 0.1 the constrained optimum is x = 0.1, not 0.3
    r = run(tmp_path / "c", 24, constraints=["mean_risk_usd<=0.1"])
    rec = r.recommended
    assert rec["feasible"] and rec["constraints"][0]["holds"]
    assert rec["constraints"][0]["value"] <= 0.1
    assert rec["params"]["x"] < 0.1 + 1e-9
    t = r.trials
    assert (t["feasible"] == (t["mean_risk_usd"] <= 0.1)).all()
    # the recommended trial is the best feasible one, though infeasible trials may score better
    best = t[t["feasible"]]["mean_loss_usd"].min()
    assert rec["objectives"][0]["value"] == pytest.approx(best)


def test_resume_continues_as_an_uninterrupted_study(tmp_path):
    whole = run(tmp_path / "whole", 10)
    part = run(tmp_path / "part", 6)
    assert part.told == 6 and part.ran == 12
    rest = run(tmp_path / "part", 10)
    assert rest.told == 4 and rest.ran == 8  # the first six trials' runs are not run again
    cols = ["trial", "param:x", "param:y", "mean_loss_usd"]
    pd.testing.assert_frame_equal(rest.trials[cols], whole.trials[cols])
    again = run(tmp_path / "part", 10)  # nothing left to do
    assert again.told == 0 and again.ran == 0


def test_another_configuration_in_the_folder_is_refused(tmp_path):
    run(tmp_path / "s", 2)
    with pytest.raises(ValueError, match="another configuration.*objectives"):
        run(tmp_path / "s", 2, objectives=["max:mean_loss_usd"])


def test_multi_objective_pareto_front_is_non_dominated(tmp_path):
    r = run(tmp_path / "m", 16, objectives=["min:mean_loss_usd", "min:mean_risk_usd"])
    t, front = r.trials, r.pareto
    pts = t[["mean_loss_usd", "mean_risk_usd"]].to_numpy()
    # independent check: a trial is on the front iff no trial is <= on both and < on one
    expected = {
        int(t.iloc[i]["trial"])
        for i in range(len(t))
        if not any((pts[j] <= pts[i]).all() and (pts[j] < pts[i]).any() for j in range(len(t)))
    }
    assert set(front["trial"].astype(int)) == expected
    assert r.recommended["trial"] in expected
    assert (r.out / "pareto.csv").is_file()


def test_categorical_and_integer_params():
    assert parse_param("k=1..5").kind == "int"
    assert parse_param("k=0.5..5").kind == "float"
    c = parse_param("k=a,b,0.1")
    assert c.kind == "categorical" and c.choices == ("a", "b", 0.1)


@pytest.mark.parametrize(
    ("params", "objective", "constraint", "match"),
    [
        (["x=1..0"], "min:mean_loss_usd", [], r"--param 'x=1\.\.0': LOW must be below HIGH"),
        (["x"], "min:mean_loss_usd", [], "--param 'x': expected KEY=LOW..HIGH"),
        (["x=-1.0..1.0"], "low:mean_loss_usd", [], "--objective 'low:mean_loss_usd': expected min:METRIC"),
        (["x=-1.0..1.0"], "min:mean_lost_usd", [], "unknown run metric 'lost_usd'; allowed: loss_usd, risk_usd"),
        (["x=-1.0..1.0"], "min:mean_loss_usd", ["p99_risk_usd<=1"], "--constraint 'p99_risk_usd'.*statistics"),
        (["x=-1.0..1.0"], "min:mean_loss_usd", ["mean_risk_usd=1"], "expected METRIC<=VALUE"),
        (["x=-1.0..1.0"], "min:mean_loss_usd", ["mean_risk_usd<=lots"], "'lots' is not a number"),
    ],
)
def test_keyed_errors(tmp_path, params, objective, constraint, match):
    with pytest.raises(TuneInputError, match=match):
        tune(None, params, [objective], constraint, seeds=[0], trials=1, out=tmp_path / "e", runner=bowl, **FAST)
    assert not (tmp_path / "e").exists()


def test_cli_tunes_a_tiny_real_scenario(tmp_path):
    base = ["agents.borrowers.accounts=100", "run.duration=1h", *(f"shocks.{i}.at=30m" for i in range(3))]
    base += ["shocks.1.until=50m", "shocks.2.until=50m"]
    out = tmp_path / "t"
    args = ["tune", "eth-crash", "--param", "protocols.lend.assets.ETH.liquidation_bonus=0.02..0.15"]
    args += ["--objective", "min:mean_liquidator_value_leakage_usd", "--constraint", "var95_bad_debt_usd<=1B"]
    args += ["--trials", "2", "--seeds", "2", "--parallel-trials", "2", "--backend", "inline", "--out", str(out)]
    args += [a for s in base for a in ("--set", s)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "recommended" in r.output and "warning: var95_bad_debt_usd from 2 seed(s)" in r.output
    rec = json.loads((out / "recommended.json").read_text())
    assert 0.02 <= rec["params"]["protocols.lend.assets.ETH.liquidation_bonus"] <= 0.15
    risk = pd.read_csv(out / "risk.csv")  # the runs gathered like a sweep's
    assert len(risk) == 2 and (risk["runs"] == 2).all()
    assert {p.name for p in (out / "figures").iterdir()} >= {"tune_history.png"}
    bad = CliRunner().invoke(app, [*args[:2], "--param", "protocols.lend.assets.ETH.liquidation_bonus=0.02..0.15",
                                   "--objective", "min:mean_bad_debt", "--out", str(tmp_path / "b")])  # fmt: skip
    assert bad.exit_code == 2 and "unknown run metric 'bad_debt'" in bad.output and "lend_bad_debt_usd" in bad.output


def test_a_trial_cut_by_a_kill_is_asked_again_with_its_setting(tmp_path):
    import optuna

    out = tmp_path / "k"
    run(out, 4)
    study = optuna.load_study(study_name="defistress-tune", storage=f"sqlite:///{out / 'study.db'}")
    cut = study.ask(
        {"x": optuna.distributions.FloatDistribution(-1, 1), "y": optuna.distributions.FloatDistribution(-1, 1)}
    )
    cut.set_user_attr("generation", 2)  # a generation asked, then the process killed before its trials were told
    r = run(out, 6)
    t = r.trials
    assert len(t) == 6 and cut.number not in set(t["trial"])  # the cut trial does not count towards --trials
    again = t[(t["param:x"] == cut.params["x"]) & (t["param:y"] == cut.params["y"])]
    assert len(again) == 1 and again["state"].iloc[0] == "complete"  # its setting was asked again and scored


def test_trials_run_in_parallel_on_the_process_backend_with_the_same_study(tmp_path):
    inline = run(tmp_path / "i", 4)
    pooled = run(tmp_path / "p", 4, backend="process", workers=2)
    cols = ["trial", "param:x", "param:y", "mean_loss_usd"]
    pd.testing.assert_frame_equal(pooled.trials[cols], inline.trials[cols])
