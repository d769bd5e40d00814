"""LLAMMA: band prices by hand, and a deposit / trade / oracle sequence checked against crvusdsim, an
independent integer port of AMM.vy (github.com/Tcintra/crvusdsim at commit 9024b62, the simulator crvUSDrisk
uses): its LLAMMAPool with A=100, fee=0.6 %, BASE_PRICE=2000 and a constant price oracle gave the figures below
(run by hand; its code is not part of this repository)."""

import math
from dataclasses import dataclass

import numpy as np
import pytest

from defistress.protocols.base import Clock, Env, Revert
from defistress.protocols.llamma import Llamma, LlammaParams
from tests.conftest import track_env


@dataclass
class Feed:
    price: float


def _amm(price=2000.0, fee=0.006, admin_fee=0.0):
    env = track_env(Env(clock=Clock(0, 12.0)))
    feed = Feed(price)
    amm = Llamma(LlammaParams("m", "ETH", "crvUSD", 100, 2000.0, fee, admin_fee), feed, env, "m:amm", "m:fees")
    return amm, env, feed


def _two_borrowers():
    amm, env, feed = _amm()
    amm.add_users(2)
    amm.deposit_range(0, 10.0, 1, 4)  # A: 10 ETH in bands 1..4
    amm.deposit_range(1, 5.0, 2, 6)  # B: 5 ETH in bands 2..6
    env.ledger.mint("ETH", "m:amm", 15.0, "test")
    env.ledger.mint("crvUSD", "arb", 1e9, "test")
    env.ledger.mint("ETH", "arb", 1e6, "test")
    return amm, env, feed


def _step(env, feed, price):
    env.clock.block += 25  # 300 s: past PREV_P_O_DELAY, so no oracle-change fee
    feed.price = price


def test_band_edges_are_geometric_in_A():
    amm, _, _ = _amm()
    assert amm.p_oracle_up(0) == pytest.approx(2000.0)
    assert amm.p_oracle_up(1) == pytest.approx(2000.0 * 0.99)  # (A-1)/A per band
    assert amm.p_oracle_down(3) == pytest.approx(amm.p_oracle_up(4))
    amm.set_rate(1e-9)
    amm.env.clock.block = 1000  # 12 000 s of interest moves the whole grid
    assert amm.p_oracle_up(0) == pytest.approx(2000.0 * (1 + 1e-9 * 12_000), rel=1e-12)


def test_collateral_below_the_oracle_is_worth_the_geometric_mean_of_its_band():
    amm, env, feed = _amm(price=2500.0)
    amm.add_users(1)
    amm.deposit_range(0, 4.0, 1, 4)
    gm = [math.sqrt(amm.p_oracle_up(n) * amm.p_oracle_down(n)) for n in range(1, 5)]
    assert amm.get_x_down()[0] == pytest.approx(sum(gm), rel=1e-12)  # 1 ETH per band, each sold at its mean
    assert amm.get_y_up()[0] == pytest.approx(4.0, rel=1e-12)


def test_deposit_trade_and_oracle_sequence_matches_crvusdsim():
    amm, env, feed = _two_borrowers()
    _step(env, feed, 1950.0)
    assert amm.get_x_down()[0] == pytest.approx(19238.390947673524, rel=1e-12)
    assert amm.get_y_up()[0] == pytest.approx(9.914210270158337, rel=1e-12)
    assert amm.get_p() == pytest.approx(1872.4431818181818, rel=1e-12)

    used, out = amm.exchange("arb", 0, 1, 3000.0)
    assert (used, out) == pytest.approx((3000.0, 1.566765036644695), rel=1e-12)
    assert amm.active_band == 1
    assert amm.get_p() == pytest.approx(1915.3420775546087, rel=1e-12)
    x, y = amm.get_sum_xy()
    assert x == pytest.approx([3000.0, 0.0], rel=1e-12)
    assert y == pytest.approx([8.433234963355305, 5.0], rel=1e-12)
    assert amm.get_x_down() == pytest.approx([19256.416288237204, 9550.86316293502], rel=1e-12)
    assert amm.get_y_up()[1] == pytest.approx(4.995943747281991, rel=1e-12)

    _step(env, feed, 1900.0)
    amount, pump = amm.get_amount_for_price(1850.0)
    assert pump and amount == pytest.approx(13046.102665483151, rel=1e-12)
    used, out = amm.exchange("arb", 0, 1, amount)
    assert out == pytest.approx(7.155450531094112, rel=1e-12)
    assert amm.active_band == 3
    assert amm.get_p() == pytest.approx(1850.0386565062827, rel=1e-12)  # the target, to the contract's rounding
    x, y = amm.get_sum_xy()
    assert x == pytest.approx([12795.785832730979, 3250.316832752172], rel=1e-12)
    assert y == pytest.approx([3.055560308757995, 3.222224123503198], rel=1e-12)

    _step(env, feed, 1990.0)
    used, out = amm.exchange("arb", 1, 0, 2.0)
    assert (used, out) == pytest.approx((2.0, 4196.971641830949), rel=1e-12)
    x, y = amm.get_sum_xy()
    assert x == pytest.approx([9797.948945708871, 2051.1820779433297], rel=1e-12)
    assert y == pytest.approx([4.484131737329424, 3.7936526949317693], rel=1e-12)
    assert amm.get_x_down()[0] == pytest.approx(17957.018718137882, rel=1e-12)
    assert amm.get_y_up()[0] == pytest.approx(9.256149178685616, rel=1e-12)
    # the AMM's tokens are exactly its bands
    assert env.ledger.balance("m:amm", "crvUSD") == pytest.approx(amm.x.sum(), rel=1e-12)
    assert env.ledger.balance("m:amm", "ETH") == pytest.approx(amm.y.sum(), rel=1e-12)


