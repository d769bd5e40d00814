"""The scenario-grid PM engine on the paths the preset and vector tests do not pin: Deribit's extended table
(extended_factor, extended_dampener, price_range), per-underlying parameters of `scenario_pnl`, `with_grid`,
and the exact (1e18 fixed point) aggregation with a roll contingency. Expected values by hand; zero vol so
that delta-1 positions are linear in the spot move."""

import numpy as np
import pytest

from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.scenario_params import NONE, ContingencyParams, ScenarioGrid, ScenarioPMParams
from defistress.protocols.margin.scenario_pm import ScenarioPM

MKT = MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 0.0, "BTC": 0.0})
TAIL = ScenarioGrid.tails((-0.5,), NONE)  # one tail scenario: spot −50%


def book(*positions, cash=0.0):
    return Portfolio.from_records(
        [{"name": "a", "cash": cash, "positions": list(positions)}], underlyings=("ETH", "BTC")
    )


def spot(qty, und="ETH"):
    return {"kind": "spot", "underlying": und, "qty": qty}


def perp(qty, und="ETH"):
    return {"kind": "perp", "underlying": und, "qty": qty}


def model(grid=TAIL, **kw):
    return ScenarioPM(ScenarioPMParams(name="t", grid=grid, **kw))


def test_extended_factor_scales_tail_losses():
    # long 1 ETH, tail −50%: −1,000, counted at Deribit's extended_table_factor 0.5 -> 500
    assert model(extended_factor=0.5).requirements(book(spot(1.0)), MKT).mm[0] == pytest.approx(500.0)


def test_a_tail_move_inside_the_price_range_gets_no_dampener():
    # tail −5% with price_range 10%: (0.05/0.1 − 1) < 0 -> no adjustment; long 1 loses 2000·5% = 100
    m = model(grid=ScenarioGrid.tails((-0.05,), NONE), extended_price_range=0.1, extended_dampener_usd=30.0)
    assert m.requirements(book(spot(1.0)), MKT).mm[0] == pytest.approx(100.0)


def test_a_dampener_below_one_dollar_still_applies():
    # tail −50%, range 10%: delta-1 PnL capped at −200; adjustment (0.5/0.1 − 1)·0.5 = 2 -> 198
    m = model(extended_price_range=0.1, extended_dampener_usd=0.5)
    assert m.requirements(book(spot(1.0)), MKT).mm[0] == pytest.approx(198.0)


def test_a_dampener_without_a_price_range_is_not_applied():
    # no price_range: the tail is not capped (−1,000) and the dampener, defined relative to it, does nothing
    m = model(extended_dampener_usd=30.0)
    assert m.requirements(book(spot(1.0)), MKT).mm[0] == pytest.approx(1000.0)


def test_the_dampener_moves_losses_to_zero_at_most_and_leaves_gains():
    m = model(extended_price_range=0.1, extended_dampener_usd=300.0)
    # loss −200 (capped at −10%), adjustment 4·300 = 1,200: the loss goes to 0, not above
    assert m.scenario_pnl(book(spot(1.0)), MKT, "ETH")[:, 0].tolist() == [0.0]
    # a tail gain of 0.001 ETH at +25% capped at +10%: 0.001·2000·0.1 = 0.2 USD, kept
    up = model(grid=ScenarioGrid.tails((0.25,), NONE), extended_price_range=0.1, extended_dampener_usd=300.0)
    assert up.scenario_pnl(book(spot(0.001)), MKT, "ETH")[0, 0] == pytest.approx(0.2)


def test_scenario_pnl_uses_the_underlyings_own_parameters():
    # BTC has its own three-scenario grid (−10%, 0, +10%); long 0.01 BTC: −60, 0, +60
    btc = ScenarioPMParams(name="b", grid=ScenarioGrid.product((-0.1, 0.0, 0.1), (NONE,)))
    m = ScenarioPM(ScenarioPMParams(name="t", grid=TAIL), {"BTC": btc})
    np.testing.assert_allclose(m.scenario_pnl(book(perp(0.01, "BTC")), MKT, "BTC")[:, 0], [-60.0, 0.0, 60.0])


def test_with_grid_swaps_every_grid_and_keeps_the_rest():
    g1 = ScenarioGrid.product((-0.1, 0.1), (NONE,))
    g2 = ScenarioGrid.product((-0.2, 0.2), (NONE,))
    btc = ScenarioPMParams(name="b", grid=g1, mm_factor=0.5)
    m = ScenarioPM(ScenarioPMParams(name="t", grid=g1), {"BTC": btc}, name="combo")
    pf = book(perp(-1.0), perp(0.01, "BTC"))
    # ±10%: ETH short 1 loses 200; BTC 0.01·60,000·10% = 60 at MM factor 0.5 = 30
    assert m.requirements(pf, MKT).mm[0] == pytest.approx(230.0)
    w = m.with_grid(g2)
    # ±20%: 400 + 0.5·120 = 460; the original model is unchanged
    assert w.requirements(pf, MKT).mm[0] == pytest.approx(460.0)
    assert w.name == "combo" and w.per_underlying["BTC"].mm_factor == 0.5
    assert w.params.grid == g2 and w.per_underlying["BTC"].grid == g2 and m.params.grid == g1


