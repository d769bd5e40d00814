"""Books in the lending market: mixed books drawn from distributions and imported snapshots placed at the start.
Expected values come from the draws reproduced here, hand-written snapshots and the manifest's own fields."""

from __future__ import annotations

import copy
import json
import tomllib

import numpy as np
import pandas as pd
import pytest

from defistress.protocols.evm.snapshot import SnapshotError, manifest_path, read_snapshot, write_snapshot
from defistress.scenarios.loader import ScenarioError, load
from defistress.scenarios.registry import builtin_path
from defistress.sim.engine.model import StressModel
from defistress.sim.experiments.runs import run_scenario

BASE = tomllib.loads(builtin_path("eth-crash").read_text())
STABLES = {"id": 1, "ltv": 0.93, "liquidation_threshold": 0.95, "liquidation_bonus": 0.01, "label": "stables"}


def scenario(agents, duration="1h", **lend):
    raw = copy.deepcopy(BASE)
    raw["run"]["duration"] = duration
    raw["shocks"] = []  # the crash comes after the short runs here
    raw["agents"] = agents + [a for a in raw["agents"] if a["kind"] != "borrowers"]
    raw["protocols"][0].update(lend)
    return raw


# --- mixed books -------------------------------------------------------------------------------------------------
def test_a_mixed_book_starts_each_account_at_its_drawn_health_with_several_assets():
    mixed = {
        "kind": "mixed_borrowers",
        "id": "mixed",
        "protocol": "lend",
        "accounts": 20_000,
        "collateral": {"ETH": 0.6, "BTC": 0.3, "USDC": 0.1},
        "collateral_concentration": 3.0,
        "debt": {"USDC": 0.7, "ETH": 0.3},
        "emode": 1,
        "emode_share": 0.2,
    }
    raw = scenario([mixed], emodes=[STABLES])
    raw["protocols"][0]["assets"]["USDC"]["emode_category"] = 1
    loaded = load(raw)
    model = StressModel(loaded, seed=5)
    m = model.protocols["lend"]
    spec = loaded.scenario.agents[0]
    rng = model.stream("agent:mixed")  # the builder's draws, in its order
    spec.size_usd.draw(rng, spec.accounts)
    hf = spec.health_factor.draw(rng, spec.accounts)
    np.testing.assert_allclose(m.health(), hf, rtol=1e-11)
    coll_usd = m.collateral() * m.prices()
    shares = coll_usd / coll_usd.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shares.mean(axis=0)[[0, 1, 2]], [0.6, 0.3, 0.1], atol=0.01)
    assert ((coll_usd > 0).sum(axis=1) > 1).mean() > 0.9  # most accounts hold several collateral assets
    in_em = m.user_emode == 1
    assert in_em.mean() == pytest.approx(0.2, abs=0.01)
    assert not (m.debt()[in_em, 0] > 0).any()  # e-mode accounts owe only the category's USDC
    assert ((m.debt()[~in_em] > 0).sum(axis=1) == 2).mean() > 0.9  # the others owe both
    model.env.ledger.check_conservation()


def test_mixed_book_shares_must_sum_to_one_and_name_listed_assets():
    bad = {
        "kind": "mixed_borrowers",
        "protocol": "lend",
        "accounts": 10,
        "collateral": {"ETH": 0.5},
        "debt": {"USDC": 1.0},
    }
    with pytest.raises(ScenarioError, match="collateral: shares must be >= 0 and sum to 1"):
        load(scenario([bad]))
    bad = {**bad, "collateral": {"DOGE": 1.0}}
    with pytest.raises(ScenarioError, match="asset 'DOGE' is not listed"):
        load(scenario([bad]))
    bad = {**bad, "collateral": {"ETH": 1.0}, "accounts": 10.0}
    with pytest.raises(ScenarioError, match="accounts"):
        load(scenario([bad]))  # strict: a float is not an account count


