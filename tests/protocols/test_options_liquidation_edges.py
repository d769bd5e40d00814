"""The options venue's liquidation and controller entry points at their boundaries (protocols/options_liquidation.py).

Common case (as tests/protocols/test_options.py): ETH at 2000 USD, a market maker, alice's row and a
liquidator row "liq" with 200,000 USD; alice writes 4 puts struck at 1800 (7 days) against 1,100 USD of cash
and the oracle drops to 1,700 (below maintenance, equity > 0) or 1,200 (equity < 0).
"""

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.options import OptionsVenue, OptionsVenueParams
from defistress.protocols.vol import VolSurfaceParams

DAY = 86_400.0
FROZEN = VolSurfaceParams(skew=0.0, curvature=0.0, level_coupling=0.0, skew_coupling=0.0)


def make(sm_usd=0.0, alice=20_000.0, liq=200_000.0):
    env = Env()
    oracle = FixedPrice(2000.0)
    for h in ("mm", "alice", "liq"):
        env.ledger.mint("USDC", h, 1e7, "test")
    env.ledger.mint("ETH", "alice", 100.0, "test")
    v = OptionsVenue(
        OptionsVenueParams(vol=FROZEN, security_module_usd=sm_usd), {"ETH": oracle, "USDC": FixedPrice(1.0)}, env
    )
    v.set_market_maker(int(v.open_accounts("mm", [1e6])[0]))
    a = int(v.open_accounts("alice", [alice])[0])
    lr = int(v.open_accounts("liq", [liq])[0])
    return v, env, oracle, a, lr


def crashed(crash, sm_usd=0.0, liq=200_000.0):
    v, env, oracle, a, lr = make(sm_usd=sm_usd, alice=1100.0, liq=liq)
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-4.0])
    oracle.price = crash
    env.clock.block += 1
    return v, env, oracle, a, lr, put


def test_settle_in_accepts_zero_and_small_amounts_and_names_a_bad_one():
    v, env, _, a, _ = make()
    env.ledger.mint("USDC", "coord", 10.0, "test")
    cash0, dep0 = v.cash[a], v.net_deposits[a]
    v.settle_in(a, 0.0, "coord")
    v.settle_in(a, 0.5, "coord")
    assert v.cash[a] == cash0 + 0.5 and v.net_deposits[a] == dep0 + 0.5
    assert env.ledger.balance("coord", "USDC") == 9.5
    for bad in (-1.0, np.inf, np.nan):
        with pytest.raises(Revert, match=f"^amount_usd={bad}: allowed finite >= 0$"):
            v.settle_in(a, bad, "coord")
    assert v.cash[a] == cash0 + 0.5


def test_settle_out_moves_small_amounts_and_nothing_from_a_row_without_cash():
    v, env, _, a, _ = make()
    cash0, dep0 = v.cash[a], v.net_deposits[a]
    assert v.settle_out(a, 0.5, "coord") == 0.5
    assert v.cash[a] == cash0 - 0.5 and v.net_deposits[a] == dep0 - 0.5
    assert env.ledger.balance("coord", "USDC") == 0.5
    assert v.settle_out(a, -5.0, "coord") == 0.0  # a negative request moves nothing
    v.settle_out(a, 1e9, "coord")  # all of it
    assert v.cash[a] == 0.0
    assert v.settle_out(a, 100.0, "coord") == 0.0  # nothing left
    assert env.ledger.balance("coord", "USDC") == 20_000.0


def test_write_off_covers_only_negative_cash_that_equity_does_not():
    # equity < 0 but cash > 0 (the premium and deposit are there; the puts are the loss): nothing to write off
    v, env, _, a, _, _ = crashed(1200.0, sm_usd=100.0)
    assert v.equity()[a] < 0 < v.cash[a]
    cash0 = v.cash.copy()
    assert v.write_off(a) == 0.0
    np.testing.assert_array_equal(v.cash, cash0)
    assert env.ledger.balance(v.security_module, "USDC") == 100.0 and v.bad_debt_usd == 0.0


def test_write_off_of_a_row_with_negative_cash_and_positive_equity_is_nothing():
    v, env, _, a, _ = make(sm_usd=100.0)
    v.deposit_spot("alice", [a], "ETH", [1.0])  # 2000 USD of spot
    v.cash[a] = -500.0  # a debt the spot covers: equity 1500
    assert v.equity()[a] == pytest.approx(1500.0)
    assert v.write_off(a) == 0.0
    assert v.cash[a] == -500.0 and env.ledger.balance(v.security_module, "USDC") == 100.0


def test_write_off_takes_a_security_module_below_one_dollar_first():
    v, env, _, a, lr = make(sm_usd=0.5)
    v.cash[a] = -300.0  # no positions: equity = cash = −300, deficit 300
    before = v.cash.copy()
    bad = v.write_off(a)
    # 0.5 from the module; 299.5 socialised over positive cash (mm and liq rows), pro rata
    assert bad == pytest.approx(299.5)
    assert env.ledger.balance(v.security_module, "USDC") == 0.0
    assert v.cash[a] == pytest.approx(0.0, abs=1e-9)
    pos = np.maximum(before, 0.0)
    pos[a] = 0.0
    np.testing.assert_allclose(v.cash[pos > 0], before[pos > 0] - pos[pos > 0] * 299.5 / pos.sum())


def test_a_bid_that_would_leave_the_liquidator_below_initial_margin_changes_nothing():
    v, env, _, a, lr, put = crashed(1700.0, liq=1.0)  # a liquidator row with 1 USD
    v.start_auction(a)
    snap = (v.cash.copy(), v.qty.copy(), v.spot.copy())
    with pytest.raises(Revert, match=f"liquidator row {lr} would end below initial margin"):
        v.bid(a, "liq", lr, 1.0)
    np.testing.assert_array_equal(v.cash, snap[0])
    np.testing.assert_array_equal(v.qty, snap[1])
    np.testing.assert_array_equal(v.spot, snap[2])
    assert v.auction_state(a).phase == "fast"