def test_a_trade_inside_one_band_keeps_its_invariant_net_of_the_fee():
    amm, env, feed = _two_borrowers()
    _step(env, feed, 1950.0)
    from defistress.protocols.llamma_math import band_invariant

    x0, y0_ = amm.band_x(1), amm.band_y(1)
    _, f, g, inv = band_invariant(x0, y0_, 1950.0, amm.p_oracle_up(1), 100)
    _, out = amm.exchange("arb", 0, 1, 1000.0)
    # (f + x + dx·(1 − fee)) (g + y − out) = Inv: the fee is kept in the band on top of the invariant
    assert (f + x0 + 1000.0 * (1 - 0.006)) * (g + y0_ - out) == pytest.approx(inv, rel=1e-12)
    assert amm.band_x(1) == pytest.approx(x0 + 1000.0)


def test_round_trip_through_the_bands_costs_the_borrowers_collateral():
    amm, env, feed = _two_borrowers()
    y_start = amm.get_y_up().copy()
    for p in (1950.0, 1900.0, 1850.0):
        _step(env, feed, p)
        amount, pump = amm.get_amount_for_price(p * 0.994)
        amm.exchange("arb", 0 if pump else 1, 1 if pump else 0, amount)
    for p in (1900.0, 1950.0, 2050.0):
        _step(env, feed, p)
        amount, pump = amm.get_amount_for_price(p / 0.994)
        amm.exchange("arb", 0 if pump else 1, 1 if pump else 0, amount)
    x, y = amm.get_sum_xy()
    assert x == pytest.approx([0.0, 0.0], abs=1e-9)  # all converted back above the bands
    assert np.all(y < y_start) and np.all(y > 0.85 * y_start)  # a soft-liquidation loss (about 9-11 % for
    # three 2.5 % oracle jumps each way), not a wipe-out


def test_oracle_jumps_are_limited_and_charged_a_dynamic_fee():
    amm, env, feed = _amm(price=2000.0)
    env.clock.block = 5  # 60 s after the AMM last stored the oracle
    feed.price = 3000.0  # +50 %: limited to +25 % (MAX_P_O_CHG) within PREV_P_O_DELAY
    p, dfee = amm._limit_p_o(3000.0)
    assert p == pytest.approx(2500.0)
    assert dfee == pytest.approx((1 - 0.8**3) * 60 / 120)  # (1 − r³)·dt/T with r = 1/1.25, dt = 120 − 60
    assert amm.dynamic_fee() == pytest.approx(max(0.006, (1 - 0.8**3) * 0.5))
    env.clock.block = 20  # 240 s: no limit, no extra fee
    assert amm.price_oracle() == pytest.approx(3000.0)


def test_bad_inputs_revert():
    amm, env, feed = _two_borrowers()
    with pytest.raises(Revert, match="wrong coin indices"):
        amm.exchange("arb", 0, 0, 1.0)
    with pytest.raises(Revert, match="already has liquidity"):
        amm.deposit_range(0, 1.0, 10, 14)
    with pytest.raises(Revert, match="bands"):
        amm.add_users(1)
        amm.deposit_range(2, 1.0, 10, 70)
