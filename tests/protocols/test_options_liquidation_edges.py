"""The options venue's liquidation and controller entry points at their boundaries (protocols/options_liquidation.py).

Common case (as tests/protocols/test_options.py): ETH at 2000 USD, a market maker, alice's row and a
liquidator row "liq" with 200,000 USD; alice writes 4 puts struck at 1800 (7 days) against 1,100 USD of cash
and the oracle drops to 1,700 (below maintenance, equity > 0) or 1,200 (equity < 0).
"""

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import Generic
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


def step(v, env, oracle=None, price=None, seconds=12.0):
    if price is not None:
        oracle.price = price
    env.clock.block += int(round(seconds / env.clock.block_seconds))
    v.accrue(seconds)


def ended(env):
    evs = [e for e in env.events if isinstance(e, Generic) and e.name == "auction_ended"]
    assert all(e.source == "options" and e.block == env.clock.block for e in evs)
    return [e.detail for e in evs]


def test_each_block_ends_the_auction_of_a_row_taken_over_by_a_controller():
    v, env, oracle, a, _, _ = crashed(1700.0)
    v.start_auction(a)
    v.set_controlled([a])
    step(v, env)
    assert v.auction_state(a).phase == "none"
    assert ended(env) == [{"account": a, "reason": "controlled"}]


def test_each_block_ends_a_solvent_auction_once_buffer_margin_is_back_above_zero():
    v, env, oracle, a, _, _ = crashed(1700.0)
    v.start_auction(a)
    step(v, env, oracle, price=2000.0)
    assert v.auction_state(a).phase == "none"
    assert ended(env) == [{"account": a, "reason": "buffer_margin_restored"}]


def test_each_block_ends_an_insolvent_auction_once_the_row_is_back_above_maintenance():
    v, env, oracle, a, _, _ = crashed(1200.0)
    v.start_auction(a)  # equity < 0: insolvent from the start
    assert bool(v.auction_insolvent[a])
    step(v, env, oracle, price=2000.0)
    assert v.auction_state(a).phase == "none" and not v.auction_insolvent[a]
    assert ended(env) == [{"account": a, "reason": "above_maintenance"}]


def test_a_solvent_auction_turns_insolvent_when_its_time_runs_out_or_its_equity_goes_negative():
    v, env, oracle, a, _, _ = crashed(1700.0)
    v.start_auction(a)
    # mainnet schedule: fast 900 s + slow 43,200 s; one block after that the auction is insolvent
    step(v, env, seconds=900.0 + 43_200.0 + 12.0)
    assert bool(v.auction_insolvent[a]) and v.auction_state(a).phase == "insolvent"
    v, env, oracle, a, _, _ = crashed(1700.0)
    v.start_auction(a)
    step(v, env, oracle, price=1200.0)  # 12 s into the fast phase, but MtM < 0
    assert np.flatnonzero(v.auction_insolvent).tolist() == [a]
    assert float(v.auction_lower[a]) == pytest.approx(-(v.equity()[a] - v.margin().mm[a] * 1.15), rel=1e-9)


def test_a_bid_in_a_run_out_solvent_auction_converts_it_to_insolvent_first():
    v, env, oracle, a, lr, put = crashed(1700.0)
    v.start_auction(a)
    env.clock.block += int((900 + 43_200 + 12) / 12)  # no accrue: nobody converted it yet
    assert not v.auction_insolvent[a] and v.auction_state(a).phase == "insolvent"
    assert v.auction_state(a).payout_usd == 0.0  # not converted yet: no time in the insolvent phase
    qty = v.qty[a, put]
    ev = v.bid(a, "liq", lr, 0.5)
    # converted now: the insolvent payout starts at 0 and rises over 3,600 s, so half the account goes for nothing
    assert np.flatnonzero(v.auction_insolvent).tolist() == [a]  # that row only
    assert v.auction_ins_start[a] == v.now and v.auction_ins_start[lr] == 0.0
    # the liquidator paid received − bonus = 0 (the security module paid nothing either)
    assert ev.collateral_seized == 0.5 and ev.bonus_usd == pytest.approx(ev.collateral_seized_usd, abs=1e-12)
    assert v.qty[a, put] == pytest.approx(qty * 0.5) and v.qty[lr, put] == pytest.approx(qty * 0.5)


