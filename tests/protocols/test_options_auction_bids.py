"""The options venue's auction bids and per-block auction upkeep where a wrong rule would pass unnoticed
(protocols/options_liquidation.py): the liquidator row's initial-margin check at its boundary and its exemption for
the market maker, what a bid adds to a row that already holds something, the float tolerance of "restored", the
per-block upkeep of several auctions, the solvent/insolvent switch at zero equity, and insolvent payouts nobody can
fund.

Same world as tests/protocols/test_options_liquidation_edges.py: ETH at 2,000 USD, a market maker, alice writes 4
puts struck at 1,800 (7 days) against 1,100 USD and the oracle drops (1,700: below maintenance with equity > 0;
1,200: equity < 0). Derive's rules: derivexyz/v2-core src/liquidation/DutchAuction.sol (docs/margin-methods.md 1.7).
"""

from types import SimpleNamespace

import numpy as np
import pytest
from test_options_liquidation_edges import DAY, crashed, ended, make, partial_world, step

from defistress.protocols import options_liquidation as liq
from defistress.protocols.base import Revert


def fake_row(equity: float, im: float, mm_row=None) -> SimpleNamespace:
    """A venue stand-in whose every row has this equity and initial margin (what _check_liquidator reads)."""
    return SimpleNamespace(id="options", mm_row=mm_row, row_margin=lambda row: (equity, 0.0, im), _touch=lambda: None)


def test_the_liquidator_check_accepts_a_row_up_to_dust_below_initial_margin_and_no_further():
    # the rule: a liquidator row may end at equity >= IM − DUST_USD (1e-9 USD of float rounding), no lower
    im = 1000.0
    liq._check_liquidator(fake_row(im, im), 3, None)  # exactly at IM
    liq._check_liquidator(fake_row(im - 1e-9, im), 3, None)  # exactly DUST_USD below: the float expression itself
    undo = (0, 1, np.zeros(2), np.zeros((2, 1)), np.zeros((2, 1)))
    v = fake_row(im - 1e-6, im)
    v.cash, v.qty, v.spot = np.ones(2), np.ones((2, 1)), np.ones((2, 1))
    with pytest.raises(
        Revert, match=r"^options: liquidator row 3 would end below initial margin \(1000.00 < 1000.00\)$"
    ):
        liq._check_liquidator(v, 3, undo)
    assert v.cash.tolist() == [0.0, 0.0]  # the undo was applied
    liq._check_liquidator(fake_row(-1e9, im, mm_row=3), 3, None)  # the market maker's row is not checked


def test_a_partial_liquidation_may_leave_the_liquidator_exactly_at_initial_margin():
    def world(liq_cash):
        v, env, oracle, a, lr = partial_world(liq=liq_cash)
        put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
        v.trade("alice", [a], put, [-4.0])
        oracle.price = 1700.0
        return v, a, lr, put

    # a dry run with plenty of cash gives the liquidator's equity above its IM after the close; a second world
    # starts the liquidator with that much less cash, so it ends at its IM (up to float rounding)
    v, a, lr, put = world(200_000.0)
    v.liquidate_partial(a, "liq", lr)
    gap = float(v.equity()[lr] - v.margin().im[lr])
    assert gap > 1000.0
    v, a, lr, put = world(200_000.0 - gap)
    v.liquidate_partial(a, "liq", lr)  # accepted
    assert abs(float(v.equity()[lr] - v.margin().im[lr])) < 1e-9 and v.margin().im[lr] > 100.0
    assert v.qty[lr, put] == pytest.approx(-1.0) and v.qty[a, put] == pytest.approx(-3.0)


def test_the_market_maker_bids_without_a_margin_check_and_keeps_what_it_held():
    v, env, oracle, a, lr, put = crashed(1700.0)
    v.start_auction(a)
    mm = v.mm_row
    assert v.qty[mm, put] == 4.0  # it bought alice's 4 puts
    v.cash[mm] = -1e7  # far below any margin: only the market maker's exemption lets it bid
    v.bid(a, "mm", mm, 0.1)
    # 0.1 of alice's −4 puts (0.1 < max fraction 0.42) is added to the market maker's +4
    assert v.qty[mm, put] == pytest.approx(4.0 - 0.4) and v.qty[a, put] == pytest.approx(-3.6)


def test_a_bid_adds_to_the_spot_and_positions_the_liquidator_already_holds():
    v, env, oracle, a, lr, put = crashed(1700.0)
    env.ledger.mint("ETH", "liq", 2.0, "test")
    v.deposit_spot("liq", [lr], "ETH", [2.0])
    call = v.list_instrument("ETH", "call", 2200.0, 7 * DAY)
    v.trade("liq", [lr], call, [1.0])  # a long call of its own, bought from the market maker
    v.start_auction(a)
    v.bid(a, "liq", lr, 0.25)
    # alice holds no spot and no call: the liquidator keeps its 2 ETH and its call, and takes 0.25 x −4 puts
    assert v.spot[lr].tolist() == [2.0] and v.qty[lr, call] == 1.0
    assert v.qty[lr, put] == pytest.approx(-1.0)


