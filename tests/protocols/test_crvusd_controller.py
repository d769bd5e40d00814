"""crvUSD controller: loan creation and health by hand (Controller.vy), hard liquidation and its token flows,
the monetary policy formula by hand (AggMonetaryPolicy*.vy), and peg keepers (PegKeeper.vy)."""

import math
from dataclasses import dataclass

import numpy as np
import pytest

from defistress.protocols.base import Clock, Env, Revert
from defistress.protocols.crvusd_controller import ControllerParams, CrvUsdController
from defistress.protocols.crvusd_policy import MAX_RATE, MonetaryPolicyParams, policy_rate
from defistress.protocols.llamma import Llamma, LlammaParams
from defistress.protocols.peg_keeper import AggregateStablePrice, PegKeeper, PegKeeperParams
from defistress.protocols.stableswap import StableSwapParams, StableSwapPool
from tests.conftest import track_env


@dataclass
class Feed:
    price: float


def _market(price=2000.0):
    env = track_env(Env(clock=Clock(0, 12.0)))
    feed = Feed(price)
    amm = Llamma(LlammaParams("m", "ETH", "crvUSD", 100, 2000.0, 0.006, 0.0), feed, env, "m:amm", "m:fees")
    ctrl = CrvUsdController("m", ControllerParams(0.09, 0.06), amm, env)
    env.ledger.mint("ETH", "alice", 10.0, "test")
    return ctrl, env, feed


def test_a_new_loan_sits_in_the_band_its_discounted_collateral_supports():
    ctrl, env, feed = _market()
    row = ctrl.create_loan("alice", 10.0, 15_000.0, 4)
    amm = ctrl.amm
    n1 = int(amm.n1[row])
    # Controller.vy _calculate_debt_n1: the largest n1 with y_eff · p_oracle_up(n1) >= debt, y_eff the
    # collateral per band / sqrt(A/(A−1)) · (1 − loan_discount) summed with weights ((A−1)/A)^k
    r = 0.99
    y_eff = 10.0 / 4 * (1 - 0.09) / math.sqrt(1 / r) * sum(r**k for k in range(4))
    assert y_eff * 2000.0 * r**n1 >= 15_000.0 > y_eff * 2000.0 * r ** (n1 + 1)
    # health (Controller.vy _health): x_down · (1 − liquidation_discount) / debt − 1, x_down = Σ 2.5 · band mean
    x_down = sum(2.5 * 2000.0 * r**n * math.sqrt(r) for n in range(n1, n1 + 4))
    assert ctrl.crvusd_health()[row] == pytest.approx(x_down * 0.94 / 15_000.0 - 1, rel=1e-12)
    assert env.ledger.balance("alice", "crvUSD") == pytest.approx(15_000.0)
    assert env.ledger.balance("m:amm", "ETH") == pytest.approx(10.0)


def test_too_much_debt_is_refused():
    ctrl, env, feed = _market()
    with pytest.raises(Revert, match="debt too high"):
        ctrl.create_loan("alice", 10.0, 19_500.0, 4)


def test_hard_liquidation_repays_with_the_positions_stablecoin_then_the_liquidators():
    ctrl, env, feed = _market()
    row = ctrl.create_loan("alice", 10.0, 15_000.0, 4)
    with pytest.raises(Revert, match="not enough rekt"):
        ctrl.liquidate("liq", row)
    # the price falls through the bands: an arbitrageur buys the collateral (soft liquidation)
    env.ledger.mint("crvUSD", "arb", 1e6, "test")
    env.clock.block = 100
    feed.price = 1500.0
    amount, pump = ctrl.amm.get_amount_for_price(1500.0 * 0.994)
    ctrl.amm.exchange("arb", 0, 1, amount)
    h = ctrl.crvusd_health(full=True)[row]
    assert h < 0
    x, y = ctrl.amm.get_sum_xy()
    debt = ctrl.debt()[row]
    env.ledger.mint("crvUSD", "liq", 20_000.0, "test")
    supply = env.ledger.total("crvUSD")
    ev = ctrl.liquidate("liq", row)
    assert ev.debt_repaid == pytest.approx(debt) and ev.collateral_seized == pytest.approx(y[row])
    assert env.ledger.balance("liq", "crvUSD") == pytest.approx(20_000.0 - max(debt - x[row], 0.0))
    assert env.ledger.balance("liq", "ETH") == pytest.approx(y[row])
    assert env.ledger.total("crvUSD") == pytest.approx(supply - debt)  # repaid debt is burned
    assert not ctrl.open[row] and ctrl.n_hard == 1
    assert ctrl.loss_usd[row] > 0  # the soft-liquidation trade cost the borrower, at the oracle price
    with pytest.raises(Revert, match="does not exist"):
        ctrl.liquidate("liq", row)