def test_a_solvent_bid_reverts_when_the_auction_should_have_ended_or_has_no_positive_price():
    v, env, oracle, a, lr, _ = crashed(1700.0)
    v.start_auction(a)
    oracle.price = 2000.0  # buffer margin > 0, no block has ended the auction yet
    with pytest.raises(Revert, match=rf"auction on row {a} should be terminated \(buffer margin > 0\)$"):
        v.bid(a, "liq", lr, 0.5)
    oracle.price = 1200.0  # MtM < 0 inside the fast phase: the bid price eq·d is negative
    with pytest.raises(Revert, match=rf"solvent auction on row {a} ended$"):
        v.bid(a, "liq", lr, 0.5)


def test_partial_liquidation_needs_partial_mode_and_a_row_below_maintenance():
    v, env, oracle, a, lr, _ = crashed(1700.0)
    with pytest.raises(Revert, match="liquidation mode is 'auction', not 'partial'$"):
        v.liquidate_partial(a, "liq", lr)
    env2 = Env()
    for h in ("mm", "alice", "liq"):
        env2.ledger.mint("USDC", h, 1e7, "test")
    prm = OptionsVenueParams(vol=FROZEN, liquidation="partial")
    w = OptionsVenue(prm, {"ETH": FixedPrice(2000.0), "USDC": FixedPrice(1.0)}, env2)
    w.set_market_maker(int(w.open_accounts("mm", [1e6])[0]))
    b = int(w.open_accounts("alice", [20_000.0])[0])
    lb = int(w.open_accounts("liq", [200_000.0])[0])
    put = w.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    w.trade("alice", [b], put, [-1.0])
    with pytest.raises(Revert, match=f"row {b} is above maintenance margin$"):
        w.liquidate_partial(b, "liq", lb)


def test_socialised_losses_below_one_dollar_fall_on_positive_cash_only():
    v, env, _, a, lr = make()
    zero = int(v.open_accounts("liq", [0.0])[0])  # a row with no cash takes no haircut
    v.cash[a] = -0.8  # no positions: deficit 0.8 USD, no security module
    before = v.cash.copy()
    assert v.write_off(a) == pytest.approx(0.8)
    assert v.cash[zero] == 0.0 and v.cash[a] == pytest.approx(0.0, abs=1e-12)
    pos = np.maximum(before, 0.0)
    pos[a] = 0.0
    # pro rata over the market maker (1e6) and the liquidator (2e5): 0.8·(1e6, 2e5)/1.2e6
    np.testing.assert_allclose(v.cash[pos > 0], before[pos > 0] - pos[pos > 0] * 0.8 / pos.sum(), rtol=1e-15)


def test_a_loss_with_no_positive_cash_anywhere_stays_with_the_row():
    v, env, _, a, lr = make()
    v.cash[:] = 0.0
    v.cash[a] = -300.0
    assert v.write_off(a) == 0.0
    assert v.cash[a] == -300.0 and np.all(np.isfinite(v.cash))


def test_auction_discount_without_an_auction_names_the_row():
    v, _, _, a, _ = make()
    with pytest.raises(Revert, match=rf"^{v.id}: no auction on row {a}$"):
        v.auction_discount(a)


def test_controller_close_checks_its_liquidator_row_and_penalty_but_not_the_liquidators_margin():
    v, env, _, a, lr = make()
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-4.0])
    v.set_controlled([a])
    assert list(np.flatnonzero(v.controlled)) == [a]  # only that row
    with pytest.raises(Revert, match="does not own"):
        v.controller_close(a, 0.25, "alice", lr, 0.0)
    with pytest.raises(Revert, match="^options: liquidator row equals the liquidated row$"):
        v.controller_close(a, 0.25, "alice", a, 0.0)
    for bad in (-0.1, np.inf, np.nan):
        with pytest.raises(Revert, match=rf"^penalty={bad}: allowed finite >= 0$"):
            v.controller_close(a, 0.25, "liq", lr, bad)
    small = int(v.open_accounts("liq", [1.0])[0])  # far below the initial margin of one written put
    ev = v.controller_close(a, 0.25, "liq", small, 0.0)  # a privileged call: no margin check on either row
    assert ev.liquidator == "liq" and ev.bonus_usd == 0.0
    assert v.qty[small, put] == pytest.approx(-1.0) and v.qty[a, put] == pytest.approx(-3.0)