def test_restored_means_at_least_minus_a_billionth_of_the_requirement_or_of_one_dollar():
    # |margin| <= 1e-9 x max(mm, 1 USD) is float rounding of a bid of exactly f_max: restored
    assert liq._restored(0.0, 0.0) and liq._restored(-1e-9, 0.5) and liq._restored(-1e-9, 1.0)
    assert not liq._restored(-1.5e-9, 0.5)  # 1.5e-9 below with a requirement under 1 USD: not restored
    assert liq._restored(-1e-9 * 834.0, 834.0) and liq._restored(-5e-7, 834.0)  # 5e-7 <= 8.34e-7
    assert not liq._restored(-1e-6, 834.0)


def test_each_block_upkeeps_every_auction_after_ending_a_controlled_one():
    v, env, oracle, a, lr = make(alice=1100.0)
    b = int(v.open_accounts("alice", [1100.0])[0])
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a, b], put, [-4.0, -4.0])
    oracle.price = 1700.0
    v.start_auction(a)
    v.start_auction(b)
    v.set_controlled([a])  # the lower row: ended first
    step(v, env, oracle, price=2000.0)  # b is back above its buffer margin in the same block
    assert a < b and ended(env) == [
        {"account": a, "reason": "controlled"},
        {"account": b, "reason": "buffer_margin_restored"},
    ]


def solvent_auction_at_equity(target_usd):
    """A started solvent auction (at 1,700) whose row's equity is then set to `target_usd` exactly via cash."""
    v, env, oracle, a, lr, put = crashed(1700.0)
    v.start_auction(a)
    env.ledger.mint("USDC", "coord", 1.0, "test")
    v.settle_out(a, float(v.equity()[a]) - target_usd, "coord")
    gap = float(v.equity()[a]) - target_usd  # float residue of the subtraction
    if gap < 0:
        v.settle_in(a, -gap, "coord")
    elif gap > 0:
        v.settle_out(a, gap, "coord")
    assert v.equity()[a] == target_usd and not v.auction_insolvent[a]
    return v, env, a, lr


def test_a_solvent_auction_turns_insolvent_at_exactly_zero_equity_and_not_at_fifty_cents():
    v, env, a, _ = solvent_auction_at_equity(0.0)
    v.accrue(0.0)  # the per-block upkeep at the same time and prices
    assert bool(v.auction_insolvent[a]) and v.auction_ins_start[a] == v.now
    v, env, a, _ = solvent_auction_at_equity(0.5)
    v.accrue(0.0)
    assert not v.auction_insolvent[a] and v.auction_state(a).phase == "fast"


def test_a_solvent_bid_below_max_fraction_leaves_the_auction_open_even_above_maintenance():
    v, env, oracle, a, lr, put = crashed(1700.0)
    v.start_auction(a)
    st = v.auction_state(a)
    eq, mm, bm, d = st.equity_usd, st.mm_usd, st.buffer_margin_usd, st.discount
    f = 0.9 * bm / (bm - eq * d)  # 90% of DutchAuction _getMaxProportion
    v.bid(a, "liq", lr, f)
    # the row keeps (1 − f) of everything and is paid f·eq·d: BM' = eq(1 − f + f d) − 1.15 mm (1 − f)
    # = bm − f (bm − eq d) = 0.1 bm < 0, while eq' − mm' = BM' + 0.15 mm' > 0 (numbers in the asserts)
    eq2, mm2 = eq * (1 - f + f * d), mm * (1 - f)
    after = v.auction_state(a)
    assert after.buffer_margin_usd == pytest.approx(0.1 * bm, rel=1e-9) and 0.1 * bm < 0
    assert (after.equity_usd, after.mm_usd) == (pytest.approx(eq2, rel=1e-12), pytest.approx(mm2, rel=1e-12))
    assert eq2 - mm2 > 0  # above maintenance, yet a solvent auction runs until its buffer margin is restored
    assert after.phase == "fast" and ended(env) == []


def test_an_insolvent_auction_ends_once_a_bid_leaves_maintenance_margin_within_float_rounding():
    v, env, oracle, a, lr = make(alice=0.5)
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-0.001], check_margin=False)
    oracle.price = 1200.0  # equity < 0 < mm < 1 USD: an insolvent auction from the start
    v.start_auction(a)
    assert bool(v.auction_insolvent[a])
    # cash in until equity − mm = −2e-9 USD (not restored: below −1e-9 x max(mm, 1))
    env.ledger.mint("USDC", "coord", 10.0, "test")
    v.settle_in(a, float(v.margin().mm[a] - v.equity()[a]) - 2e-9, "coord")
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])
    assert -2.1e-9 < eq - mm < -1.9e-9 and mm < 1.0
    v.bid(a, "liq", lr, 0.6)
    # the row keeps 40% of everything: equity − mm = 0.4 x −2e-9 = −8e-10 >= −1e-9, restored; its buffer margin
    # (−8e-10 − 0.15 x 0.4 mm, about −6e-5) is not what ends an insolvent auction
    assert float(v.equity()[a] - v.margin().mm[a]) == pytest.approx(0.4 * (eq - mm), rel=1e-3)
    assert v.auction_state(a).phase == "none" and ended(env) == [{"account": a, "reason": "back_above_margin"}]


