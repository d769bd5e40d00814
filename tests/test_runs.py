"""Whole runs: determinism, outcomes that must follow from the scenario, conservation, the manifest and
the run folder on disk. Runs are small (3h, 1,500 accounts) and shared by session fixtures."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import defistress.sim.experiments.runs as runs_module
from defistress.scenarios.loader import HISTORIC_DIR, load
from defistress.sim.engine.model import StressModel
from defistress.sim.experiments.runs import run_scenario, write_run

SMALL = ['run.duration="3h"', "agents.borrowers.accounts=1500"]


def run_keeping_model(name: str, overrides: list[str], seed: int | None = None):
    """run_scenario as users call it, keeping a handle on the model it built (for ledger checks)."""
    models = []

    class Kept(StressModel):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            models.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runs_module, "StressModel", Kept)
        result = run_scenario(name, seed=seed, overrides=overrides)
    return result, models[0]


@pytest.fixture(scope="session")
def crash():
    """eth-crash, seed 1: the −15% jump at 2h and the start of the drift inside a 3h run."""
    return run_keeping_model("eth-crash", SMALL, seed=1)


@pytest.fixture(scope="session")
def crash_again():
    return run_scenario("eth-crash", seed=1, overrides=SMALL)


@pytest.fixture(scope="session")
def crash_seed2():
    return run_scenario("eth-crash", seed=2, overrides=SMALL)


@pytest.fixture(scope="session")
def bigger_crash():
    return run_scenario("eth-crash", seed=1, overrides=SMALL + ["shocks.0.jump=-0.30"])


@pytest.fixture(scope="session")
def poor_liquidators():
    return run_keeping_model("eth-crash", SMALL + ["agents.liquidator.capital_usd=1000"], seed=1)


@pytest.fixture(scope="session")
def dear_gas():
    # base fee 1,000,000 gwei: one 500,000-gas liquidation costs 500 ETH (~USD 1M), far above any bonus;
    # background demand at the target keeps the base fee there (EIP-1559)
    return run_scenario("eth-crash", seed=1, overrides=SMALL + ["gas.base_fee_gwei=1e6", "gas.background_demand=0.5"])


@pytest.fixture(scope="session")
def calm():
    return run_keeping_model("calm", SMALL, seed=1)


@pytest.fixture(scope="session")
def replay():
    return run_scenario("black-thursday-lending", overrides=SMALL)


# --- determinism ------------------------------------------------------------------------------------
def test_same_seed_gives_identical_metrics_timeseries_and_events(crash, crash_again):
    a, _ = crash
    b = crash_again
    assert a.metrics == b.metrics
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert len(a.events) > 0


def test_different_seed_gives_a_different_price_path(crash, crash_seed2):
    a, _ = crash
    x, y = a.timeseries["exog_ETH_usd"].to_numpy(), crash_seed2.timeseries["exog_ETH_usd"].to_numpy()
    assert x[0] == y[0] == 2_000.0
    assert not np.allclose(x[1:], y[1:])
    assert crash_seed2.manifest["seed"] == 2


# --- outcomes ---------------------------------------------------------------------------------------
def test_calm_liquidates_nothing(calm):
    result, _ = calm
    m = result.metrics
    assert m["liquidations"] == 0 and m["liquidation_volume_usd"] == 0.0
    assert m["bad_debt_usd"] == 0.0
    assert m["protocols"]["lend"]["accounts_unhealthy_end"] == 0
    assert not (result.events["kind"] == "liquidation").any()


def test_a_shock_liquidates(crash):
    m = crash[0].metrics
    assert m["liquidations"] > 0 and m["liquidation_volume_usd"] > 0
    assert m["exogenous_drawdown"] > 0.15  # the −15% jump at least
    assert m["protocols"]["lend"]["first_liquidation_s"] >= 2 * 3600  # nothing before the shock


def test_a_bigger_shock_liquidates_more(crash, bigger_crash):
    small, big = crash[0].metrics, bigger_crash.metrics
    assert big["exogenous_drawdown"] > small["exogenous_drawdown"]
    assert big["liquidation_volume_usd"] > small["liquidation_volume_usd"]
    assert big["liquidations"] > small["liquidations"]


def test_liquidators_without_capital_leave_accounts_unliquidated(crash, poor_liquidators):
    rich, poor = crash[0].metrics, poor_liquidators[0].metrics
    assert poor["liquidations"] < rich["liquidations"]
    assert poor["protocols"]["lend"]["accounts_unhealthy_end"] > 0
    assert poor["protocols"]["lend"]["accounts_unhealthy_end"] > rich["protocols"]["lend"]["accounts_unhealthy_end"]


def test_gas_dearer_than_the_bonus_leaves_accounts_unliquidated(dear_gas):
    m = dear_gas.metrics
    assert m["liquidations"] == 0
    assert m["protocols"]["lend"]["accounts_unhealthy_end"] > 0
    assert m["peak_base_fee_gwei"] >= 1e6 * 0.999


# --- conservation -------------------------------------------------------------------------------------
def test_every_run_conserves_tokens(crash, crash_seed2, bigger_crash, poor_liquidators, dear_gas, calm, replay):
    for r in (crash[0], crash_seed2, bigger_crash, poor_liquidators[0], dear_gas, calm[0], replay):
        assert r.metrics["conservation_ok"], r.metrics["conservation_errors"]
        assert r.metrics["conservation_errors"] == {}
    for _, model in (crash, poor_liquidators, calm):
        model.env.ledger.check_conservation()
        assert model.env.clock.block == model.n_blocks == 900


def test_liquidations_in_the_event_log_match_the_metrics(crash):
    result, model = crash
    ev = result.events[result.events["kind"] == "liquidation"]
    assert len(ev) == result.metrics["liquidations"]
    assert ev["debt_repaid_usd"].sum() == pytest.approx(result.metrics["liquidation_volume_usd"])
    assert model.protocols["lend"].liquidated_debt_usd == pytest.approx(result.metrics["liquidation_volume_usd"])


# --- manifest -----------------------------------------------------------------------------------------
def test_manifest_of_a_replay_names_scenario_hash_seed_version_and_data_hashes(replay):
    man = replay.manifest
    assert man["scenario_sha256"] == load("black-thursday-lending", SMALL).hash
    assert man["seed"] == 1  # the scenario's run.seed
    assert man["package_version"] == version("defistress")
    files = {"01b_black_thursday_2020-03-12_ETH_10min.csv", "01b_black_thursday_2020-03-12_gas_10min.csv"}
    assert set(man["data_sha256"]) == files
    for f in files:
        assert man["data_sha256"][f] == hashlib.sha256((HISTORIC_DIR / f).read_bytes()).hexdigest()
    assert man["replay"]["fill"] == "hold" and man["replay"]["series"][0]["interval_s"] == 600.0
    assert man["gas"]["path"] == "replayed" and man["gas"]["interval_s"] == 600.0
    assert man["blocks"] == 900 and man["block_seconds"] == 12.0


def test_manifest_without_data_has_no_data_hashes(calm):
    assert calm[0].manifest["data_sha256"] == {} and calm[0].manifest["replay"] is None
    assert calm[0].manifest["gas"]["path"] == "modelled"


# --- the run folder -----------------------------------------------------------------------------------
def test_write_run_produces_summary_timeseries_and_events(crash, tmp_path):
    result, _ = crash
    out = write_run(result, tmp_path / "run", report=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["liquidations"] == result.metrics["liquidations"]
    assert summary["manifest"]["scenario_sha256"] == result.manifest["scenario_sha256"]
    ts = pq.read_table(out / "timeseries.parquet")
    ev = pq.read_table(out / "events.parquet")
    assert ts.num_rows == len(result.timeseries) == 900
    assert ev.num_rows == len(result.events)
    assert "ref_ETH_usd" in ts.column_names and {"block", "kind", "source"} <= set(ev.column_names)
    assert ts.column("lend_debt_usd").to_pylist() == result.timeseries["lend_debt_usd"].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left


def test_failing_write_leaves_an_earlier_run_folder_intact(crash, tmp_path, monkeypatch):
    result, _ = crash
    out = write_run(result, tmp_path / "run", report=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(df):
        raise OSError("disk full")

    monkeypatch.setattr(runs_module, "_parquet_safe", broken)
    with pytest.raises(OSError, match="disk full"):
        write_run(result, out, report=False, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