def test_exact_mode_adds_the_roll_contingency():
    # no spot move: worst loss 0. Roll (Deribit roll_shock): short 1 ETH future 73 days (0.2 y):
    # 2000·max(0.005, 5%·0.2) = 20; perp 2 ETH: 2·2000·0.005 = 20 -> MM = IM = 40, in wei too
    c = ContingencyParams(roll_annual_move=0.05, roll_min_move=0.005)
    fut = {"kind": "future", "underlying": "ETH", "qty": -1.0, "expiry_days": 73}
    m = model(grid=ScenarioGrid.product((0.0,), (NONE,)), contingency=c, exact=True)
    r = m.requirements(book(fut, perp(2.0)), MKT)
    assert r.mm[0] == pytest.approx(40.0) and r.im[0] == pytest.approx(40.0)
    assert r.exact["mm"][0] == pytest.approx(40 * 10**18, rel=1e-12)


def test_offset_mode_with_one_underlying_keeps_that_underlyings_parameters():
    # cross_underlying "offset" aggregates scenarios across underlyings only when there are several; a book in
    # BTC alone is margined with BTC's own grid and factor: long 0.01 BTC, −20%: 120 at MM factor 0.5 = 60
    # (the default grid, ±10%, would give 60 and the default factor 1 twice as much)
    m = ScenarioPM(
        ScenarioPMParams(name="t", grid=ScenarioGrid.product((-0.1, 0.1), (NONE,)), cross_underlying="offset"),
        {"BTC": ScenarioPMParams(name="b", grid=ScenarioGrid.product((-0.2, 0.2), (NONE,)), mm_factor=0.5)},
    )
    assert m.requirements(book(perp(0.01, "BTC")), MKT).mm[0] == pytest.approx(60.0)


def test_offset_mode_takes_each_underlyings_own_gains_offset():
    # ±10%: ETH short 1 perp: +200 / −200; BTC long 0.01: −60 / +60. Offset (Deribit pnl_offset per currency):
    # ETH credits its gains at 1.0 (default), BTC at 0.5 (its own params). +10%: −200 + 0.5·60 = −170;
    # −10%: 1.0·200 − 60 = 140. MM = 170 (BTC at the default 1.0 would give −140 -> 140)
    g = ScenarioGrid.product((-0.1, 0.1), (NONE,))
    m = ScenarioPM(
        ScenarioPMParams(name="t", grid=g, cross_underlying="offset"),
        {"BTC": ScenarioPMParams(name="b", grid=g, gains_offset=0.5)},
    )
    assert m.requirements(book(perp(-1.0), perp(0.01, "BTC")), MKT).mm[0] == pytest.approx(170.0)


def test_offset_mode_refuses_grids_of_different_sizes_naming_them():
    m = ScenarioPM(
        ScenarioPMParams(name="t", grid=ScenarioGrid.product((-0.1, 0.1), (NONE,)), cross_underlying="offset"),
        {"BTC": ScenarioPMParams(name="b", grid=ScenarioGrid.product((-0.1, 0.0, 0.1), (NONE,)))},
    )
    with pytest.raises(
        ValueError, match=r"^cross_underlying='offset' needs equal scenario counts per underlying, got \{2, 3\}$"
    ):
        m.requirements(book(perp(-1.0), perp(0.01, "BTC")), MKT)


def test_offset_mode_keeps_every_underlyings_mark_to_market_and_contingencies():
    # short 1 ETH perp entered at 2100 (+100 at 2000) and long 0.01 BTC perp entered at 59,000 (+10 at 60,000):
    # equity 110, all of it delta-1 mark-to-market; a 1% perp contingency adds 1%·2000 + 1%·600 = 26 to the MM
    c = ContingencyParams(perp_pct_mm=0.01, perp_pct_im=0.01)
    g = ScenarioGrid.product((-0.1, 0.1), (NONE,))
    m = ScenarioPM(ScenarioPMParams(name="t", grid=g, cross_underlying="offset", contingency=c))
    eth = {"kind": "perp", "underlying": "ETH", "qty": -1.0, "entry_price": 2100.0}
    btc = {"kind": "perp", "underlying": "BTC", "qty": 0.01, "entry_price": 59_000.0}
    r = m.requirements(book(eth, btc), MKT)
    assert r.equity[0] == pytest.approx(110.0) and r.equity_parts["delta1"][0] == pytest.approx(110.0)
    # worst scenario +10%: −200 + 60 = −140 (gains offset 1) -> MM 140 + 26
    assert r.mm[0] == pytest.approx(166.0)