def partial_world(alice=1100.0, liq=200_000.0):
    env = Env()
    oracle = FixedPrice(2000.0)
    for h in ("mm", "alice", "liq"):
        env.ledger.mint("USDC", h, 1e7, "test")
    prm = OptionsVenueParams(vol=FROZEN, liquidation="partial")
    v = OptionsVenue(prm, {"ETH": oracle, "USDC": FixedPrice(1.0)}, env)
    v.set_market_maker(int(v.open_accounts("mm", [1e6])[0]))
    a = int(v.open_accounts("alice", [alice])[0])
    lr = int(v.open_accounts("liq", [liq])[0])
    return v, env, oracle, a, lr


def test_partial_liquidation_checks_the_liquidators_row_and_its_initial_margin():
    v, env, oracle, a, lr = partial_world()
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-4.0])
    oracle.price = 1700.0
    with pytest.raises(Revert, match="does not own"):
        v.liquidate_partial(a, "alice", lr)
    with pytest.raises(Revert, match="^options: liquidator row equals the liquidated row$"):
        v.liquidate_partial(a, "alice", a)
    small = int(v.open_accounts("liq", [1.0])[0])
    with pytest.raises(Revert, match=f"^options: liquidator row {small} would end below initial margin"):
        v.liquidate_partial(a, "liq", small)
    assert v.qty[a, put] == -4.0 and v.qty[small, put] == 0.0  # undone
    ev = v.liquidate_partial(a, "liq", lr)
    assert ev.liquidator == "liq" and v.qty[a, put] == pytest.approx(-3.0)


def test_partial_liquidation_needs_a_maintenance_requirement():
    v, env, oracle, a, lr = partial_world()
    v.cash[a] = -10.0  # no positions: mm = 0, equity < 0 — a deficit to write off, not a row to liquidate
    with pytest.raises(Revert, match=f"^options: row {a} is above maintenance margin$"):
        v.liquidate_partial(a, "liq", lr)


def test_partial_liquidation_of_a_requirement_below_one_dollar():
    v, env, oracle, a, lr = partial_world(alice=0.5)
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-0.001], check_margin=False)
    oracle.price = 1200.0  # 0.001 put 600 in the money: equity < mm < 1 USD
    eq, mm = v.equity()[a], v.margin().mm[a]
    assert 0 < mm < 1.0 and eq < mm
    v.liquidate_partial(a, "liq", lr)
    assert v.qty[a, put] == pytest.approx(-0.00075)  # 25% closed


def test_controller_close_records_account_amounts_penalty_and_health_before():
    v, env, _, a, lr = make()
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-4.0])
    v.set_controlled([a])
    mark = v.mark_prices()[put]
    eq, mm = v.equity()[a], v.margin().mm[a]
    ev = v.controller_close(a, 0.25, "liq", lr, 0.02)
    # 1 of 4 written puts moves at mark: volume |1·mark|, the liquidator takes over a value of −mark (it is paid
    # mark to take the put) and 2% of |1·mark| as penalty
    assert (ev.account, ev.liquidator, ev.collateral_seized) == (a, "liq", 0.25)
    assert ev.debt_repaid == pytest.approx(mark) and ev.collateral_seized_usd == pytest.approx(-mark)
    assert ev.bonus_usd == pytest.approx(0.02 * mark)
    assert ev.health_before == pytest.approx(eq / mm, rel=1e-12)


def test_a_controller_close_of_a_row_under_water_pays_no_penalty():
    v, env, oracle, a, lr, put = crashed(1200.0)
    assert v.equity()[a] < 0
    v.set_controlled([a])
    ev = v.controller_close(a, 0.5, "liq", lr, 0.05)
    assert ev.bonus_usd == 0.0  # the penalty is capped at positive equity: there is none


def test_write_off_records_each_bad_debt_and_adds_them_up():
    from defistress.protocols.events import BadDebt

    v, env, _, a, lr = make()
    b = int(v.open_accounts("alice", [0.0])[0])
    env.clock.block = 5
    v.cash[a] = -300.0  # no positions, no security module: 300 USD socialised over the positive cash
    assert v.write_off(a) == pytest.approx(300.0)
    env.clock.block = 6
    v.cash[b] = -200.0
    assert v.write_off(b) == pytest.approx(200.0)
    assert v.bad_debt_usd == pytest.approx(500.0)
    evs = [e for e in env.events if isinstance(e, BadDebt)]
    got = [(e.block, e.source, e.account, e.asset, e.amount, e.amount_usd) for e in evs]
    assert got == [
        (5, "options", a, "USDC", pytest.approx(300.0), pytest.approx(300.0)),
        (6, "options", b, "USDC", pytest.approx(200.0), pytest.approx(200.0)),
    ]