# --- snapshots -------------------------------------------------------------------------------------------------------
def reserve(symbol, decimals, price, ltv, lt, bonus, **kw):
    r = dict(
        symbol=symbol,
        address="0x" + symbol.encode().hex().ljust(40, "0")[:40],
        decimals=decimals,
        ltv=ltv,
        liquidation_threshold=lt,
        liquidation_bonus=bonus,
        protocol_fee=1000,
        reserve_factor=1500,
        supply_cap=0,
        borrow_cap=0,
        debt_ceiling=0,
        borrowable_in_isolation=False,
        borrowing_enabled=True,
        emode_category=0,
        price_base=int(price * 1e8),
    )
    r.update(kw)
    return r


def write_book(path, rows):
    frame = pd.DataFrame(
        rows,
        columns=["account", "asset", "collateral", "debt", "used_as_collateral", "emode", "health_factor"],
    )
    frame["asset_address"] = "0x" + "00" * 20
    frame["collateral_raw"] = "0"
    frame["debt_raw"] = "0"
    frame["total_collateral_base"] = "0"
    frame["total_debt_base"] = "0"
    manifest = {
        "kind": "aave-v3",
        "chain_id": 31337,
        "block_number": 1234,
        "block_hash": "0x" + "ab" * 32,
        "contracts": {"pool": "0x" + "11" * 20},
        "reserves": [
            reserve("WETH", 18, 2500.0, 8000, 8250, 10500),
            reserve("USDC", 6, 1.0, 7700, 8000, 10450, emode_category=1),
            reserve("DAI", 18, 1.0, 7500, 8000, 10500, emode_category=1),
        ],
        "emodes": [{"id": 1, "ltv": 9300, "liquidation_threshold": 9500, "liquidation_bonus": 10100, "label": "S"}],
    }
    return write_snapshot(frame, manifest, path)


A, B, C = ("0x" + c * 40 for c in "abc")
ROWS = [
    (A, "WETH", 10.0, 0.0, True, 0, 1.5),
    (A, "USDC", 5_000.0, 12_000.0, True, 0, 1.5),
    (B, "USDC", 10_000.0, 0.0, True, 1, 1.2),
    (B, "DAI", 0.0, 9_000.0, False, 1, 1.2),
    (C, "WETH", 1.0, 0.0, False, 0, float("inf")),
    (C, "DAI", 100.0, 0.0, True, 0, float("inf")),
]


def book_scenario(path, **book):
    raw = scenario([{"kind": "book", "id": "book", "protocol": "lend", "file": str(path), **book}])
    lend = raw["protocols"][0]
    lend["assets"]["DAI"] = {}
    lend["oracles"]["DAI"] = "fixed-dai"
    lend["close_factor_rule"] = "aave-v3.0"
    raw["oracles"].append({"id": "fixed-dai", "kind": "fixed", "asset": "DAI", "price": 1.0})
    raw["market"]["assets"].append({"symbol": "DAI", "peg": 1.0})
    lend["assets"]["ETH"] = {}  # left to the snapshot
    lend["assets"]["USDC"] = {"ltv": 0.70}  # set by the scenario: it wins over the snapshot
    return raw


