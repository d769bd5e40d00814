"""Clipper rules at their exact boundaries and the records they leave (Maker dss src/clip.sol).

Common case: vaults of 10 ETH owing 1000 DAI opened at 200; the oracle drops to 140 and a vault is barked
whole. With chop 1.25 and buf 1.25 (both exact in binary) tab = 1250 DAI, top = 140·1.25 = 175 DAI/ETH and
chost = dust·chop = 100·1.25 = 125 DAI. Blocks are 12 s; the source of every event is the CDP id "maker".
"""

import numpy as np
import pytest

from defistress.protocols.abaci import LinearDecrease
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.cdp import Cdp, CdpParams
from defistress.protocols.clip import ClipParams
from defistress.protocols.events import AuctionBid, AuctionKicked, AuctionSettled, Generic


def barked(vaults=1, surplus_buffer=1e4, **clip):
    env = Env()
    env.ledger.mint("ETH", "population", 1000.0, "genesis")
    oracle = FixedPrice(200.0)
    base = dict(tip=0.0, chip=0.0, buf=1.25)
    base.update(clip)
    params = CdpParams(
        dust=100.0, chop=1.25, hole=1e6, Hole=1e7, surplus_buffer=surplus_buffer, clip=ClipParams(**base)
    )
    cdp = Cdp(params, oracle, env, "maker")
    cdp.open_vaults([10.0] * vaults, [1000.0] * vaults)
    oracle.price = 140.0
    cdp.bark(0, "kicker")
    return cdp, oracle, env


def at(env, seconds):
    env.clock.block = int(round(seconds / env.clock.block_seconds))


def test_status_vector_needs_more_than_tail_seconds_since_each_auctions_own_kick():
    cdp, _, env = barked(vaults=2, cusp=0.0, tail=600.0)
    at(env, 300)
    cdp.bark(1, "kicker")  # tic = 300
    at(env, 900)  # auction 0: 900 s > tail; auction 1: 600 s = tail, not more
    needs, price = cdp.clipper.status()
    assert list(needs) == [True, False]
    # stairstep cut 0.99 every 90 s from top 175: floor(900/90) = 10 and floor(600/90) = 6 steps
    np.testing.assert_allclose(price, [175.0 * 0.99**10, 175.0 * 0.99**6], rtol=1e-12)
    at(env, 912)
    assert list(cdp.clipper.status()[0]) == [True, True]


def test_status_at_price_over_top_exactly_cusp_needs_no_reset():
    cdp, _, env = barked(cusp=0.5, tail=1e6, calc=LinearDecrease(tau=1200.0))
    at(env, 600)  # price = 175·(1200 − 600)/1200 = 87.5: price/top = 0.5 = cusp, not below it
    needs, price = cdp.clipper.status()
    assert list(needs) == [False] and price[0] == 87.5
    assert cdp.clipper.get_status(0)[:2] == (False, 87.5)
    at(env, 612)
    assert list(cdp.clipper.status()[0]) == [True]
    assert cdp.clipper.get_status(0)[0] is True


def test_redo_refuses_a_zero_top_price_but_not_a_small_one():
    cdp, oracle, env = barked(cusp=0.0, tail=600.0)
    clip = cdp.clipper
    with pytest.raises(Revert, match="^Clipper/cannot-reset$"):
        clip.redo(0, "r")
    at(env, 612)
    oracle.price = 0.0
    with pytest.raises(Revert, match="^Clipper/zero-top-price$"):
        clip.redo(0, "r")
    assert clip.top[0] == 175.0 and clip.tic[0] == 0.0  # nothing changed
    oracle.price = 0.4  # top = 0.4·1.25 = 0.5 DAI/ETH: tiny but a price
    clip.redo(0, "r")
    assert clip.top[0] == 0.5 and clip.tic[0] == 612.0