def test_a_haircut_of_exactly_the_dust_limit_is_not_bad_debt():
    v, env, _, a, lr = make()
    v.cash[:] = 0.0
    v.cash[lr] = 1e-9  # all the positive cash there is: exactly DUST_USD (1e-9 USD)
    v.cash[a] = -300.0
    # 1e-9 is absorbed (min(300, 1e-9)); a haircut of at most DUST_USD is float rounding, not bad debt
    assert v.write_off(a) == 1e-9
    assert v.bad_debt_usd == 0.0
    assert v.cash[lr] == 0.0 and v.cash[a] == -300.0 + 1e-9


def test_a_close_records_the_health_before_even_for_requirements_of_at_most_one_dollar():
    v, env, oracle, a, lr = partial_world(alice=0.5)
    v.set_controlled([a])
    nothing = v.controller_close(a, 0.5, "liq", lr, 0.0)  # cash only: no requirement, health inf
    assert v.margin().mm[a] == 0.0 and nothing.health_before == np.inf and nothing.debt_repaid == 0.0
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-0.001], check_margin=False)
    oracle.price = 1200.0
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])
    assert 0 < mm < 1.0
    ev = v.controller_close(a, 0.5, "liq", lr, 0.0)
    assert ev.health_before == eq / mm


def insolvent_at_half_time(sm_usd, liq=200_000.0):
    """alice's puts at 1,200 (equity < 0): an insolvent auction from the start, 1,800 s in (half the 3,600 s)."""
    v, env, oracle, a, lr, put = crashed(1200.0, sm_usd=sm_usd, liq=liq)
    v.start_auction(a)
    step(v, env, seconds=1800.0)
    return v, env, oracle, a, lr, put


def test_an_insolvent_bid_for_half_the_account_is_paid_half_the_payout_by_the_security_module():
    v, env, oracle, a, lr, put = insolvent_at_half_time(sm_usd=1e6)
    st = v.auction_state(a)
    # payout for the whole account: |BM at the start| x 1800 / 3600
    assert st.phase == "insolvent" and st.payout_usd == pytest.approx(0.5 * v.auction_lower[a])
    cash_a, cash_l, qty = v.cash[a], v.cash[lr], v.qty[a, put]
    eq, mm = v.equity()[a], v.margin().mm[a]
    ev = v.bid(a, "liq", lr, 0.5)
    payout = 0.5 * st.payout_usd
    # half of alice's puts and cash go to the liquidator, who is paid half the payout by the module
    assert v.qty[lr, put] == pytest.approx(0.5 * qty) and v.qty[a, put] == pytest.approx(0.5 * qty)
    assert v.cash[a] == pytest.approx(0.5 * cash_a)
    assert v.cash[lr] == pytest.approx(cash_l + 0.5 * cash_a + payout)
    assert env.ledger.balance(v.security_module, "USDC") == pytest.approx(1e6 - payout)
    assert ev.collateral_seized == 0.5 and ev.collateral_seized_usd - ev.bonus_usd == pytest.approx(-payout)
    assert ev.health_before == pytest.approx(eq / mm, rel=1e-12)
    assert v.bad_debt_usd == 0.0
    assert np.flatnonzero(v.auction_insolvent).tolist() == [a]
    env.ledger.check_conservation()


def test_insolvent_bids_beyond_the_security_module_add_up_as_bad_debt():
    from defistress.protocols.events import BadDebt

    v, env, oracle, a, lr, put = insolvent_at_half_time(sm_usd=0.0)
    payout = v.auction_state(a).payout_usd
    v.bid(a, "liq", lr, 0.5)  # the module has nothing: 0.5 x payout is socialised over positive cash
    v.bid(a, "liq", lr, 0.5)  # half of the half left: 0.5 x 0.5 x payout (the payout is for the account as it is)
    assert v.bad_debt_usd == pytest.approx(0.75 * payout)
    evs = [
        (e.block, e.source, e.account, e.asset, e.amount, e.amount_usd) for e in env.events if isinstance(e, BadDebt)
    ]
    half, quarter = pytest.approx(0.5 * payout), pytest.approx(0.25 * payout)
    assert evs == [
        (env.clock.block, "options", a, "USDC", half, half),
        (env.clock.block, "options", a, "USDC", quarter, quarter),
    ]


