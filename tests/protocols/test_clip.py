"""Clipper Dutch auctions (Maker dss src/clip.sol): take, partial take, chost rule, redo, shortfalls.

Common case: a vault of 10 ETH owing 1000 DAI, opened at 200 USD; the oracle drops to 140 and the
whole vault is barked: tab = 1000·1.13 = 1130, lot 10, top = 140·1.30 = 182. With cut 0.99 / step
90 s, after 15 min (75 blocks of 12 s) the price is 182·0.99^10 = 164.5975377. dust 100, so
chost = 100·1.13 = 113.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.abaci import LinearDecrease
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.cdp import Cdp, CdpParams
from defistress.protocols.clip import ClipParams
from defistress.protocols.events import AuctionSettled, BadDebt

P15 = 182 * 0.99**10  # 164.5975377 DAI per ETH


def barked(clip=None, surplus_buffer=0.0, vaults=1, keeper_dai=5000.0):
    env = Env()
    env.ledger.mint("ETH", "population", 1000.0, "genesis")
    env.ledger.mint("DAI", "k", keeper_dai, "genesis")
    oracle = FixedPrice(200.0)
    params = CdpParams(
        dust=100.0, hole=1e6, Hole=1e7, surplus_buffer=surplus_buffer, clip=clip or ClipParams(tip=0.0, chip=0.0)
    )
    cdp = Cdp(params, oracle, env, "maker")
    cdp.open_vaults([10.0] * vaults, [1000.0] * vaults)
    oracle.price = 140.0
    for v in range(vaults):
        cdp.bark(v, "kicker")
    return cdp, oracle, env


def at(env, seconds):
    env.clock.block = int(round(seconds / env.clock.block_seconds))


def test_take_of_the_whole_lot_pays_the_tab_and_returns_the_leftover_to_the_owner():
    cdp, _, env = barked()
    at(env, 900)
    clip = cdp.clipper
    assert clip.get_status(0)[1] == pytest.approx(P15)
    ev = clip.take(0, 10.0, 200.0, "k")
    # owe = min(10·164.5975, 1130) = 1130 -> slice = 1130/164.5975 = 6.865230 ETH; 3.134770 ETH back
    assert ev.bid == pytest.approx(1130.0) and ev.lot == pytest.approx(6.865230283)
    led = env.ledger
    assert led.balance("k", "DAI") == pytest.approx(3870.0)
    assert led.balance("k", "ETH") == pytest.approx(6.865230283)
    assert led.balance("population", "ETH") == pytest.approx(990.0 + 3.134769717)
    assert led.balance("maker:clip", "ETH") == pytest.approx(0.0, abs=1e-12)
    assert led.burn_reasons[("DAI", "maker:take")] == pytest.approx(1130.0)
    assert clip.count() == 0 and cdp.dirt == pytest.approx(0.0)
    m = cdp.metrics()
    # due 1000 covered; the 130 penalty is surplus
    assert m["surplus_usd"] == pytest.approx(130.0) and m["bad_debt_usd"] == 0.0
    settled = [e for e in env.events if isinstance(e, AuctionSettled)][-1]
    assert settled.raised == pytest.approx(1130.0) and settled.shortfall == 0.0 and not settled.zero_bid
    led.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_partial_take_leaves_the_auction_running_with_less_tab_and_lot():
    cdp, _, env = barked()
    at(env, 900)
    ev = cdp.clipper.take(0, 2.0, 200.0, "k")
    # owe = 2·164.5975 = 329.195075; tab 1130 − 329.195 = 800.804925; lot 8
    assert ev.bid == pytest.approx(329.1950753)
    needs, price, lot, tab = cdp.clipper.get_status(0)
    assert (needs, lot) == (False, pytest.approx(8.0)) and tab == pytest.approx(800.8049247)
    assert cdp.dirt == pytest.approx(800.8049247)
    assert cdp.metrics()["debt_on_auction_usd"] == pytest.approx(1000 - 329.1950753)
    env.ledger.check_conservation()


def test_partial_take_is_cut_back_to_leave_exactly_chost():
    cdp, _, env = barked()
    at(env, 900)
    ev = cdp.clipper.take(0, 6.5, 200.0, "k")
    # 6.5·164.5975 = 1069.884 would leave 60.116 < chost 113: owe = 1130 − 113 = 1017,
    # slice = 1017/164.5975 = 6.178707 ETH
    assert ev.bid == pytest.approx(1017.0) and ev.lot == pytest.approx(6.178707255)
    assert cdp.clipper.tab[0] == pytest.approx(113.0)
    env.ledger.check_conservation()


def test_once_tab_is_at_most_chost_only_the_whole_rest_can_be_bought():
    cdp, _, env = barked()
    at(env, 900)
    cdp.clipper.take(0, 6.5, 200.0, "k")  # leaves tab = chost = 113
    with pytest.raises(Revert, match="^Clipper/no-partial-purchase$"):
        cdp.clipper.take(0, 0.1, 200.0, "k")  # 16.46 < 113 and tab 113 is not > chost 113
    ev = cdp.clipper.take(0, 10.0, 200.0, "k")
    # owe = min(3.8213·164.6, 113) = 113 -> slice 0.686523; 3.821293 − 0.686523 ETH back to the owner
    assert ev.bid == pytest.approx(113.0) and ev.lot == pytest.approx(0.6865230283)
    assert cdp.clipper.count() == 0
    assert env.ledger.balance("population", "ETH") == pytest.approx(990.0 + 3.821292745 - 0.686523028)
    env.ledger.check_conservation()


def test_take_reverts_above_the_buyers_max_price_and_changes_nothing():
    cdp, _, env = barked()
    at(env, 900)
    with pytest.raises(Revert, match="^Clipper/too-expensive$"):
        cdp.clipper.take(0, 10.0, 160.0, "k")  # 160 < 164.5975
    assert cdp.clipper.tab[0] == 1130.0 and env.ledger.balance("k", "DAI") == 5000.0


def test_take_reverts_when_the_taker_cannot_pay_and_changes_nothing():
    cdp, _, env = barked(keeper_dai=100.0)
    at(env, 900)
    with pytest.raises(Revert, match="insufficient"):
        cdp.clipper.take(0, 10.0, 200.0, "k")
    assert cdp.clipper.lot[0] == 10.0 and cdp.clipper.tab[0] == 1130.0
    assert env.ledger.balance("maker:clip", "ETH") == 10.0
    env.ledger.check_conservation()


def test_auction_needs_a_reset_below_cusp_and_redo_restarts_it_with_an_incentive():
    cdp, oracle, env = barked(clip=ClipParams(tip=50.0, chip=0.01), surplus_buffer=1000.0)
    clip = cdp.clipper
    # kick paid coin = 50 + 0.01·1130 = 61.3
    assert env.ledger.balance("kicker", "DAI") == pytest.approx(61.3)
    at(env, 8268)  # 91 steps: 0.99^91 = 0.40068 ≥ cusp 0.40
    assert clip.get_status(0)[0] is False
    at(env, 8280)  # 92 steps: 0.99^92 = 0.39668 < cusp -> needs redo (138 min)
    assert clip.get_status(0)[0] is True
    with pytest.raises(Revert, match="^Clipper/needs-reset$"):
        clip.take(0, 10.0, 1e9, "k")
    oracle.price = 120.0
    clip.redo(0, "redoer")
    # new top = 120·1.30 = 156, clock restarts; incentive again 61.3 (tab 1130 ≥ 113, lot·feed 1200 ≥ 113)
    needs, price, _, _ = clip.get_status(0)
    assert needs is False and price == pytest.approx(156.0)
    assert env.ledger.balance("redoer", "DAI") == pytest.approx(61.3)
    assert cdp.metrics()["surplus_usd"] == pytest.approx(1000.0 - 2 * 61.3)
    with pytest.raises(Revert, match="^Clipper/cannot-reset$"):
        clip.redo(0, "redoer")
    env.ledger.check_conservation()


def test_auction_needs_a_reset_after_tail():
    cdp, _, env = barked(clip=ClipParams(tip=0.0, chip=0.0, cusp=0.0, tail=600.0))
    at(env, 600)
    assert cdp.clipper.get_status(0)[0] is False  # now − tic = 600 is not > tail
    at(env, 612)
    assert cdp.clipper.get_status(0)[0] is True


def test_redo_pays_no_incentive_when_the_rest_is_dusty():
    cdp, oracle, env = barked(clip=ClipParams(tip=50.0, chip=0.01, cusp=0.0, tail=1200.0), surplus_buffer=1e4)
    at(env, 900)
    cdp.clipper.take(0, 6.5, 1e9, "k")  # tab left 113 = chost, lot 3.8213 ETH
    at(env, 1212)
    oracle.price = 20.0  # lot·feed = 76.4 < chost 113
    before = env.ledger.balance("redoer", "DAI")
    cdp.clipper.redo(0, "redoer")
    assert env.ledger.balance("redoer", "DAI") == before == 0.0


def test_an_auction_that_sells_out_short_leaves_system_debt_after_the_buffer():
    clip = ClipParams(tip=0.0, chip=0.0, cusp=0.0, tail=1e6, calc=LinearDecrease(tau=3600.0))
    cdp, _, env = barked(clip=clip, surplus_buffer=200.0)
    at(env, 3564)
    # price = 182·(3600 − 3564)/3600 = 1.82; all 10 ETH for 18.2 DAI
    ev = cdp.clipper.take(0, 10.0, 1e9, "k")
    assert ev.bid == pytest.approx(18.2) and ev.lot == pytest.approx(10.0)
    m = cdp.metrics()
    # uncovered due 1000 − 18.2 = 981.8; buffer 200 absorbs part: bad debt 781.8
    assert m["bad_debt_usd"] == pytest.approx(781.8) and m["surplus_usd"] == 0.0
    assert cdp.dirt == pytest.approx(0.0)  # digs(tab + owe) frees the whole tab
    settled = [e for e in env.events if isinstance(e, AuctionSettled)][-1]
    assert settled.shortfall == pytest.approx(1130 - 18.2) and not settled.zero_bid
    bad = [e for e in env.events if isinstance(e, BadDebt)][-1]
    assert bad.amount == pytest.approx(781.8)
    env.ledger.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_status_is_one_vector_over_all_auctions():
    cdp, _, env = barked(vaults=3)
    at(env, 900)
    cdp.clipper.take(1, 10.0, 1e9, "k")  # auction 1 finishes
    needs, price = cdp.clipper.status()
    assert list(needs) == [False, False, False]
    np.testing.assert_allclose(price, [P15, 0.0, P15])
    assert list(cdp.clipper.active_ids()) == [0, 2]


@settings(max_examples=60, deadline=None)
@given(takes=st.lists(st.tuples(st.floats(0.01, 12.0), st.integers(0, 40)), min_size=1, max_size=8))
def test_any_sequence_of_takes_keeps_tab_lot_and_books_consistent(takes):
    cdp, _, env = barked(keeper_dai=1e6)
    clip, t = cdp.clipper, 0.0
    for amount, wait_steps in takes:
        t += 90.0 * wait_steps
        at(env, t)
        if clip.count() == 0:
            break
        needs, price, lot, tab = clip.get_status(0)
        if needs:
            break
        try:
            clip.take(0, amount, 1e9, "k")
        except Revert as exc:
            assert "no-partial-purchase" in str(exc)
            continue
        if clip.active[0]:
            assert clip.tab[0] >= 113.0 - 1e-9 and clip.lot[0] > 0  # chost rule
    assert clip.raised[0] + clip.tab[0] == pytest.approx(1130.0)  # tab only shrinks by what was paid
    env.ledger.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-6)