def test_redo_pays_an_incentive_below_one_dai_and_records_the_reset():
    cdp, oracle, env = barked(tip=0.5, chip=0.0, cusp=0.0, tail=600.0)
    led = env.ledger
    assert led.balance("kicker", "DAI") == 0.5  # kick incentive: tip + tab·chip = 0.5
    at(env, 612)
    oracle.price = 120.0
    ev = cdp.clipper.redo(0, "r")
    assert led.balance("r", "DAI") == 0.5
    # new top = 120·1.25 = 150; tab and lot unchanged (1250 DAI, 10 ETH)
    assert (ev.block, ev.source, ev.name) == (env.clock.block, "maker", "auction_redo")
    assert ev.detail == {"auction": 0, "top": 150.0, "tab": 1250.0, "lot": 10.0, "keeper": "r", "incentive": 0.5}
    assert ev in env.events and isinstance(ev, Generic)


def test_redo_incentive_is_paid_when_tab_and_lot_value_are_exactly_chost():
    cdp, oracle, _ = barked(tip=10.0, chip=0.01)
    clip = cdp.clipper
    assert clip.chost == 125.0
    clip.tab[0], clip.lot[0] = 125.0, 1.0
    oracle.price = 125.0  # lot·feed = 125 = chost
    # dss clip.sol redo: tab ≥ chost and lot·feed ≥ chost -> coin = tip + tab·chip = 10 + 1.25
    assert clip.redo_incentive(0) == 11.25
    oracle.price = 124.0  # lot·feed below chost
    assert clip.redo_incentive(0) == 0.0
    oracle.price = 125.0
    clip.tab[0] = 124.0  # tab below chost
    assert clip.redo_incentive(0) == 0.0


def test_linear_decrease_broadcasts_an_array_of_tops_or_of_durations():
    calc = LinearDecrease(tau=100.0)
    # Maker dss abaci LinearDecrease: top·(tau − dur)/tau
    np.testing.assert_allclose(calc.price(np.array([10.0, 20.0]), 50.0), [5.0, 10.0])
    np.testing.assert_allclose(calc.price(10.0, np.array([0.0, 50.0, 100.0, 150.0])), [10.0, 5.0, 0.0, 0.0])
    assert calc.price(10.0, 25.0) == 7.5


def settled(env):
    return [e for e in env.events if isinstance(e, AuctionSettled)]


def test_take_reasons_are_exact():
    cdp, _, env = barked(cusp=0.0, tail=600.0)
    env.ledger.mint("DAI", "k", 5000.0, "genesis")
    clip = cdp.clipper
    with pytest.raises(Revert, match="^Clipper/too-expensive$"):
        clip.take(0, 1.0, 174.99, "k")  # price is 175 at the kick
    with pytest.raises(Revert, match="^Clipper/zero-amount$"):
        clip.take(0, 0.0, 1e9, "k")
    at(env, 612)
    with pytest.raises(Revert, match="^Clipper/needs-reset$"):
        clip.take(0, 1.0, 1e9, "k")
    assert env.ledger.balance("k", "DAI") == 5000.0


def test_partial_takes_keep_chost_of_tab_then_only_the_whole_rest_sells():
    cdp, _, env = barked()
    env.ledger.mint("DAI", "k", 5000.0, "genesis")
    clip = cdp.clipper
    ev = clip.take(0, 6.0, 1e9, "k")  # at 175: owe 1050, tab left 200 ≥ chost 125
    assert ev == AuctionBid(env.clock.block, "maker", 0, "k", 6.0, 1050.0, "take")
    # asking 100 DAI worth would leave 100 < chost: cut back to owe 200 − 125 = 75 (dss clip.sol take)
    ev = clip.take(0, 100.0 / 175.0, 1e9, "k")
    assert ev.bid == pytest.approx(75.0) and ev.lot == pytest.approx(75.0 / 175.0)
    assert clip.tab[0] == pytest.approx(125.0)
    with pytest.raises(Revert, match="^Clipper/no-partial-purchase$"):
        clip.take(0, 0.1, 1e9, "k")  # tab = chost: a partial purchase is refused
    ev = clip.take(0, 10.0, 1e9, "k")  # the whole rest: owe = tab 125 for 125/175 ETH
    assert ev.bid == pytest.approx(125.0) and ev.lot == pytest.approx(125.0 / 175.0)
    # sold 6 + 75/175 + 125/175 = 1250/175 ETH for 1250 DAI; the other 10 − 1250/175 ETH go back to the owner
    assert settled(env) == [
        AuctionSettled(
            env.clock.block,
            "maker",
            0,
            "k",
            pytest.approx(1250 / 175),
            1250.0,
            1250.0,
            0.0,
            pytest.approx(1250 / 175 * 140),
            False,
        )
    ]
    assert clip.lot[0] == 0.0 and clip.count() == 0
    assert env.ledger.balance("population", "ETH") == pytest.approx(990.0 + 10.0 - 1250 / 175)


