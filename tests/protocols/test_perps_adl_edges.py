"""The perp DEX's deleveraging rules at their limits (dYdX v4 deleveraging.go, x/clob PrepareCheckState flags;
Hyperliquid "Auto-deleveraging" ranking), with hand-computed books.

ETH market: IMF 10%, maintenance fraction 50% -> MMF 5%. WHOLE lifts the per-block liquidation limits so
that one liquidation takes a whole position.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.events import Deleveraged
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

ETH = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)
WHOLE = dict(max_position_portion_liquidated=1.0, max_notional_liquidated_per_block_usd=1e12)


def make_dex(fund: float = 1000.0, **kw):
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0)}
    dex = PerpDex(PerpDexParams(markets=[ETH], insurance_fund_usd=fund, **{**WHOLE, **kw}), orc, env)
    env.ledger.mint("USDC", "pop", 10_000_000.0, "test")
    return env, dex, orc


def adl_book(dex):
    """A +10@2000 (1,760), B +5@1640 (50,000), S1 −5@2000 (5,000), S2 −6@1900 (1,000), S3 −4@1700 (20,000)."""
    return dex.open_accounts(
        "pop",
        [1760.0, 50_000.0, 5000.0, 1000.0, 20_000.0],
        [[10.0], [5.0], [-5.0], [-6.0], [-4.0]],
        [[2000.0], [1640.0], [2000.0], [1900.0], [1700.0]],
    )


@pytest.mark.parametrize("attempts, adl_fills", [(0, []), (1, [(3, 6.0), (2, 4.0)])])
def test_one_deleveraging_attempt_per_block_closes_the_whole_position(attempts, adl_fills):
    # ETH 1800: A's equity 1760 − 2000 = −240, MMR 900; the fund (1,000) cannot pay the 1,590 shortfall
    # (1800·(1 − 1.5·5%) = 1665 vs Pb = 1800 + 240/10 = 1824: 10·159). One attempt is one deleverage() call: S2
    # (rank 7.125) gives 6 and S1 (1.667) 4 at 1824; with no attempt allowed A keeps its position
    env, dex, orc = make_dex(max_deleveraging_attempts_per_block=attempts)
    adl_book(dex)
    orc["ETH"].price = 1800.0
    dex.accrue(12.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)] == adl_fills
    assert dex.size[0, 0] == (0.0 if adl_fills else 10.0)


def test_a_fund_between_the_shortfall_and_its_mirror_still_deleverages():
    # A needs a 1,590 payout (10·(1824 − 1665)); the bound accrue() screens with is PMMR·(SMMR − TNC/TMMR) =
    # 900·(1.5 + 240/900) = 1,590 > a fund of 1,200, so A is deleveraged (900·(1.5 − 240/900) = 1,110 would not be)
    env, dex, orc = make_dex(fund=1200.0)
    adl_book(dex)
    orc["ETH"].price = 1800.0
    dex.accrue(0.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)] == [(3, 6.0), (2, 4.0)]
    assert dex.insurance_fund_usd() == 1200.0


def three_bankrupt_longs(dex):
    """A1, A2, A3: +10 ETH @2000 with 1,760 each; S: −30 ETH @2000 with 100,000."""
    return dex.open_accounts("pop", [1760.0] * 3 + [100_000.0], [[10.0]] * 3 + [[-30.0]], [[2000.0]] * 4)


def test_the_attempts_cap_counts_every_deleveraged_account_in_the_block():
    # ETH 1800: each A has equity −240 and needs 1,590 from an empty fund; S (equity 106,000) takes each whole
    # position at Pb = 1824. Two attempts per block: A1 then A2 are closed, A3 waits for the next block
    env, dex, orc = make_dex(fund=0.0, max_deleveraging_attempts_per_block=2)
    three_bankrupt_longs(dex)
    orc["ETH"].price = 1800.0
    dex.accrue(0.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)] == [(3, 10.0), (3, 10.0)]
    assert dex.size[:, 0].tolist() == [0.0, 0.0, 10.0, -10.0]
    assert dex.metrics()["socialised_loss_usd"] == pytest.approx(480.0)  # 2·10·(1824 − 1800)
    env.clock.block += 1
    dex.accrue(0.0)
    assert dex.size[:, 0].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_one_attempt_leaves_what_the_skipped_offsetting_account_could_have_taken_later():
    # A +10 @2000 (1,760); T −6 @1790 (100); S1 −9 @2000 (5,000); B +5 @1748 (50,000): nets 0 in size and
    # notional (20,000 − 10,740 − 18,000 + 8,740). ETH 1800, Pb 1824. Ranks: T (1790/1800)·10,800/40 = 268.5,
    # S1 (2000/1800)·16,200/6,800 = 2.65. T would lose 6·24 = 144 > its equity 40: skipped; S1 takes 9.
    # With one attempt per block A keeps 1 ETH (equity −240/10 = −24) although T could now take it (24 < 40)
    env, dex, orc = make_dex(fund=0.0, max_deleveraging_attempts_per_block=1)
    dex.open_accounts(
        "pop",
        [1760.0, 100.0, 5000.0, 50_000.0],
        [[10.0], [-6.0], [-9.0], [5.0]],
        [[2000.0], [1790.0], [2000.0], [1748.0]],
    )
    orc["ETH"].price = 1800.0
    dex.accrue(0.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)] == [(2, 9.0)]
    assert dex.size[0, 0] == pytest.approx(1.0) and dex.equity()[0] == pytest.approx(-24.0)
    env.clock.block += 1  # the next block's attempt: T takes the last unit (40 − 24 = 16 left)
    dex.accrue(0.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)][-1] == (1, 1.0)
    assert dex.size[0, 0] == 0.0 and dex.equity()[1] == pytest.approx(16.0)
    # with two attempts per block the second one, in the same block, closes it
    env, dex, orc = make_dex(fund=0.0, max_deleveraging_attempts_per_block=2)
    dex.open_accounts(
        "pop",
        [1760.0, 100.0, 5000.0, 50_000.0],
        [[10.0], [-6.0], [-9.0], [5.0]],
        [[2000.0], [1790.0], [2000.0], [1748.0]],
    )
    orc["ETH"].price = 1800.0
    dex.accrue(0.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)] == [(2, 9.0), (1, 1.0)]


def test_an_account_already_liquidated_this_block_does_not_stop_the_next_ones():
    # default limits (10% a block). ETH 1900: A1 (+10 @2000, 1,760) has equity 760 < MMR 950; a liquidator takes
    # 1 ETH at 1871.5 (fee 28.0725 to the fund). ETH 1700 in the same block: A1 (9 ETH, equity
    # 703.4275 − 1,800 < 0) cannot be touched again this block; A2 (+10 @2000, 1,760: equity −1,240) needs
    # 1824 − 1700·(1 − 1.5·5%) = 251.5 for its first 1 ETH (10% of 17,000), more than the 28 in the fund, and is
    # deleveraged whole against S at Pb = 1700 + 1,240/10 = 1824
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0)}
    dex = PerpDex(PerpDexParams(markets=[ETH], insurance_fund_usd=0.0), orc, env)
    env.ledger.mint("USDC", "pop", 10_000_000.0, "test")
    env.ledger.mint("USDC", "liq", 1_000_000.0, "test")
    dex.open_accounts("pop", [1760.0, 1760.0, 100_000.0], [[10.0], [10.0], [-20.0]], [[2000.0]] * 3)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    assert dex.liquidate(0, "liq", market="ETH").debt_repaid == pytest.approx(1.0)
    assert dex.insurance_fund_usd() == pytest.approx(28.0725)
    orc["ETH"].price = 1700.0
    dex.accrue(0.0)
    assert [(e.account, e.size, e.price) for e in env.events if isinstance(e, Deleveraged)] == [
        (2, 10.0, pytest.approx(1824.0))
    ]
    assert dex.size[:, 0].tolist() == [9.0, 0.0, -10.0, 1.0]


def test_an_account_the_fund_covers_this_block_does_not_stop_the_next_ones():
    # default limits: a liquidation takes 10% of a position. ETH 1800: A1 (+10 @2000, 1,760) has equity −240,
    # ratio −240/900; 1 ETH fills at 1665 vs Pb 1824: 159 from the fund (1,000): covered, left to liquidators
    # although its whole-position bound 1,590 passes the screen. A2 (+100 @2000, 17,600: the same ratio) needs
    # 10·159 = 1,590 > 1,000 for its 10 ETH: deleveraged whole against S at 1824
    env, dex, orc = make_dex(
        fund=1000.0, max_position_portion_liquidated=0.1, max_notional_liquidated_per_block_usd=1e5
    )
    dex.open_accounts("pop", [1760.0, 17_600.0, 1_000_000.0], [[10.0], [100.0], [-110.0]], [[2000.0]] * 3)
    orc["ETH"].price = 1800.0
    dex.accrue(0.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)] == [(2, 100.0)]
    assert dex.size[:, 0].tolist() == [10.0, 0.0, -10.0]
    assert dex.insurance_fund_usd() == 1000.0


@pytest.mark.parametrize("block", [0, 1, 5])
def test_pseudo_random_deleveraging_walks_the_accounts_in_order_from_the_seeded_start(block):
    # dYdX deleveraging.go: start at a pseudo-random offsetting account and iterate in index order. The start is
    # numpy's default_rng([adl_seed, block]).integers(n) over the n offsetting accounts with positive equity
    # (the seeding contract of `adl_seed`, so a run replays). Candidates here: S1 (#2, −5), S2 (#3, −6),
    # S3 (#4, −4); A's 10 ETH is taken in that cyclic order, each up to its whole position
    env, dex, orc = make_dex(fund=0.0, adl_ranking="pseudo_random", adl_seed=4)
    env.clock.block = block
    adl_book(dex)
    orc["ETH"].price = 1800.0
    start = int(np.random.default_rng([4, block]).integers(3))  # 2, 1, 0 for blocks 0, 1, 5
    order = [[2, 3, 4][(start + i) % 3] for i in range(3)]
    sizes = {2: 5.0, 3: 6.0, 4: 4.0}
    want, left = [], 10.0
    for j in order:
        if left > 0:
            want.append((j, min(sizes[j], left)))
            left -= min(sizes[j], left)
    fills = dex.deleverage(0)
    assert [(f.account, f.size) for f in fills] == want


def test_the_ranking_weighs_leverage_by_entry_over_mark_for_shorts():
    # A +3 @2000 (528), B +1 @1800 (10,000), X −2 @1900 (1,800), Y −1 @2000 (800), W −1 @2000 (100,000):
    # sizes and notionals net to zero (6,000 + 1,800 − 3,800 − 2,000 − 2,000). ETH 1800: A's equity
    # 528 − 600 = −72, Pb = 1800 + 72/3 = 1824. Leverage |s|·P/equity: X 3,600/2,000 = Y 1,800/1,000 = 1.8;
    # Hyperliquid's (entry/mark) weight for shorts breaks the tie: Y 2000/1800·1.8 = 2.0 > X 1900/1800·1.8 = 1.9
    # (W: 2000/1800·1,800/100,200 = 0.02). So Y gives its 1, then X its 2
    env, dex, orc = make_dex(fund=0.0)
    dex.open_accounts(
        "pop",
        [528.0, 10_000.0, 1800.0, 800.0, 100_000.0],
        [[3.0], [1.0], [-2.0], [-1.0], [-1.0]],
        [[2000.0], [1800.0], [1900.0], [2000.0], [2000.0]],
    )
    orc["ETH"].price = 1800.0
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(3, 1.0), (2, 2.0)]


@pytest.mark.parametrize("z_entry_notional, order", [(0.0, [1, 2]), (-2.5, [2, 1])])
def test_an_offsetting_account_without_an_entry_price_is_ranked_at_the_mark_price(z_entry_notional, order):
    # A +10 (entry notional 20,000, 1,760), Z −5 (10,000), V −5 (0) taking the rest of the notional. ETH 1800,
    # Pb 1824. Z given with entry notional 0 (no entry price): its entry/mark weight is taken as 1, so
    # Z: 9,000/(10,000 − 9,000) = 9 > V: (4000/1800)·9,000/(20,000 − 9,000) = 1.82 and Z goes first.
    # Z short at 0.5 (notional −2.5) is a real, tiny entry price: (0.5/1800)·9,000/1,002.5 = 0.0025 < V 1.82
    env, dex, orc = make_dex(fund=0.0)
    en = [[20_000.0], [z_entry_notional], [-20_000.0 - z_entry_notional]]
    dex.open_accounts("pop", [1760.0, 10_000.0, 0.0], [[10.0], [-5.0], [-5.0]], entry_notional=en)
    orc["ETH"].price = 1800.0
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(order[0], 5.0), (order[1], 5.0)]
    assert dex.equity()[1] == pytest.approx(1000.0 - z_entry_notional - 5 * 24.0)


def test_only_the_top_ranked_accounts_up_to_the_iteration_cap_are_tried():
    # dYdX flags MaxDeleveragingSubaccountsToIterate, here 1: of S2 (rank 7.125), S1 (1.667), S3 (0.347) only
    # S2 is tried; it gives its 6 and A keeps 4 ETH with equity −240·4/10 = −96
    env, dex, orc = make_dex(fund=0.0, max_deleveraging_accounts_to_iterate=1)
    adl_book(dex)
    orc["ETH"].price = 1800.0
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(3, 6.0)]
    assert dex.size[0, 0] == 4.0 and dex.equity()[0] == pytest.approx(-96.0)
    # two tried: S2 and then S1 (not S3)
    env, dex, orc = make_dex(fund=0.0, max_deleveraging_accounts_to_iterate=2)
    adl_book(dex)
    orc["ETH"].price = 1800.0
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(3, 6.0), (2, 4.0)]


def test_a_short_account_is_deleveraged_against_longs_ranked_by_mark_over_entry():
    # mirror of the ADL book: A −10 @2000 (1,760), L1 +5 @2000 (5,000), L2 +6 @2100 (1,000), L3 +4 @2300
    # (20,000), B −5 @2360 (50,000); notionals 20,000·(−1) + 10,000 + 12,600 + 9,200 − 11,800 = 0.
    # ETH 2200: A's equity 1760 − 2000 = −240, MMR 1,100, Pb = 2200 − 240/10 = 2176.
    # Ranks (mark/entry)·(notional/equity) of the longs: L1 (2200/2000)·11,000/6,000 = 2.017;
    # L2 (2200/2100)·13,200/1,600 = 8.643; L3 (2200/2300)·8,800/19,600 = 0.429: L2 gives 6, L1 4
    env, dex, orc = make_dex(fund=0.0)
    dex.open_accounts(
        "pop",
        [1760.0, 5000.0, 1000.0, 20_000.0, 50_000.0],
        [[-10.0], [5.0], [6.0], [4.0], [-5.0]],
        [[2000.0], [2000.0], [2100.0], [2300.0], [2360.0]],
    )
    orc["ETH"].price = 2200.0
    fills = dex.deleverage(0)
    assert [(f.account, f.size, f.price) for f in fills] == [
        (2, -6.0, pytest.approx(2176.0)),
        (1, -4.0, pytest.approx(2176.0)),
    ]
    assert dex.equity()[2] == pytest.approx(1600.0 - 6 * 24.0)  # L2 sells at 2176, 24 under the mark


def test_an_offsetting_account_left_at_exactly_zero_equity_still_takes_its_share():
    # A +10 @2000 (1,775): ETH 1800, equity −225, MMR 900, ratio −1/4 -> Pb = 1800·(1 + 5%/4) = 1822.5.
    # T −6 @1790 (195): equity 195 − 60 = 135 and it loses 6·22.5 = 135 at Pb: it ends at exactly 0, which
    # dYdX allows (only accounts that would go negative are skipped). S1 −4 @2315 (1,000) takes the rest
    env, dex, orc = make_dex(fund=0.0)
    env.clock.block = 3
    dex.open_accounts("pop", [1775.0, 195.0, 1000.0], [[10.0], [-6.0], [-4.0]], [[2000.0], [1790.0], [2315.0]])
    orc["ETH"].price = 1800.0
    fills = dex.deleverage(0)
    assert [(f.block, f.source, f.account, f.market, f.size, f.price) for f in fills] == [
        (3, "perps", 1, "ETH", 6.0, 1822.5),
        (3, "perps", 2, "ETH", 4.0, 1822.5),
    ]
    assert dex.equity()[1] == 0.0 and dex.equity()[2] == pytest.approx(3060.0 - 90.0)


def test_a_shortfall_under_one_dollar_is_socialised_by_an_account_with_under_one_dollar_of_equity():
    # A +10 @2000 (1,760), S −10 @1824 (0.4), B +1 @1800 (10,000), C −1 @3560 (0): sizes and notionals net to
    # zero (20,000 − 18,240 + 1,800 − 3,560). ETH 1823.95: A's equity 1760 − 1760.5 = −0.5, Pb = 1824.
    # S: equity 0.4 + 0.5 = 0.9, rank (1824/1823.95)·18,239.5/0.9 ≈ 20,266 >> C (3560/1823.95)·1,823.95/1,736.05
    # ≈ 2.05: S takes all 10 and ends at 0.9 − 0.5 = 0.4; the socialised loss is the 0.5
    env, dex, orc = make_dex(fund=0.0)
    dex.open_accounts(
        "pop",
        [1760.0, 0.4, 10_000.0, 0.0],
        [[10.0], [-10.0], [1.0], [-1.0]],
        [[2000.0], [1824.0], [1800.0], [3560.0]],
    )
    orc["ETH"].price = 1823.95
    assert dex.equity()[:2] == pytest.approx([-0.5, 0.9])
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(1, 10.0)]
    assert dex.equity()[1] == pytest.approx(0.4)
    assert dex.metrics()["socialised_loss_usd"] == pytest.approx(0.5)


def test_flat_accounts_are_not_offsetting_accounts():
    # A +10 @2000 (1,760); T −6 @1790 (100: skipped, it would end at 40 − 144); S1 −4 @2315 (1,000) takes 4;
    # F holds 1,000 USDC and no position: it offsets nothing, so A keeps 6 ETH
    env, dex, orc = make_dex(fund=0.0)
    dex.open_accounts(
        "pop", [1760.0, 100.0, 1000.0, 1000.0], [[10.0], [-6.0], [-4.0], [0.0]], [[2000.0], [1790.0], [2315.0], [0.0]]
    )
    orc["ETH"].price = 1800.0
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(2, 4.0)]
    assert dex.metrics()["adl_count"] == 1 and dex.size[:, 0].tolist() == [6.0, -6.0, 0.0, 0.0]


@pytest.mark.parametrize("cap", [1, 2, 3, 4, 5])
def test_the_iteration_cap_keeps_exactly_the_top_ranked_of_many(cap):
    # A +10 @2000 (1,760); S1..S5 −2 @2000 with 5,000 / 1,000 / 3,000 / 500 / 2,000 USDC. ETH 1800: their
    # equities c + 400 = 5,400 / 1,400 / 3,400 / 900 / 2,400 and ranks (2000/1800)·3,600/equity put them in the
    # order S4, S2, S5, S3, S1 (accounts 4, 2, 5, 3, 1); each takes its 2 ETH, only the top `cap` are tried
    env, dex, orc = make_dex(fund=0.0, max_deleveraging_accounts_to_iterate=cap)
    dex.open_accounts("pop", [1760.0, 5000.0, 1000.0, 3000.0, 500.0, 2000.0], [[10.0]] + [[-2.0]] * 5, [[2000.0]] * 6)
    orc["ETH"].price = 1800.0
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(j, 2.0) for j in [4, 2, 5, 3, 1][:cap]]
    assert dex.size[0, 0] == 10.0 - 2.0 * cap


BTC = PerpMarketParams(asset="BTC", initial_margin_fraction=0.10, maintenance_fraction=0.5)


def twin_book():
    """Fund 10,000, at most 300 of it per account a block, no position limits. A and B: +1 ETH @2200 and
    +0.04 BTC @55,000 with 200 USDC each; S the other side (−2 ETH, −0.08 BTC) with 1,000,000; a liquidator.

    At ETH 2000 / BTC 50,000 each twin has equity 200 − 200 − 200 = −200, MMR 0.05·2000 + 0.05·2000 = 200,
    TNC/TMMR = −1; its screen bound is PMMR·(SMMR − ratio) = 100·(1.5 + 1) = 250."""
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0), "BTC": FixedPrice(50_000.0)}
    params = PerpDexParams(
        markets=[ETH, BTC], insurance_fund_usd=10_000.0, max_insurance_lost_per_block_usd=300.0, **WHOLE
    )
    dex = PerpDex(params, orc, env)
    env.ledger.mint("USDC", "pop", 10_000_000.0, "test")
    env.ledger.mint("USDC", "liq", 1_000_000.0, "test")
    dex.open_accounts(
        "pop",
        [200.0, 200.0, 1_000_000.0],
        [[1.0, 0.04], [1.0, 0.04], [-2.0, -0.08]],
        [[2200.0, 55_000.0]] * 3,
    )
    dex.open_accounts("liq", [500_000.0], None)
    # A's ETH: Pb = 2000·(1 + 0.05·1) = 2100, fillable 2000·(1 − 1·1.5·0.05) = 1850: the fund pays
    # 1·(2100 − 1850) = 250 <= min(10,000, 300). A keeps 200 + (1850 − 2200) + 250 = 100 with +0.04 BTC:
    # equity 100 − 200 = −100, MMR 100, ratio −1 again
    assert dex.liquidate(0, "liq", market="ETH").debt_repaid == pytest.approx(1.0)
    assert dex.insurance_fund_usd() == pytest.approx(9750.0)
    return env, dex


def deleveraged(env) -> list[tuple]:
    """(offsetting account, market, size, price) of every deleveraging fill."""
    return [(e.account, e.market, e.size, e.price) for e in env.events if isinstance(e, Deleveraged)]


def test_an_account_that_drew_insurance_this_block_is_deleveraged_when_the_rest_of_its_limit_cannot_cover():
    # same block: A's BTC would need 0.04·(52,500 − 46,250) = 250 (Pb 50,000·1.05, fillable 50,000·0.925) but
    # only min(9,750, 300 − 250) = 50 is left to A, so accrue deleverages A's 0.04 BTC against S at 52,500
    # (A: 100 + 0.04·(52,500 − 55,000) = 0, flat, nothing written off). B drew nothing: its bound 250 <= 300,
    # left to liquidators
    env, dex = twin_book()
    assert dex.preview_liquidation(0).adl
    dex.accrue(0.0)
    assert deleveraged(env) == [(2, "BTC", pytest.approx(0.04), pytest.approx(52_500.0))]
    assert dex.size[:2].tolist() == [[0.0, 0.0], [1.0, 0.04]]
    assert dex.collateral[0] == pytest.approx(0.0, abs=1e-9)
    assert dex.insurance_fund_usd() == pytest.approx(9750.0)
    env.ledger.check_conservation()


def test_an_account_that_drew_insurance_in_an_earlier_block_is_left_to_the_fund():
    # control: next block A has drawn nothing yet, min(9,750, 300) = 300 covers its 250, so no deleveraging and
    # its BTC preview is a fund payout of 250 at the fillable price 46,250
    env, dex = twin_book()
    env.clock.block += 1
    dex.accrue(0.0)
    assert deleveraged(env) == []
    pv = dex.preview_liquidation(0)
    assert (pv.adl, pv.asset, pv.payout, pv.fill_price) == (
        False,
        "BTC",
        pytest.approx(250.0),
        pytest.approx(46_250.0),
    )