def test_a_snapshot_round_trips_with_its_manifest(tmp_path):
    digest = write_book(tmp_path / "book.parquet", ROWS)
    snap = read_snapshot(tmp_path / "book.parquet")
    assert snap.sha256 == digest and snap.manifest["accounts"] == 3 and snap.manifest["rows"] == 6
    assert json.loads(manifest_path(tmp_path / "book.parquet").read_text())["sha256"] == digest
    mats = snap.matrices(["WETH", "USDC", "DAI"])
    assert mats["collateral"].tolist() == [[10.0, 5_000.0, 0.0], [0.0, 10_000.0, 0.0], [1.0, 0.0, 100.0]]
    assert mats["debt"][1].tolist() == [0.0, 0.0, 9_000.0] and mats["emode"].tolist() == [0, 1, 0]
    (tmp_path / "plain.parquet").write_bytes(b"not parquet")
    with pytest.raises(SnapshotError, match="not a Parquet file"):
        read_snapshot(tmp_path / "plain.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(SnapshotError, match="no defistress snapshot manifest"):
        read_snapshot(tmp_path / "other.parquet")


def test_a_book_is_placed_as_it_was_with_the_snapshots_reserve_parameters(tmp_path):
    digest = write_book(tmp_path / "book.parquet", ROWS)
    raw = book_scenario(tmp_path / "book.parquet", assets={"WETH": "ETH"}, sha256=digest)
    model = StressModel(load(raw), seed=1)
    m = model.protocols["lend"]
    assert m.n_accounts == 3
    np.testing.assert_array_equal(m.collateral()[:, [0, 2, 3]], [[10, 5_000, 0], [0, 10_000, 0], [1, 0, 100]])
    np.testing.assert_array_equal(m.debt()[:, [0, 2, 3]], [[0, 12_000, 0], [0, 0, 9_000], [0, 0, 0]])
    assert m.collateral_enabled[2].tolist() == [False, False, False, True]  # C: WETH off, no BTC, DAI on
    assert m.user_emode.tolist() == [0, 1, 0]
    # the snapshot's parameters (ETH: 80% / 82.5% / +5%), except USDC's ltv that the scenario sets (0.70)
    eth, usdc = m.params[0], m.params[2]
    assert (eth.ltv, eth.liquidation_threshold, eth.liquidation_bonus) == (0.80, 0.825, pytest.approx(0.05))
    assert (usdc.ltv, usdc.liquidation_threshold, usdc.emode_category, usdc.decimals) == (0.70, 0.80, 1, 6)
    assert m.emodes[1].liquidation_threshold == 0.95
    # A at 2,000 USD per ETH: (10·2000·0.825 + 5,000·0.8) / 12,000 = 1.708333; B in e-mode: 10,000·0.95 / 9,000
    hf = m.health()
    assert hf[0] == pytest.approx((10 * 2000 * 0.825 + 5_000 * 0.8) / 12_000, rel=1e-12)
    assert hf[1] == pytest.approx(9_500 / 9_000, rel=1e-12)
    model.env.ledger.check_conservation()


def test_usd_amounts_keep_the_snapshots_health_factors_at_the_scenarios_prices(tmp_path):
    write_book(tmp_path / "book.parquet", ROWS)
    raw = book_scenario(tmp_path / "book.parquet", assets={"WETH": "ETH"}, amounts="usd")
    model = StressModel(load(raw), seed=1)
    m = model.protocols["lend"]
    # ETH is 2,000 in the scenario, 2,500 in the snapshot: 12.5 ETH keep A's 25,000 USD
    assert m.collateral()[0, 0] == pytest.approx(12.5)
    assert m.health()[0] == pytest.approx((10 * 2500 * 0.825 + 5_000 * 0.8) / 12_000, rel=1e-12)


def test_the_run_manifest_records_the_snapshot(tmp_path):
    digest = write_book(tmp_path / "book.parquet", ROWS)
    raw = book_scenario(tmp_path / "book.parquet", assets={"WETH": "ETH"})
    raw["run"]["duration"] = "2m"
    (snap,) = run_scenario(raw, seed=1).manifest["snapshots"]
    assert (snap["sha256"], snap["chain_id"], snap["block_number"]) == (digest, 31337, 1234)
    assert snap["contracts"] == {"pool": "0x" + "11" * 20} and snap["accounts"] == 3


def test_book_errors_name_the_key(tmp_path):
    write_book(tmp_path / "book.parquet", ROWS)
    with pytest.raises(ValueError, match=r"agents.book.sha256: .* has SHA-256"):
        StressModel(load(book_scenario(tmp_path / "book.parquet", assets={"WETH": "ETH"}, sha256="0" * 64)), 1)
    with pytest.raises(ValueError, match=r"agents.book.assets: the snapshot holds \['WETH'\]"):
        StressModel(load(book_scenario(tmp_path / "book.parquet")), 1)
    with pytest.raises(ScenarioError, match="agents.book.file: data file"):
        load(book_scenario(tmp_path / "missing.parquet"))
