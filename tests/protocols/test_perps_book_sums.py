"""The perp DEX's per-block figures are kept between blocks while nothing moved, and follow every change: oracle
price, funding index, positions and collateral (values by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams


def book():
    """One ETH market (MMF 3%) at 2,000 USD: account 0 long 10 ETH on 1,000 USD, account 1 short 10 ETH on 1e5."""
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0)}
    params = PerpDexParams(
        markets=[PerpMarketParams(asset="ETH", initial_margin_fraction=0.05)], insurance_fund_usd=0.0
    )
    dex = PerpDex(params, orc, env)
    for holder, usd in (("long", 1000.0), ("short", 1e5)):
        env.ledger.mint("USDC", holder, usd, "test")
    dex.open_accounts(["long", "short"], [1000.0, 1e5], [[10.0], [-10.0]])
    return env, dex, orc


def figures(dex) -> dict:
    m = dex.metrics()
    keys = ("open_interest_long_usd", "open_interest_short_usd", "collateral_usd", "equity_usd", "accounts_unhealthy")
    return {k: m[k] for k in (*keys, "bad_debt_usd")}


def test_figures_follow_price_funding_and_deposits():
    env, dex, orc = book()
    # 2,000: equity 1,000 and 100,000; OI 10 ETH a side = 20,000 USD; nobody unhealthy (MMR 600 < 1,000)
    assert figures(dex) == {
        "open_interest_long_usd": 20_000.0,
        "open_interest_short_usd": 20_000.0,
        "collateral_usd": 101_000.0,
        "equity_usd": 101_000.0,
        "accounts_unhealthy": 0,
        "bad_debt_usd": 0.0,
    }
    assert figures(dex) == figures(dex)  # read twice, unchanged
    # 1,890: the long's equity 1,000 − 1,100 = −100 (bad debt 100), the short's 101,100; OI 18,900 a side
    orc["ETH"].price = 1890.0
    f = figures(dex)
    assert f["open_interest_long_usd"] == pytest.approx(18_900.0, rel=1e-12)
    assert f["open_interest_short_usd"] == pytest.approx(18_900.0, rel=1e-12)
    assert (f["equity_usd"], f["accounts_unhealthy"]) == (pytest.approx(101_000.0, rel=1e-12), 1)
    assert f["bad_debt_usd"] == pytest.approx(100.0, rel=1e-9)
    # the funding index rises 5 USD per ETH: the long owes 50 more (−150), the short receives 50
    dex.funding_index = dex.funding_index + np.array([5.0])
    f = figures(dex)
    assert f["bad_debt_usd"] == pytest.approx(150.0, rel=1e-9)
    assert f["equity_usd"] == pytest.approx(101_000.0, rel=1e-12) and f["collateral_usd"] == 101_000.0
    # a 400 USD deposit into the long: collateral 101,400, its equity 250 (MMR 567: still unhealthy), no bad debt
    env.ledger.mint("USDC", "long", 400.0, "test")
    dex.deposit("long", [0], [400.0])
    f = figures(dex)
    assert f["collateral_usd"] == 101_400.0 and f["bad_debt_usd"] == 0.0 and f["accounts_unhealthy"] == 1
    assert f["equity_usd"] == pytest.approx(101_400.0, rel=1e-12)