def test_insolvent_bids_are_paid_per_share_of_the_account_they_take():
    # derivexyz/v2-core src/liquidation/DutchAuction.sol, _bidOnInsolventAuction: cashToBidder = −bid price of the
    # account as it is now x percentOfAccount (a share of the current account, which executeBid transfers); the
    # earlier version this venue models (a payout ramp cached at insolvency) paid payout x a share of the original
    # account, capped at percentageLeft. Either way the whole account is paid the whole payout, however it is split.
    v, env, oracle, a, lr, put = insolvent_at_half_time(sm_usd=1e6)
    payout = v.auction_state(a).payout_usd  # for the whole account, 1,800 s into the insolvent auction
    qty = v.qty[a, put]
    cash_l = v.cash[lr] + v.cash[a]  # the liquidator takes all of alice's cash in the end
    v.bid(a, "liq", lr, 0.5)  # half the account: 0.5 x payout
    assert v.auction_state(a).payout_usd == pytest.approx(0.5 * payout)  # what the half left is paid
    v.bid(a, "liq", lr, 0.5)  # a quarter of the account: 0.5 x 0.5 x payout
    v.bid(a, "liq", lr, 1.0)  # the last quarter: 0.25 x payout, and the auction ends
    assert env.ledger.balance(v.security_module, "USDC") == pytest.approx(1e6 - payout)
    assert v.cash[lr] == pytest.approx(cash_l + payout) and v.qty[lr, put] == pytest.approx(qty)
    assert v.qty[a, put] == 0.0 and v.auction_state(a).phase == "none"
    env.ledger.check_conservation()


def test_an_insolvent_bid_reverts_once_the_row_is_back_above_maintenance_or_the_liquidator_too_poor():
    v, env, oracle, a, lr, put = insolvent_at_half_time(sm_usd=1e6, liq=1.0)
    snap = (v.cash.copy(), v.qty.copy())
    with pytest.raises(Revert, match=f"^options: liquidator row {lr} would end below initial margin"):
        v.bid(a, "liq", lr, 0.5)  # a liquidator row with 1 USD cannot take on the written puts
    np.testing.assert_array_equal(v.cash, snap[0])
    np.testing.assert_array_equal(v.qty, snap[1])
    assert env.ledger.balance(v.security_module, "USDC") == 1e6
    oracle.price = 2000.0  # no block has ended the auction yet
    with pytest.raises(
        Revert, match=rf"^options: auction on row {a} should be terminated \(above maintenance margin\)$"
    ):
        v.bid(a, "liq", lr, 0.5)


def test_a_bid_names_a_liquidator_row_that_is_the_auctioned_row():
    v, env, oracle, a, lr, put = crashed(1700.0)
    v.start_auction(a)
    with pytest.raises(Revert, match="^options: liquidator row equals the liquidated row$"):
        v.bid(a, "alice", a, 0.5)


def test_start_auction_records_the_kick_by_hand():
    from defistress.protocols.events import AuctionKicked

    v, env, oracle, a, lr, put = crashed(1700.0, sm_usd=0.0)
    eq, mm, cash = float(v.equity()[a]), float(v.margin().mm[a]), float(v.cash[a])
    bm = eq - 1.15 * mm  # buffer margin, bufferMarginPercentage 15%
    fee = bm / (bm - eq) * eq * 0.10  # f_max at d = 1 x |MtM| x liquidatorFeeRate 10%
    assert 0 < eq < mm and 0 < fee
    ev = v.start_auction(a, keeper="kp")
    assert isinstance(ev, AuctionKicked)
    got = (ev.block, ev.source, ev.auction, ev.account, ev.lot, ev.tab, ev.start_price, ev.keeper, ev.incentive)
    assert got == (env.clock.block, "options", a, a, 1.0, mm, pytest.approx(0.95 * eq), "kp", pytest.approx(fee))
    assert v.cash[a] == pytest.approx(cash - fee)
    assert env.ledger.balance(v.security_module, "USDC") == pytest.approx(fee)
    assert v.auction_start[a] == v.now and not v.auction_insolvent[a]
    with pytest.raises(Revert, match=rf"^options: auction on row {a} already started$"):
        v.start_auction(a)