def test_soft_liquidation_loss_is_what_the_arbitrageur_gained_at_the_oracle_price():
    ctrl, env, feed = _market()
    ctrl.create_loan("alice", 10.0, 12_000.0, 10)
    env.ledger.mint("crvUSD", "arb", 1e6, "test")
    env.clock.block = 100
    feed.price = 1350.0  # into the loan's bands (its top band starts near 1391)
    amount, _ = ctrl.amm.get_amount_for_price(1350.0 * 0.99)
    used, out = ctrl.amm.exchange("arb", 0, 1, amount)
    assert out > 0 and out * 1350.0 - used > 0
    assert ctrl.loss_usd.sum() == pytest.approx(out * 1350.0 - used, rel=1e-9)
    assert ctrl.losses_by_borrower() == {"alice": pytest.approx(out * 1350.0 - used, rel=1e-9)}


def test_monetary_policy_rate_by_hand():
    p = MonetaryPolicyParams(rate0=1e-9, sigma=0.02, target_debt_fraction=0.1)
    assert policy_rate(p, 1.0, 0.0, 1e8) == pytest.approx(1e-9)
    assert policy_rate(p, 0.99, 0.0, 1e8) == pytest.approx(1e-9 * math.exp(0.5))  # (1 − 0.99) / 0.02
    # 5M of peg-keeper debt in 100M: power −= 0.05 / 0.1
    assert policy_rate(p, 1.0, 5e6, 1e8) == pytest.approx(1e-9 * math.exp(-0.5))
    assert policy_rate(p, 1.0, 5e6, 0.0) == 0.0
    # AggMonetaryPolicy2's ceiling term: x1.9 at 90 % of the ceiling, capped at MAX_RATE
    p2 = MonetaryPolicyParams(rate0=1e-9, sigma=0.02, target_debt_fraction=0.1, ceiling_term=True)
    assert policy_rate(p2, 1.0, 0.0, 1e8, debt_for=9e7, ceiling=1e8) == pytest.approx(1.9e-9)
    assert policy_rate(p2, 0.5, 0.0, 1e8, debt_for=1e8, ceiling=1e8) == pytest.approx(MAX_RATE)


def _pool_with_keeper(balances, debt=0.0):
    env = track_env(Env(clock=Clock(0, 12.0)))
    pool = StableSwapPool(StableSwapParams("pool", ("USDC", "crvUSD"), 500.0, 1e-4), env)
    pool.seed(list(balances), {"pk": max(debt, 1.0), "lps": sum(balances) - max(debt, 1.0)})
    price = AggregateStablePrice([pool])
    pk = PegKeeper(PegKeeperParams("pk", "crvUSD", 5e6, 0.2), pool, price, env, debt)
    pk.fund()
    return pk, pool, env, price


def test_peg_keeper_provides_a_fifth_of_the_imbalance_when_crvusd_is_above_peg():
    pk, pool, env, price = _pool_with_keeper((6e6, 4e6))
    env.clock.block = 200  # let the EMA see the imbalance
    pool._save_p(pool.balances(), pool.D())
    env.clock.block = 400
    assert price.price > 1.0  # crvUSD scarce: above peg
    kind, amount = pk.action()
    assert kind == "provide" and amount == pytest.approx((6e6 - 4e6) / 5)
    p_before = pool.get_p()
    pk.update("caller")
    assert pk.debt == pytest.approx(4e5)
    assert pool.get_p() < p_before  # more crvUSD in the pool: its price falls toward the peg
    assert pk.action()[0] == "none"  # ACTION_DELAY: 15 minutes before the next move
    assert env.ledger.balance("caller", "pool:lp") > 0


def test_peg_keeper_withdraws_when_crvusd_is_below_peg_and_never_beyond_its_debt():
    pk, pool, env, price = _pool_with_keeper((4e6, 6e6), debt=1e5)
    env.clock.block = 200
    pool._save_p(pool.balances(), pool.D())
    env.clock.block = 400
    assert price.price < 1.0
    kind, amount = pk.action()
    assert kind == "withdraw" and amount == pytest.approx(1e5)  # min((6M − 4M)/5, debt)
    pk.update("caller")
    assert pk.debt == pytest.approx(0.0, abs=1e-6)
    assert np.isclose(pool.balances()[1], 6e6 - 1e5)