def test_an_insolvent_bid_on_a_row_whose_puts_expired_records_an_infinite_health():
    v, env, oracle, a, lr, put = crashed(1200.0, sm_usd=1e6)
    v.start_auction(a)
    cash = float(v.cash[a])
    step(v, env, seconds=7 * DAY)  # the puts expire 600 in the money: cash − 4 x 600, no positions, mm = 0
    assert v.qty[a].tolist() == [0.0] and v.margin().mm[a] == 0.0
    assert v.cash[a] == pytest.approx(cash - 2400.0) and v.auction_state(a).phase == "insolvent"
    ev = v.bid(a, "liq", lr, 0.5)
    assert ev.health_before == np.inf and ev.collateral_seized == 0.5


def test_an_insolvent_payout_nobody_can_fund_is_not_paid_to_the_liquidator():
    v, env, oracle, a, lr, put = crashed(1200.0, sm_usd=0.0)
    env.ledger.mint("ETH", "liq", 20.0, "test")
    v.deposit_spot("liq", [lr], "ETH", [20.0])  # 24,000 USD of spot carries the liquidator's margin
    v.start_auction(a)
    step(v, env, seconds=1800.0)
    payout = v.auction_state(a).payout_usd
    assert payout > 0
    v.cash[:] = 0.0  # no positive cash anywhere to socialise a loss over ...
    v.cash[lr] = -payout - 100.0  # ... the liquidator's own cash stays negative even with the payout
    v.bid(a, "liq", lr, 1.0)
    # security module empty, nothing to haircut: the payout is not paid, the liquidator's cash is unchanged
    assert v.cash[lr] == pytest.approx(-payout - 100.0, rel=1e-12)
    assert v.bad_debt_usd == 0.0


def test_start_auction_refuses_the_market_maker_and_a_row_with_no_requirement_by_name():
    v, env, oracle, a, lr, put = crashed(1700.0)
    with pytest.raises(Revert, match=rf"^options: row {v.mm_row} is the market maker$"):
        v.start_auction(v.mm_row)
    b = int(v.open_accounts("alice", [0.0])[0])
    v.cash[b] = -10.0  # no positions (mm = 0) and equity < 0: a deficit to write off, not an auction
    with pytest.raises(Revert, match=rf"^options: row {b} is above maintenance margin$"):
        v.start_auction(b)
    assert not np.isfinite(v.auction_start).any()


def test_an_auction_started_at_fifty_cents_of_equity_is_solvent_and_charges_its_fee():
    v, env, oracle, a, lr = make(alice=0.5, sm_usd=0.0)
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", [a], put, [-0.001], check_margin=False)
    oracle.price = 1400.0
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])
    assert 0 < eq < mm < 1.0
    bm = eq - 1.15 * mm
    fee = bm / (bm - eq) * eq * 0.10  # DutchAuction _getLiquidationFee: f_max(d = 1) x MtM x 10%
    ev = v.start_auction(a)  # no keeper named
    assert ev.keeper == "" and ev.start_price == pytest.approx(0.95 * eq) and ev.incentive == pytest.approx(fee)
    assert not v.auction_insolvent[a] and v.auction_state(a).phase == "fast"


def test_the_auction_state_of_an_insolvent_auction_by_hand():
    v, env, oracle, a, lr, put = crashed(1200.0, sm_usd=0.0)
    eq, mm = float(v.equity()[a]), float(v.margin().mm[a])
    v.start_auction(a)
    lower = -(eq - 1.15 * mm)  # |BM| at insolvency
    step(v, env, seconds=900.0)  # a quarter of the 3,600 s insolvent auction
    st = v.auction_state(a)
    assert (st.account, st.phase, st.elapsed_s, st.discount, st.max_fraction) == (a, "insolvent", 900.0, 0.0, 1.0)
    # the security module pays a bidder 0.25 x |BM| for the whole account: a negative bid price
    assert st.payout_usd == pytest.approx(0.25 * lower) and st.bid_price_usd == pytest.approx(-0.25 * lower)
    assert st.bid_price_usd < 0


def test_the_auction_state_of_a_solvent_auction_names_its_row():
    v, env, oracle, a, lr, put = crashed(1700.0)
    v.start_auction(a)
    step(v, env, seconds=120.0)
    st = v.auction_state(a)
    assert (st.account, st.phase, st.elapsed_s) == (a, "fast", 120.0)
    assert st.discount == pytest.approx(0.95 - 0.25 * 120.0 / 900.0)


def test_a_solvent_bid_at_exactly_zero_equity_finds_the_auction_ended():
    v, env, a, lr = solvent_auction_at_equity(0.0)  # no block has converted it to an insolvent auction yet
    with pytest.raises(Revert, match=rf"^options: solvent auction on row {a} ended$"):
        v.bid(a, "liq", lr, 0.5)  # bid price 0 x d = 0: nothing to sell at a positive price
    assert v.qty[lr].tolist() == [0.0]