def test_an_auction_started_below_zero_equity_is_insolvent_and_charges_no_fee():
    v, env, oracle, a, lr, put = crashed(1200.0, sm_usd=50.0)
    eq, mm, cash = float(v.equity()[a]), float(v.margin().mm[a]), float(v.cash[a])
    assert eq < 0
    ev = v.start_auction(a)
    assert (ev.start_price, ev.incentive, ev.tab) == (0.0, 0.0, mm)
    assert v.cash[a] == cash and env.ledger.balance(v.security_module, "USDC") == 50.0
    assert np.flatnonzero(v.auction_insolvent).tolist() == [a]
    assert v.auction_lower[a] == pytest.approx(-(eq - 1.15 * mm)) and v.auction_ins_start[a] == v.now
    st = v.auction_state(a)
    assert (st.phase, st.discount, st.payout_usd, st.bid_price_usd, st.max_fraction) == (
        "insolvent",
        0.0,
        0.0,
        0.0,
        1.0,
    )


def test_the_auction_state_of_a_row_without_an_auction_by_hand():
    v, env, oracle, a, lr, put = crashed(1700.0)
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])
    st = v.auction_state(a)
    assert (st.account, st.phase, st.elapsed_s, st.discount) == (a, "none", 0.0, 0.0)
    assert (st.equity_usd, st.mm_usd, st.buffer_margin_usd) == (eq, mm, pytest.approx(eq - 1.15 * mm))
    assert (st.bid_price_usd, st.max_fraction, st.payout_usd) == (0.0, 0.0, 0.0)
    with pytest.raises(Revert, match=rf"^options: row {lr} is above maintenance margin$"):
        v.start_auction(lr)


def test_the_auction_state_in_the_slow_phase_by_hand():
    v, env, oracle, a, lr, put = crashed(1700.0)
    v.start_auction(a)
    step(v, env, seconds=900.0 + 4320.0)  # 4,320 s into the 43,200 s slow phase
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])
    st = v.auction_state(a)
    d = 0.70 * (1.0 - 4320.0 / 43_200.0)  # cutoff x (1 − t_slow / slow) = 0.63
    bm = eq - 1.15 * mm
    assert (st.phase, st.elapsed_s) == ("slow", 5220.0)
    assert st.discount == pytest.approx(d) and st.bid_price_usd == pytest.approx(eq * d)
    assert st.max_fraction == pytest.approx(bm / (bm - eq * d))  # DutchAuction _getMaxProportion, no reserved cash
    assert st.payout_usd == 0.0


def test_auction_entry_points_name_the_liquidation_mode():
    v, env, oracle, a, lr = partial_world()
    with pytest.raises(Revert, match=r"^options: liquidation mode is 'partial', not 'auction'$"):
        v.start_auction(a)
    with pytest.raises(Revert, match=r"^options: liquidation mode is 'partial', not 'auction'$"):
        v.bid(a, "liq", lr, 0.5)


def test_an_auction_started_at_exactly_zero_equity_is_insolvent():
    v, env, oracle, a, lr, put = crashed(1700.0, sm_usd=50.0)
    # take the equity out as cash (then the float residue of the subtraction back in): equity exactly 0
    env.ledger.mint("USDC", "coord", 1.0, "test")
    v.settle_out(a, float(v.equity()[a]), "coord")
    v.settle_in(a, -float(v.equity()[a]), "coord")
    assert v.equity()[a] == 0.0 and v.margin().mm[a] > 0
    ev = v.start_auction(a)
    assert (ev.start_price, ev.incentive) == (0.0, 0.0)
    assert bool(v.auction_insolvent[a]) and env.ledger.balance(v.security_module, "USDC") == 50.0


def test_a_row_exactly_at_maintenance_margin_is_not_liquidated():
    v, env, oracle, a, lr = partial_world(alice=5000.0)
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-4.0])
    env.ledger.mint("USDC", "coord", 1.0, "test")
    # take out the cash above maintenance (then the float residue back in): equity == mm exactly
    v.settle_out(a, float(v.equity()[a] - v.margin().mm[a]), "coord")
    gap = float(v.equity()[a] - v.margin().mm[a])
    if gap < 0:
        v.settle_in(a, -gap, "coord")
    elif gap > 0:
        v.settle_out(a, gap, "coord")
    assert v.equity()[a] == v.margin().mm[a] > 0
    with pytest.raises(Revert, match=f"^options: row {a} is above maintenance margin$"):
        v.liquidate_partial(a, "liq", lr)


