"""The lending builder's genesis supply: `supply_usd > 0` deposits that many USD of each asset for passive lenders
(tokens minted to them and moved into the market, claims recorded), and borrowers draw from it; `supply_usd = 0`
sizes the deposit for 80% utilisation; too small a supply is refused naming the key."""

from __future__ import annotations

import pytest
from conftest import track_env

from defistress.scenarios.loader import load
from defistress.sim.engine.builders import LENDERS
from defistress.sim.engine.model import StressModel

SMALL = ["agents.borrowers.accounts=50", "run.duration=2m"]


def build(*overrides: str) -> StressModel:
    model = StressModel(load("calm", overrides=[*SMALL, *overrides]))
    track_env(model.env)
    return model


def test_supply_usd_deposits_that_value_of_each_asset_for_the_lenders():
    # calm: ETH at 2,000 USD, USDC at its 1.0 peg. 3M USD of USDC = 3,000,000 USDC; 1M USD of ETH = 500 ETH.
    model = build("protocols.lend.assets.USDC.supply_usd=3000000", "protocols.lend.assets.ETH.supply_usd=1000000")
    lend, led = model.protocols["lend"], model.env.ledger
    usdc, eth = lend.idx["USDC"], lend.idx["ETH"]
    assert led.mint_reasons[("USDC", "genesis_supply")] == 3_000_000.0
    assert led.mint_reasons[("ETH", "genesis_supply")] == 500.0
    assert lend.lender_scaled[usdc] == 3_000_000.0 and lend.lender_scaled[eth] == 500.0  # index 1 at genesis
    assert led.balance(LENDERS, "USDC") == 0.0 and led.balance(LENDERS, "ETH") == 0.0  # all of it went in
    borrowed = lend.debt()[:, usdc].sum()
    assert borrowed > 0  # the borrowers drew from that supply
    # the market holds what the lenders put in less what the borrowers took, plus the borrowers' collateral
    assert led.balance(lend.id, "USDC") == pytest.approx(3_000_000.0 - borrowed, rel=1e-12)
    assert led.balance(lend.id, "ETH") == pytest.approx(500.0 + lend.collateral()[:, eth].sum(), rel=1e-12)
    # utilisation of USDC = borrowed / (lenders' 3M + USDC collateral, of which there is none)
    assert lend.utilisation()[usdc] == pytest.approx(borrowed / 3_000_000.0, rel=1e-12)
    led.check_conservation()


def test_zero_supply_usd_sizes_the_deposit_for_80_percent_utilisation():
    model = build()
    lend, led = model.protocols["lend"], model.env.ledger
    usdc = lend.idx["USDC"]
    borrowed = lend.debt()[:, usdc].sum()
    # the lenders deposit borrowed / 0.8, so utilisation is 0.8
    assert led.mint_reasons[("USDC", "genesis_supply")] == pytest.approx(borrowed / 0.8, rel=1e-12)
    assert lend.lender_scaled[usdc] == pytest.approx(borrowed / 0.8, rel=1e-12)
    assert lend.utilisation()[usdc] == pytest.approx(0.8, rel=1e-12)
    assert ("ETH", "genesis_supply") not in led.mint_reasons  # nothing is borrowed in ETH


def test_a_supply_smaller_than_the_borrowing_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"protocols\.lend\.assets\.USDC\.supply_usd: lenders supply 1,000 USD"):
        build("protocols.lend.assets.USDC.supply_usd=1000")


def test_a_run_with_a_fixed_supply_conserves_tokens_and_keeps_the_lenders_claim():
    model = build("protocols.lend.assets.USDC.supply_usd=3000000")
    for _ in range(10):
        model.step()
    lend = model.protocols["lend"]
    assert lend.lender_scaled[lend.idx["USDC"]] == 3_000_000.0  # lenders neither deposit nor withdraw in a run
    model.env.ledger.check_conservation()