def test_a_whole_lot_worth_less_than_the_tab_sells_out_without_the_chost_rule():
    cdp, _, env = barked(cusp=0.0, tail=1e6, calc=LinearDecrease(tau=4200.0))
    env.ledger.mint("DAI", "k", 5000.0, "genesis")
    at(env, 1320)  # price = 175·(4200 − 1320)/4200 = 120: the whole lot is worth 1200 < tab 1250
    ev = cdp.clipper.take(0, 10.0, 1e9, "k")
    assert ev.lot == 10.0 and ev.bid == pytest.approx(1200.0)
    (s,) = settled(env)
    assert (s.winner, s.lot_sold, s.tab, s.zero_bid) == ("k", 10.0, 1250.0, False)
    assert s.raised == pytest.approx(1200.0) and s.shortfall == pytest.approx(50.0)


def test_kick_reasons_are_exact_and_the_record_names_the_keeper():
    cdp, oracle, env = barked(tip=0.5)
    clip = cdp.clipper
    kicked = [e for e in env.events if isinstance(e, AuctionKicked)]
    # tab 1250, lot 10, top 175, incentive tip 0.5 + 1250·0 = 0.5
    assert kicked == [AuctionKicked(env.clock.block, "maker", 0, 0, 10.0, 1250.0, 175.0, "kicker", 0.5)]
    for tab, lot, reason in ((0.0, 1.0, "zero-tab"), (1.0, 0.0, "zero-lot"), (-1.0, 1.0, "zero-tab")):
        with pytest.raises(Revert, match=f"^Clipper/{reason}$"):
            clip.kick(tab, lot, 0, "k")
    oracle.price = 0.0
    with pytest.raises(Revert, match="^Clipper/zero-top-price$"):
        clip.kick(1.0, 1.0, 0, "k")
    oracle.price = 0.4  # top 0.5: small but a price; tab and lot below 1 are fine too
    ev = clip.kick(0.5, 0.5, 7, "k")
    assert (ev.auction, ev.account, ev.start_price, ev.keeper) == (1, 7, 0.5, "k") and clip.kicks == 2


def test_a_closed_auction_is_not_running():
    cdp, _, env = barked()
    env.ledger.mint("DAI", "k", 5000.0, "genesis")
    cdp.clipper.take(0, 10.0, 1e9, "k")
    for bad in (0, 1, -1):
        with pytest.raises(Revert, match="^Clipper/not-running-auction$"):
            cdp.clipper.take(bad, 1.0, 1e9, "k")


def test_an_auction_id_at_the_arrays_capacity_is_not_running():
    cdp, _, env = barked()
    clip = cdp.clipper
    while clip.kicks < len(clip.active):  # fill the arrays' capacity exactly
        clip.kick(1.0, 1.0, 0, "k")
    for bad in (clip.kicks, -1):
        with pytest.raises(Revert, match="^Clipper/not-running-auction$"):
            clip.take(bad, 1.0, 1e9, "k")


def test_a_kick_with_chip_only_pays_the_keeper_a_share_of_the_tab():
    # dss clip.sol kick: coin = tip + wmul(tab, chip); ETH-A: tip 0, chip 0.1 % -> 1250·0.001 = 1.25 DAI
    cdp, _, env = barked(tip=0.0, chip=0.001)
    assert cdp.clipper.incentive(1250.0) == 1.25
    assert env.ledger.balance("kicker", "DAI") == 1.25
    kicked = [e for e in env.events if isinstance(e, AuctionKicked)]
    assert kicked[-1].incentive == 1.25