def test_an_auction_cannot_start_on_a_row_exactly_at_maintenance_margin():
    v, env, oracle, a, lr = make(alice=5000.0)
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-4.0])
    env.ledger.mint("USDC", "coord", 1.0, "test")
    v.settle_out(a, float(v.equity()[a] - v.margin().mm[a]), "coord")  # as in the partial-mode test above
    gap = float(v.equity()[a] - v.margin().mm[a])
    if gap < 0:
        v.settle_in(a, -gap, "coord")
    elif gap > 0:
        v.settle_out(a, gap, "coord")
    assert v.equity()[a] == v.margin().mm[a] > 0
    with pytest.raises(Revert, match=f"^options: row {a} is above maintenance margin$"):
        v.start_auction(a)


def test_a_bid_records_the_health_before_for_a_requirement_below_one_dollar():
    v, env, oracle, a, lr = make(alice=0.5)
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-0.001], check_margin=False)
    oracle.price = 1400.0
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])
    assert 0 < eq < mm < 1.0
    v.start_auction(a)
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])  # after the start fee
    ev = v.bid(a, "liq", lr, 0.5)  # a solvent auction at a bid price below one dollar
    assert ev.health_before == pytest.approx(eq / mm, rel=1e-12)
    assert 0 < ev.collateral_seized <= 0.5 and ev.collateral_seized_usd == pytest.approx(ev.collateral_seized * eq)


def test_solvent_bids_record_every_figure_count_and_end_the_auction_when_restored():
    from defistress.protocols.events import Liquidated

    v, env, oracle, a, lr, put = crashed(1700.0)
    v.start_auction(a)
    step(v, env, seconds=456.0)  # 456 s into the fast phase: d = 0.95 − 0.25·456/900
    evs = []
    for ask in (0.1, 1.0):  # a tenth, then as much as restores buffer margin (the auction then ends)
        st = v.auction_state(a)
        eq, mm = st.equity_usd, st.mm_usd
        gross = float(np.abs(v.qty[a]) @ np.abs(v.mark_prices()) + v.spot[a] @ v.prices())
        d = 0.95 - 0.25 * 456.0 / 900.0
        f = min(ask, st.max_fraction)
        pay = eq * d * f  # DutchAuction: cashFromBidder = bid x f, bid = MtM x d
        ev = v.bid(a, "liq", lr, ask)
        assert isinstance(ev, Liquidated)
        got = (ev.block, ev.source, ev.account, ev.liquidator, ev.debt_asset, ev.collateral_asset, ev.protocol_fee)
        assert got == (env.clock.block, "options", a, "liq", "USDC", "portfolio", 0.0)
        assert ev.collateral_seized == pytest.approx(f) and ev.health_before == pytest.approx(eq / mm)
        assert ev.debt_repaid == ev.debt_repaid_usd == pytest.approx(f * gross)
        assert ev.collateral_seized_usd == pytest.approx(f * eq) and ev.bonus_usd == pytest.approx(f * eq - pay)
        evs.append(ev)
    assert 0.1 < evs[1].collateral_seized < 1.0
    assert v.n_liquidations == 2
    assert v.liquidation_volume_usd == pytest.approx(evs[0].debt_repaid + evs[1].debt_repaid)
    assert v.auction_state(a).phase == "none" and not v.auction_insolvent[a]
    assert ended(env) == [{"account": a, "reason": "back_above_margin"}]


def test_a_fraction_of_zero_is_refused_by_name():
    v, env, oracle, a, lr, put = crashed(1700.0)
    v.set_controlled([a])
    with pytest.raises(Revert, match=r"^fraction=0.0: allowed 0 < fraction <= 1$"):
        v.controller_close(a, 0.0, "liq", lr, 0.0)


def test_an_insolvent_auction_goes_on_while_equity_is_below_maintenance():
    v, env, oracle, a, lr, put = crashed(1450.0)  # equity about −261, mm about 834: −mm < equity < 0
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])
    assert -mm < eq < 0
    v.start_auction(a)
    step(v, env)  # same price: equity − mm < 0, so the insolvent auction is not over
    assert v.auction_state(a).phase == "insolvent" and bool(v.auction_insolvent[a])
    assert ended(env) == []
