"""The perp liquidators' preview memo and the traders' alarm key are `PerpDex.state_key()` (plus, for the
liquidators, the fund and the controlled flags): a key kept while nothing moved is reused, and a stale one is not
reused after a funding update, a price move or a position change."""

from __future__ import annotations

import mesa
import numpy as np
from conftest import track_env
from test_traders import make, view

from defistress.agents.perp_liquidator import PerpLiquidator, PerpLiquidatorParams
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams


def liquidatable_book():
    """ETH at 1,950 USD: account 0 long 10 ETH on 1,000 USD (equity 500 < TMMR 10·1,950·3% = 585), account 1
    short 10 ETH on 1e5 USD; a default funding rate of 0.1% per 8 h, so a funding tick moves the index."""
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0)}
    market = PerpMarketParams(asset="ETH", initial_margin_fraction=0.05, default_funding_rate_8h=0.001)
    dex = PerpDex(PerpDexParams(markets=[market], insurance_fund_usd=1e6), orc, env)
    env.ledger.mint("USDC", "pop", 1e5 + 1001.0, "test")
    dex.open_accounts("pop", [1000.0, 1e5], [[10.0], [-10.0]])
    orc["ETH"].price = 1950.0
    return env, dex, orc


def test_liquidator_memo_is_the_state_key_and_is_not_reused_once_stale():
    env, dex, orc = liquidatable_book()
    env.ledger.mint("USDC", "perp-liq", 5e6, "test")
    params = PerpLiquidatorParams(id="perp-liq", capital_usd=5e6, latency_blocks=0, min_profit_usd=1.0)
    liq = PerpLiquidator(mesa.Model(), params, dex, eth_price=lambda: 2000.0)
    calls = []
    real = dex.preview_liquidation
    dex.preview_liquidation = lambda a, *args, **kw: calls.append(a) or real(a, *args, **kw)

    def previews(block: int) -> list[int]:
        calls.clear()
        assert len(liq.submit(view(block, base_fee=0.0))) == 1
        assert liq._memo["state"] == dex.state_key() + (dex.insurance_fund_usd(), dex.controlled.tobytes())
        return list(calls)

    assert previews(1) == [0]
    assert previews(2) == []  # nothing moved: the previews of block 1 are kept
    dex.accrue(3600.0)  # a funding tick alone
    assert previews(3) == [0]
    dex.deposit("pop", [1], [1.0])  # collateral of another account
    assert previews(4) == [0]
    # a position change: the long sells 1 ETH to the short (9 ETH left: equity ~500 < TMMR 9·1,950·3% = 526.5)
    dex.trade("pop", [0], "ETH", [-1.0], counterparty=1)
    assert previews(5) == [0]
    orc["ETH"].price = 1949.0  # a price move
    assert previews(6) == [0]
    assert previews(7) == []


def test_trader_alarm_key_is_the_state_key_and_is_not_reused_once_stale():
    env, dex, orc, pop = make(n=300, attentive_share=1.0, reaction_delay_blocks=50)
    calls = []
    real = dex.health
    dex.health = lambda: calls.append(1) or real()

    def reads(block: int) -> int:
        calls.clear()
        pop.submit(view(block))
        assert pop._alarm_key == dex.state_key()
        return len(calls)

    assert reads(1) == 1
    assert reads(2) == 0  # nothing moved: the alarms of block 1 are kept
    before = dex.funding_index.copy()
    dex.accrue(3600.0)  # a funding tick alone (the traders' book is imbalanced: the index moves)
    assert not np.array_equal(dex.funding_index, before)
    assert reads(3) == 1
    dex.deposit(pop.holder, pop.accounts[:1], [1.0])  # collateral
    assert reads(4) == 1
    dex.trade(pop.holder, pop.accounts[:1], "ETH", [0.001])  # a position change against the vault
    assert reads(5) == 1
    orc["ETH"].price *= 0.99  # a price move
    assert reads(6) == 1
    assert reads(7) == 0
