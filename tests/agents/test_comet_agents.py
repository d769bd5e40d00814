"""Comet's absorbers and collateral buyers on a one-account market: when they act, what they pay and earn."""

from __future__ import annotations

from types import SimpleNamespace

import mesa
import pytest
from conftest import track_env

from defistress.agents.comet_agents import CollateralBuyer, CometAbsorber
from defistress.agents.tx import GWEI, BlockView
from defistress.protocols.amm import ConstantProductPool, PoolParams
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.comet import Comet, CometAsset, CometParams

ABSORB = dict(
    latency_blocks=0,
    max_accounts_per_tx=10,
    max_tx_per_block=3,
    absorb_gas_base=60_000,
    absorb_gas_per_account=140_000,
    priority_fee_gwei=2.0,
    private_orderflow=True,
)


def market(target_reserves=5e6):
    env = track_env(Env())
    oracles = {"USDC": FixedPrice(1.0, "usdc"), "ETH": FixedPrice(2000.0, "eth")}
    c = Comet(
        "comet",
        CometParams("USDC", (CometAsset("ETH", 0.825, 0.895, 0.95),), target_reserves=target_reserves),
        oracles,
        env,
    )
    env.ledger.mint("USDC", "lenders", 1e6, "genesis")
    c.supply_liquidity("lenders", "USDC", 1e6)
    (a,) = c.add_accounts(1)
    env.ledger.mint("ETH", "bob", 10.0, "genesis")
    c.supply("bob", [a], "ETH", [10.0])
    c.borrow("bob", [a], "USDC", [16_000.0])
    oracles["ETH"].price = 1700.0  # 10 x 1700 x 0.895 = 15,215 < 16,000
    return c, oracles, int(a)


def test_absorber_acts_when_the_points_cover_its_gas_and_not_otherwise():
    c, _, a = market()
    view = BlockView(1, 12.0, 100.0, {"ETH": 1700.0, "USDC": 1.0})
    eth = lambda: 2000.0  # noqa: E731
    # no reimbursement: one account costs 200,000 gas x 102 gwei x $2,000 = $40.8, above a $10 tolerance
    stingy = CometAbsorber(
        mesa.Model(rng=0), "keeper", SimpleNamespace(**ABSORB, points_reimbursement=0.0, max_loss_usd=10.0), [c], eth
    )
    assert stingy.submit(view) == []
    assert 200_000 * 102 * GWEI * 2000 == pytest.approx(40.8)
    # full reimbursement of gas x base fee: only the tip is lost ($0.8)
    paid = CometAbsorber(
        mesa.Model(rng=0), "keeper", SimpleNamespace(**ABSORB, points_reimbursement=1.0, max_loss_usd=10.0), [c], eth
    )
    (tx,) = paid.submit(view)
    c.env.ledger.mint("ETH", "keeper", 1.0, "genesis_gas")
    tx.action()
    assert c.points["keeper"].num_absorbed == 1
    assert c.points["keeper"].approx_spend_eth == pytest.approx(200_000 * 100 * GWEI)


BUY = dict(
    latency_blocks=0,
    absorb_first=True,
    max_accounts_per_tx=10,
    max_tx_per_block=3,
    buy_gas=300_000,
    absorb_gas_base=60_000,
    absorb_gas_per_account=140_000,
    max_slippage=0.01,
    profit_share_to_gas=0.3,
    max_priority_fee_gwei=500.0,
    min_profit_usd=10.0,
    gas_budget_eth=1.0,
    private_orderflow=True,
)


def test_buyer_absorbs_buys_at_the_discount_and_sells_on_the_pool():
    """10 ETH absorbed at $1,700; the store front discount is 0.5 x (1 - 0.95) = 2.5%: all 10 ETH cost
    10 x 1700 x 0.975 = 16,575 USDC and sell on a deep pool near $1,700 for a profit after gas."""
    c, _, a = market()
    env = c.env
    pool = ConstantProductPool(PoolParams("uni", "ETH", "USDC", 0.0005), env)
    pool.seed(50_000.0, 85_000_000.0)
    env.ledger.mint("USDC", "buyer", 100_000.0, "genesis")
    env.ledger.mint("ETH", "buyer", 1.0, "genesis_gas")
    b = CollateralBuyer(mesa.Model(rng=0), "buyer", SimpleNamespace(**BUY), [c], [pool], lambda: 1700.0)
    txs = b.submit(BlockView(1, 12.0, 10.0, {"ETH": 1700.0, "USDC": 1.0}))
    assert len(txs) == 1
    txs[0].action()
    assert c.metrics()["accounts_absorbed"] == 1 and c.collateral_reserves("ETH") == pytest.approx(0.0, abs=1e-9)
    assert env.ledger.balance("buyer", "USDC") > 100_000.0 + 16_575.0 * 0.02  # bought at 2.5% off, sold near par
    # absorb credits 10 x 1700 x 0.95 = 16,150 against 16,000 of debt: the account keeps 150 USDC of supply and
    # reserves pay out 16,150; the purchase brings 16,575 back
    assert c.balance()[a] == pytest.approx(150.0)
    assert c.reserves() == pytest.approx(-16_150.0 + 16_575.0)


def test_buyer_does_not_buy_when_reserves_are_at_target():
    c, _, a = market(target_reserves=0.0)
    env = c.env
    env.ledger.mint("USDC", c.id, 50_000.0, "genesis_reserves")  # reserves 50k > 16k absorbed: still above 0
    env.ledger.mint("USDC", "buyer", 100_000.0, "genesis")
    b = CollateralBuyer(mesa.Model(rng=0), "buyer", SimpleNamespace(**BUY), [c], [], lambda: 1700.0)
    assert b.submit(BlockView(1, 12.0, 10.0, {"ETH": 1700.0, "USDC": 1.0})) == []