# --- the exact rounding boundaries of take (ABS_DUST = 1e-9, ledger.py; chost tolerance 1e-12, clip.py) ---------
# Amounts of a few 1e-9 (dust 0, chop 1, buf 1, so the price at the kick is the oracle price) make the leftovers
# land exactly on ABS_DUST: halving and doubling are exact in binary, so 2e-9 − 1e-9 == 1e-9 and 2e-9·0.5 == 1e-9.
D9 = 1e-9  # ABS_DUST


def tiny_barked(ink, debt, price, dust=0.0):
    env = Env()
    env.ledger.mint("ETH", "population", 1000.0, "genesis")
    env.ledger.mint("DAI", "k", 1000.0, "genesis")
    oracle = FixedPrice(200.0)
    params = CdpParams(dust=dust, chop=1.0, hole=1e6, Hole=1e7, clip=ClipParams(tip=0.0, chip=0.0, buf=1.0))
    cdp = Cdp(params, oracle, env, "maker")
    cdp.open_vaults([ink], [debt])
    oracle.price = price  # ink·price/1.5 < debt: unsafe
    cdp.bark(0, "kicker")
    return cdp, env


def test_a_take_leaving_exactly_abs_dust_of_tab_covers_the_tab_and_returns_the_rest_of_the_lot():
    cdp, env = tiny_barked(ink=4e-9, debt=2e-9, price=0.5)
    clip = cdp.clipper
    assert clip.tab[0] == 2e-9 and 2e-9 * 0.5 == D9 and clip.tab[0] - 2e-9 * 0.5 == D9
    clip.take(0, 2e-9, 1.0, "k")  # owe 2e-9 ETH · 0.5 = 1e-9 DAI: tab left exactly ABS_DUST, lot left 2e-9
    # a tab left ≤ ABS_DUST is rounding: the tab is covered, the auction ends and the owner gets the lot left
    assert not clip.active[0]
    (ev,) = settled(env)
    assert ev.shortfall == 0.0 and ev.lot_sold == 2e-9
    assert env.ledger.balance("population", "ETH") == 1000.0 - 4e-9 + 2e-9


def test_a_take_leaving_exactly_abs_dust_of_lot_ends_the_auction_with_the_tab_left_as_shortfall():
    cdp, env = tiny_barked(ink=2e-9, debt=2e-9, price=0.5)
    clip = cdp.clipper
    assert clip.lot[0] - D9 == D9
    clip.take(0, D9, 1.0, "k")  # slice 1e-9 of a 2e-9 lot: lot left exactly ABS_DUST; owe 5e-10, tab left 1.5e-9
    # a lot left ≤ ABS_DUST is rounding: nothing is left to sell, the auction ends and the tab left is uncovered
    assert not clip.active[0]
    (ev,) = settled(env)
    assert ev.lot_sold == D9 and ev.shortfall == 2e-9 - 5e-10


def test_a_tab_of_exactly_chost_within_its_rounding_tolerance_refuses_a_partial_purchase():
    # dust 100, chop 1: chost = 100 DAI; the vault's debt is the float the rule compares against, chost·(1 + 1e-12)
    debt = 100.0 * (1 + 1e-12)
    cdp, env = tiny_barked(ink=10.0, debt=debt, price=14.0, dust=100.0)  # 10·14/1.5 = 93.3 < 100: unsafe
    clip = cdp.clipper
    assert clip.chost == 100.0 and clip.tab[0] == clip.chost * (1 + 1e-12)
    # 1 ETH at 14 would leave 86 < chost; the tab is chost up to rounding (≤ chost·(1 + 1e-12)), so no partial
    # purchase is allowed: the rest must be bought whole (dss clip.sol take: tab > _chost or revert)
    with pytest.raises(Revert, match="^Clipper/no-partial-purchase$"):
        clip.take(0, 1.0, 14.0, "k")
