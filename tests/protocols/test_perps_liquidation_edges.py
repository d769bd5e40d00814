"""The perp DEX's liquidation rules on the branches the other tests do not reach (dYdX v4 liquidations.go).

ETH market: IMF 10%, maintenance fraction 50% -> MMF 5%; BTC the same; the insurance fund holds 10,000 USDC.
"""

from __future__ import annotations

import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

ETH = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)
BTC = PerpMarketParams(asset="BTC", initial_margin_fraction=0.10, maintenance_fraction=0.5)


def make_dex(**kw):
    env = Env()
    track_env(env)
    oracles = {"ETH": FixedPrice(2000.0), "BTC": FixedPrice(50_000.0)}
    dex = PerpDex(PerpDexParams(markets=[ETH, BTC], insurance_fund_usd=10_000.0, **kw), oracles, env)
    env.ledger.mint("USDC", "pop", 10_000_000.0, "test")
    env.ledger.mint("USDC", "liq", 10_000_000.0, "test")
    return env, dex, oracles


def test_a_named_market_must_hold_a_position_and_is_liquidated_once_per_block():
    env, dex, orc = make_dex()
    # A: +10 ETH @2000 with 1,760 USDC; V: the other side with 100,000 USDC
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0  # equity 760 < MMR 950
    with pytest.raises(Revert, match=r"^perps: account #0 has no BTC position$"):
        dex.liquidate(0, "liq", market="BTC")
    dex.liquidate(0, "liq", market="ETH")
    with pytest.raises(Revert, match=r"^perps: account #0 ETH already liquidated this block$"):
        dex.liquidate(0, "liq", market="ETH")
    env.ledger.check_conservation()


def test_the_per_block_notional_limit_once_used_up_refuses_the_next_market():
    env, dex, orc = make_dex(max_notional_liquidated_per_block_usd=19_000.0)
    dex.open_accounts("pop", [20_000.0, 1_000_000.0], [[100.0, 2.0], [-100.0, -2.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price, orc["BTC"].price = 1900.0, 48_000.0
    # ETH first (190,000 notional): 10% = 19,000 = the whole per-block room -> 10 ETH; nothing left for BTC
    assert dex.liquidate(0, "liq").debt_repaid == pytest.approx(10.0)
    with pytest.raises(Revert, match=r"^perps: account #0 reached the per-block liquidation notional limit$"):
        dex.liquidate(0, "liq", market="BTC")
    env.clock.block += 1  # a new block has a new room
    assert dex.liquidate(0, "liq", market="BTC").debt_asset == "BTC"


def test_an_account_cannot_liquidate_itself():
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    orc["ETH"].price = 1900.0
    with pytest.raises(Revert, match=r"^perps: an account cannot liquidate itself$"):
        dex.liquidate(0, "pop", liquidator_account=0)


def test_deleveraging_a_market_without_a_position_reverts_naming_it():
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    orc["ETH"].price = 1800.0  # equity 1760 − 2000 = −240
    with pytest.raises(Revert, match=r"^perps: account #0 has no BTC position to deleverage$"):
        dex.deleverage(0, "BTC")
    fills = dex.deleverage(0, "ETH")
    assert sum(abs(f.size) for f in fills) == pytest.approx(10.0)
