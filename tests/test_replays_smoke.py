"""Every built-in replay runs at its reduced size (`run.smoke`) through `defistress replay`: a design of two
samples x one seed, the scorecard folder written, every published figure given a band; a second call runs
nothing new (resumable). Full-size replays are in benchmarks/bench_replays.py (`make bench`)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from defistress.scenarios.loader import load
from defistress.sim.cli.app import app
from defistress.sim.experiments.replay import replay, replay_all, replay_builtins

REPLAYS = replay_builtins()


def test_the_bundled_windows_have_replays():
    assert {
        "black-thursday-maker",
        "black-thursday-lending",
        "may19-aave",
        "luna-venus",
        "aave-crv-2022",
        "steth-june2022",
        "ftx-nov2022",
        "usdc-depeg-2023",
        "aug5-2024",
        "oct10-2025",
    } <= set(REPLAYS)


@pytest.mark.parametrize("name", REPLAYS)
def test_every_replay_runs_at_reduced_size_and_scores_its_published_figures(name, tmp_path):
    res = replay(name, tmp_path / name, seeds=[1], samples=2, backend="inline", smoke=True, report=False)
    s = load(name).scenario
    assert len(res.runs) == (2 if s.uncertain else 1)
    assert (res.runs.get("status", pd.Series(["ok"])) != "failed").all()
    for f in ("design.csv", "scorecard.csv", "scorecard.json", "replay.json"):
        assert (tmp_path / name / f).is_file(), f
    pub = res.published_rows()
    assert list(pub["key"]) == [p.key for p in s.run.published]
    for _, r in pub.iterrows():
        assert r["band_n"] >= 1 and math.isfinite(r["band_low"]) and r["band_low"] <= r["band_high"], r["key"]
        assert r["inside"] in (True, False)
    assert res.manifest["smoke"] and res.manifest["runs"] == len(res.runs)
    # every run conserved value through the ledger
    assert res.runs["conservation_ok"].all()


def test_a_second_replay_of_the_same_design_runs_nothing_new(tmp_path):
    out = tmp_path / "bt"
    first = replay("black-thursday-maker", out, [1], 2, backend="inline", smoke=True, report=True)
    lines = (out / "runs" / "results.jsonl").read_text().splitlines()
    second = replay("black-thursday-maker", out, [1], 2, backend="inline", smoke=True, report=False)
    assert (out / "runs" / "results.jsonl").read_text().splitlines() == lines
    pd.testing.assert_frame_equal(first.table, second.table)
    assert (out / "index.html").is_file() and (out / "bands.png").is_file()
    card = json.loads((out / "scorecard.json").read_text())
    assert [r["key"] for r in card["rows"]][:5] == [p.key for p in load("black-thursday-maker").scenario.run.published]


def test_replay_all_prints_one_table_of_events_figures_bands_and_verdicts(tmp_path):
    table = replay_all(tmp_path, [1], 1, names=["aave-crv-2022", "luna-venus"], backend="inline", smoke=True,
                       report=False)  # fmt: skip
    assert list(table.columns[:3]) == ["event", "figure", "unit"]
    assert set(table["event"]) == {"aave-crv-2022", "luna-venus"}
    assert (tmp_path / "all.csv").is_file()


def test_replay_command_refuses_a_scenario_and_all_together_and_bad_bands(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["replay", "black-thursday-maker", "--all", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not both" in r.output
    r = runner.invoke(app, ["replay", "black-thursday-maker", "--band", "0.9,0.1", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--band" in r.output
    r = runner.invoke(app, ["replay", "no-such-replay", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown scenario" in r.output
