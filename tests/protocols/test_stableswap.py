"""StableSwap pool: invariant math checked against an independent root-finder on the invariant itself, the fee
and admin-fee split, the EMA oracle by hand, and a depeg moving the pool price."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from defistress.protocols.base import Clock, Env, Revert
from defistress.protocols.stableswap import StableSwapParams, StableSwapPool
from defistress.protocols.stableswap_math import get_D, get_y, spot_prices
from tests.conftest import track_env


def invariant(xp, A, D):
    """Ann·Σx + D − Ann·D − D^(n+1)/(n^n·Πx) with Ann = A·n (the factory pools' A), written out directly."""
    n = len(xp)
    ann = A * n
    return ann * sum(xp) + D - ann * D - D ** (n + 1) / (n**n * np.prod(xp))


def D_by_root(xp, A):
    return brentq(lambda d: invariant(xp, A, d), 1e-9, 2 * sum(xp), xtol=1e-12, rtol=1e-15)


def test_balanced_pool_invariant_is_the_sum_of_balances():
    # with equal balances D = Σx exactly (plug x_i = D/n into the invariant)
    assert get_D([1e6, 1e6], 500) == pytest.approx(2e6, rel=1e-14)
    assert get_D([3e5, 3e5, 3e5], 100) == pytest.approx(9e5, rel=1e-14)


@pytest.mark.parametrize(
    "xp,A", [([8.25e6, 11.38e6], 500), ([5.24e6, 0.906e6], 500), ([1e6, 2e6, 0.5e6], 200), ([10, 1e4], 5)]
)
def test_newton_D_agrees_with_an_independent_root_of_the_invariant(xp, A):
    assert get_D(xp, A) == pytest.approx(D_by_root(xp, A), rel=1e-12)


def test_get_y_keeps_the_invariant_and_agrees_with_a_root_finder():
    xp, A = [7.05e6, 8.91e6], 500
    D = get_D(xp, A)
    x_new = xp[0] + 250_000.0
    y = get_y(0, 1, x_new, xp, A)
    y_root = brentq(lambda y_: invariant([x_new, y_], A, D), 1.0, xp[1], xtol=1e-9, rtol=1e-15)
    assert y == pytest.approx(y_root, rel=1e-12)


def test_spot_price_matches_a_small_trade_without_fee():
    xp, A = [5.24e6, 0.906e6], 500
    D = get_D(xp, A)
    dx = 1.0
    dy = xp[0] - get_y(1, 0, xp[1] + dx, xp, A, D)  # coin 0 received for 1 unit of coin 1
    assert spot_prices(xp, A)[1] == pytest.approx(dy / dx, rel=1e-6)


def _pool(balances=(1e6, 1e6), A=500.0, fee=0.0004):
    env = track_env(Env(clock=Clock(0, 12.0)))
    pool = StableSwapPool(StableSwapParams("pool", ("USDC", "crvUSD"), A, fee), env)
    pool.seed(list(balances))
    return pool, env


def test_exchange_takes_the_fee_from_the_output_and_half_of_it_leaves_for_the_admin():
    pool, env = _pool((2e6, 3e6), fee=0.001)
    env.ledger.mint("USDC", "t", 100_000.0, "test")
    xp = pool.balances()
    raw = xp[1] - get_y(0, 1, xp[0] + 100_000.0, xp, 500.0)
    out = pool.exchange("t", 0, 1, 100_000.0)
    assert out == pytest.approx(raw * (1 - 0.001), rel=1e-12)
    assert env.ledger.balance("pool:admin", "crvUSD") == pytest.approx(raw * 0.001 * 0.5, rel=1e-12)
    assert pool.balances()[1] == pytest.approx(3e6 - raw * (1 - 0.0005), rel=1e-12)
    with pytest.raises(Revert):
        pool.exchange("t", 0, 1, 1.0, min_dy=10.0)


def test_ema_oracle_moves_toward_the_spot_price_with_the_exp_of_elapsed_time():
    pool, env = _pool()
    env.ledger.mint("USDC", "t", 300_000.0, "test")
    xp = pool.balances()
    # Stableswap.vy exchange saves the price at the invariant's balances (before the fee is kept back)
    spot = spot_prices([xp[0] + 300_000.0, get_y(0, 1, xp[0] + 300_000.0, xp, 500.0)], 500.0)[1]
    pool.exchange("t", 0, 1, 300_000.0)  # crvUSD becomes dearer in USDC
    assert spot > 1.0
    assert pool.price_oracle() == pytest.approx(1.0)  # EMA saved before the trade's price counts
    env.clock.block = 72  # 864 s later
    alpha = math.exp(-864.0 / 866.0)
    assert pool.price_oracle() == pytest.approx(spot * (1 - alpha) + 1.0 * alpha, rel=1e-12)
    assert pool.twap() == pytest.approx(1.0 / pool.price_oracle())


def test_selling_a_depegging_stablecoin_into_the_pool_moves_its_price_as_on_curve():
    pool, env = _pool((8.25e6, 11.38e6))
    p0 = pool.get_p()  # crvUSD in USDC
    token, amount = pool.amount_in_for_price(1.0 / 1.02)  # USDC worth 0.98: arbitrage until crvUSD costs 1.02 USDC
    assert token == "USDC"
    env.ledger.mint("USDC", "arb", amount, "test")
    pool.swap("arb", "USDC", amount)
    assert pool.get_p() == pytest.approx(1.02, rel=1e-9)
    assert pool.get_p() > p0


def test_balanced_deposit_mints_lp_in_proportion_to_D_and_imbalanced_pays_a_fee():
    pool, env = _pool((1e6, 1e6), fee=0.0004)
    supply = pool.total_supply()
    assert pool.calc_token_amount([1e5, 1e5], True) == pytest.approx(supply * 0.1, rel=1e-12)
    one_sided = pool.calc_token_amount([2e5, 0.0], True)
    assert one_sided < supply * 0.1  # same value, but imbalanced: fee and slippage
    env.ledger.mint("crvUSD", "pk", 1e5, "test")
    lp = pool.add_liquidity("pk", [0.0, 1e5])
    burned = pool.remove_liquidity_imbalance("pk", [0.0, 5e4])
    assert 0 < burned < lp
