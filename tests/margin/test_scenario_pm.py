"""The generic scenario-grid PM engine: shocks, contingencies, aggregation and vectorisation."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.scenario_params import (
    ABS,
    DOWN,
    LINEAR,
    NONE,
    UP,
    ContingencyParams,
    ScenarioGrid,
    ScenarioPMParams,
    SkewShockParams,
    StaticDiscountParams,
    VolShockParams,
)
from defistress.protocols.margin.scenario_pm import ScenarioPM

DAY = 86_400.0
MKT = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})  # zero vol: options worth intrinsic, by hand
GRID15 = ScenarioGrid.product((-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15), (UP, NONE, DOWN))


def pf_of(*accounts):
    return Portfolio.from_records(
        [{"name": f"a{i}", "cash": a.get("cash", 0.0), "positions": a["positions"]} for i, a in enumerate(accounts)],
        underlyings=("ETH", "BTC"),
    )


def opt(kind, strike, qty, days=30, und="ETH"):
    return {"kind": kind, "underlying": und, "strike": strike, "qty": qty, "expiry_days": days}


def model(**kw):
    return ScenarioPM(ScenarioPMParams(name="t", grid=kw.pop("grid", GRID15), **kw))


def test_vol_shock_multipliers_hand_computed():
    v = VolShockParams(range_up=0.45, range_down=0.3)
    up, down = v.multipliers(np.array([7 * DAY, 60 * DAY, 0.0]))
    # 7 days: (30/7)^0.3 = 1.5474156 -> up 1 + 0.45*1.5474156 = 1.6963370, down 1 - 0.3*1.5474156 = 0.5357753
    # 60 days (long-term power 0.13): (30/60)^0.13 = 0.9138315 -> up 1.4112242, down 0.7258506
    # 0 s is floored at 1 day: (30)^0.3 = 2.7741911 -> down 1 - 0.3*2.7741911 = 0.1677427
    np.testing.assert_allclose(up[:2], [1.6963370, 1.4112242], atol=1e-7)
    np.testing.assert_allclose(down, [0.5357753, 0.7258506, 0.1677427], atol=1e-7)
    # a bigger down range floors at 0: 1 - 0.5*2.774 < 0 -> 0
    assert VolShockParams(range_down=0.5).multipliers(np.array([0.0]))[1][0] == 0.0


def test_short_term_power_below_30_days_long_term_power_above():
    v = VolShockParams(range_up=1.0, short_term_power=0.3, long_term_power=0.13)
    up = v.multipliers(np.array([29 * DAY, 31 * DAY]))[0]
    # 29 d: 1 + (30/29)^0.3 = 2.0102224; 31 d: 1 + (30/31)^0.13 = 1.9957464
    np.testing.assert_allclose(up, [1 + (30 / 29) ** 0.3, 1 + (30 / 31) ** 0.13])
    assert up[0] == pytest.approx(2.0102224, abs=1e-7) and up[1] == pytest.approx(1.9957464, abs=1e-7)


def test_naked_short_put_delta_one_and_contingency_by_hand():
    # short put K=2200, vol 0: now 200. -15%: F=1700, put 500 -> PnL -300. Naked shorts 1 x 1% x 2000 = 20
    m = model(contingency=ContingencyParams(option_pct_mm=0.01), static_inside_factor=True, im_factor=1.3)
    r = m.requirements(pf_of({"cash": 1000.0, "positions": [opt("put", 2200, -1)]}), MKT)
    assert r.mm[0] == pytest.approx(320.0)  # 300 + 20
    assert r.im[0] == pytest.approx(416.0)  # 1.3 * 320
    assert r.equity[0] == pytest.approx(800.0)  # 1000 cash - 200 short put value
    assert r.drivers["worst_scenario"][0] == 0  # -15% Up (first of the equal -15% cells)
    assert r.drivers["naked_short_usd"][0] == pytest.approx(20.0)
    assert r.drivers["native_margin_mm"][0] == pytest.approx(800.0 - 320.0)


def test_naked_shorts_net_per_strike_pooling_calls_and_puts():
    # PMRM 1.2: call +10 and put -20 at one strike -> 10 naked; another strike short 3 -> 3; a long alone -> 0
    c = ContingencyParams(option_pct_mm=0.01)
    book = [
        opt("call", 2000, 10),
        opt("put", 2000, -20),
        opt("call", 2500, -3),
        opt("put", 1500, 4),
        opt("put", 2000, -1, days=60),
    ]  # other expiry: does not net with the 30-day strike
    r = model(contingency=c).requirements(pf_of({"positions": book}), MKT)
    assert r.drivers["naked_short_usd"][0] == pytest.approx((10 + 3 + 1) * 0.01 * 2000)


def test_basis_contingency_is_a_floor_not_an_add_on():
    # short call K=2000 vol 0 with a grid of only 0% moves: scenario worst 0.
    # basis up 1.05: call 100 -> PnL -100; x (add 0.25 + mult 0.01*30/365) = -25.0821918
    c = ContingencyParams(basis_up=1.05, basis_down=0.95, basis_add=0.25, basis_mult=0.01)
    flat_grid = ScenarioGrid.product((0.0,), (UP, NONE, DOWN))
    pf = pf_of({"positions": [opt("call", 2000, -1)]})
    r = model(grid=flat_grid, contingency=c).requirements(pf, MKT)
    assert r.mm[0] == pytest.approx(100 * (0.25 + 0.01 * 30 / 365))
    assert r.drivers["worst_scenario"][0] == 3  # index S = the basis floor scenario
    # with the +-15% grid the scenario loss (15% x 2000 = 300) dominates: floor not added
    assert model(contingency=c).requirements(pf, MKT).mm[0] == pytest.approx(300.0)


def test_one_sided_and_two_sided_static_discount():
    # long call K=1800 vol 0, 0% grid: value 200. one-sided 0.9: PnL = 0.9*200 - 200 = -20
    grid = ScenarioGrid.product((0.0,), (NONE,))
    long_call = pf_of({"positions": [opt("call", 1800, 1)]})
    short_call = pf_of({"positions": [opt("call", 1800, -1)]})
    one = model(grid=grid, discount=StaticDiscountParams(long_base=0.9))
    assert one.requirements(long_call, MKT).mm[0] == pytest.approx(20.0)
    assert one.requirements(short_call, MKT).mm[0] == pytest.approx(0.0)  # negatives untouched
    # two-sided, short base 1.04 (rate 0, add 0): -200 * 1.04 = -208, but capped at 1/D = 1 -> -200 -> 0
    two = model(grid=grid, discount=StaticDiscountParams(long_base=0.9, short_base=1.04))
    assert two.requirements(short_call, MKT).mm[0] == pytest.approx(0.0)
    # with rate 5%, D = exp(-0.05*30/365); 1/D = 1.0041181 < 1.04: short value -200*D*(1/D) ... priced with D:
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, rate={"ETH": 0.05})
    two_d = model(grid=grid, discount=StaticDiscountParams(long_base=0.9, short_base=1.04), discount_option_prices=True)
    t = 30 / 365
    f = 2000 * math.exp(0.05 * t)
    value = -(f - 1800) * math.exp(-0.05 * t)  # -D (F - K)
    assert two_d.requirements(short_call, mkt).mm[0] == pytest.approx(-(value / math.exp(-0.05 * t) - value))


def test_vol_up_floor_and_dampening():
    # short ATM call, vol 0 -> min_vol_up 0.5 makes the Up cell price at 50% vol: loss = call(0.5) value
    grid = ScenarioGrid((1.0, 1.0), (UP, NONE), (0.5, 1.0), (False, False))
    pf = pf_of({"positions": [opt("call", 2000, -1)]})
    from defistress.protocols.margin.black76 import price

    c = float(price(2000.0, 2000.0, 30 / 365, 0.5, True))
    r = model(grid=grid, vol_shock=VolShockParams(min_vol_up=0.5)).requirements(pf, MKT)
    assert r.mm[0] == pytest.approx(0.5 * c)  # dampening 0.5 on the Up cell


def test_skew_scenarios_take_the_worse_of_rotation_and_mirror():
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6})
    skew = SkewShockParams()
    grid_lin = ScenarioGrid((1.0,), (LINEAR,), (1.0,), (False,))
    m = model(grid=grid_lin, skew=skew)
    # a long OTM call gains when the linear skew lifts upside vols, yet the scenario counts it as a loss
    long_call = pf_of({"positions": [opt("call", 2600, 1)]})
    s = m.scenario_pnl(long_call, mkt, "ETH")[0, 0]
    assert s < 0
    short_call = pf_of({"positions": [opt("call", 2600, -1)]})
    assert m.scenario_pnl(short_call, mkt, "ETH")[0, 0] == pytest.approx(s)
    with pytest.raises(ValueError, match="skew"):
        ScenarioPMParams(name="x", grid=ScenarioGrid((1.0,), (ABS,), (1.0,), (False,)))


def test_skew_multiplier_hand_computed():
    # T = 0.25: sqrtT 0.5; multCap = -0.1*0.5 + 0.25 = 0.2; kStar = max(0.01, 0.5*4*0.6) = 1.2
    # k = 0.3: 1 + min(0.2, 0.3*0.2/1.2 = 0.05) = 1.05; k = -3: 1 + max(-0.2, -0.5) = 0.8
    m = SkewShockParams().multiplier(np.array([0.3, -3.0]), np.array([0.25, 0.25]), linear=True)
    np.testing.assert_allclose(m, [1.05, 0.8])


def test_confidence_and_depeg_contingencies():
    # short 2 perps: -15%... worst +15%: -600. conf 0.5 < 0.6: (1-0.5)*0.5*2*2000 = 1000 on IM only
    c = ContingencyParams(conf_threshold=0.6, conf_margin=0.5, peg_threshold=0.98, peg_factor=2.0)
    pf = pf_of({"positions": [{"kind": "perp", "underlying": "ETH", "qty": -2.0}]})
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5}, confidence={"ETH": 0.5}, stable_price=0.95)
    r = model(contingency=c, im_factor=1.3).requirements(pf, mkt)
    assert r.mm[0] == pytest.approx(600.0)
    # IM factor 1.3 + (0.98 - 0.95)*2 = 1.36 -> 1.36*600 + 1000 = 1816
    assert r.im[0] == pytest.approx(1816.0)
    assert r.drivers["confidence_usd"][0] == pytest.approx(1000.0)


def test_roll_shock_and_entry_price_pnl():
    # short 1 ETH future 73 days (0.2 y): roll = 2000 * max(0.005, 0.05*0.2 = 0.01) = 20; perp 2 * 2000 * 0.005
    c = ContingencyParams(roll_annual_move=0.05, roll_min_move=0.005)
    pf = pf_of(
        {
            "positions": [
                {"kind": "future", "underlying": "ETH", "qty": -1.0, "expiry_days": 73, "entry_price": 2100.0},
                {"kind": "perp", "underlying": "ETH", "qty": 2.0, "entry_price": 1900.0},
            ]
        }
    )
    r = model(grid=ScenarioGrid.product((0.0,), (NONE,)), contingency=c).requirements(pf, MKT)
    assert r.drivers["roll_usd"][0] == pytest.approx(20.0 + 20.0)
    assert r.equity[0] == pytest.approx(-1 * (2000 - 2100) + 2 * (2000 - 1900))  # uPnL 100 + 200


def test_gains_offset_with_cap_across_underlyings():
    # scenario +10%: long 1 BTC gains 6000, short 1 ETH perp loses 200 (and the mirror at -10%)
    grid = ScenarioGrid.product((-0.1, 0.1), (NONE,))
    mkt = MarketState(spot={"ETH": 2000.0, "BTC": 60000.0}, vol={"ETH": 0.5, "BTC": 0.5})
    pf = pf_of(
        {
            "positions": [
                {"kind": "perp", "underlying": "ETH", "qty": -1.0},
                {"kind": "perp", "underlying": "BTC", "qty": 0.01},
            ]
        }
    )
    # per-underlying margins add: ETH 200 + BTC 0.01*60000*0.1 = 60 => 260
    assert model(grid=grid).requirements(pf, mkt).mm[0] == pytest.approx(260.0)
    # offset mode: -10%: ETH +200 x 0.6 = 120 credit, BTC -60 => worst is +10%: -200 + min(0.6*60, 30) = -170
    off = model(grid=grid, cross_underlying="offset", gains_offset=0.6, max_offsetable_pnl=30.0)
    assert off.requirements(pf, mkt).mm[0] == pytest.approx(170.0)


def test_floor_charges_min_delta_and_tiered_minimum():
    grid = ScenarioGrid.product((0.0,), (NONE,))
    pf = pf_of(
        {
            "positions": [
                {"kind": "perp", "underlying": "ETH", "qty": -3.0},
                {"kind": "spot", "underlying": "ETH", "qty": 1.0},
            ]
        }
    )
    # min delta: net -2 -> 2% x 2 x 2000 = 80; hedged 1 -> 1% x 2000 = 20 => 100
    md = model(grid=grid, contingency=ContingencyParams(min_delta_net_pct=0.02, min_delta_hedged_pct=0.01))
    assert md.requirements(pf, MKT).mm[0] == pytest.approx(100.0)
    # tiered: raw = 0.3% x 3 x 2000 = 18 in tier (10, inf] -> x2 = 36
    mc = model(
        grid=grid,
        contingency=ContingencyParams(min_charge_delta1_rate=0.003, min_charge_tiers=((10.0, 1.0), (math.inf, 2.0))),
    )
    assert mc.requirements(pf, MKT).mm[0] == pytest.approx(36.0)


def test_extended_dampener_moves_tail_losses_toward_zero():
    # tail -50% with price_range 0.1: delta-1 PnL capped at -10% => -200 for long 1; dampener adj =
    # (0.5/0.1 - 1) * 30 = 120 -> -80
    grid = ScenarioGrid.tails((-0.5,), NONE)
    pf = pf_of({"positions": [{"kind": "spot", "underlying": "ETH", "qty": 1.0}]})
    m = model(grid=grid, extended_price_range=0.1, extended_dampener_usd=30.0)
    assert m.requirements(pf, MKT).mm[0] == pytest.approx(80.0)


def test_all_accounts_at_once_equal_each_account_alone():
    rng = np.random.default_rng(11)
    mkt = MarketState(spot={"ETH": 2000.0, "BTC": 60000.0}, vol={"ETH": 0.7, "BTC": 0.5}, rate={"ETH": 0.03})
    accounts = []
    for _ in range(12):
        pos = [
            opt(
                rng.choice(["call", "put"]),
                float(rng.choice([1600, 2000, 2400])),
                float(rng.normal(0, 3)),
                int(rng.choice([7, 30, 90])),
            )
            for _ in range(rng.integers(0, 5))
        ]
        pos.append({"kind": "perp", "underlying": "BTC", "qty": float(rng.normal(0, 0.1))})
        accounts.append({"cash": 1000.0, "positions": pos})
    pf = pf_of(*accounts)
    m = model(
        contingency=ContingencyParams(option_pct_mm=0.01, basis_up=1.05, basis_down=0.95, basis_add=0.25),
        discount=StaticDiscountParams(long_base=0.95, long_rate_add=0.1),
        im_factor=1.3,
    )
    full = m.requirements(pf, mkt)
    for i in range(pf.n_accounts):
        alone = m.requirements(pf.subset([i]), mkt)
        assert alone.mm[0] == pytest.approx(full.mm[i], rel=1e-12, abs=1e-9)
        assert alone.im[0] == pytest.approx(full.im[i], rel=1e-12, abs=1e-9)
        assert alone.equity[0] == pytest.approx(full.equity[i], rel=1e-12, abs=1e-9)


moves = st.lists(
    st.sampled_from([-0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3]), min_size=1, max_size=5, unique=True
)
legs = st.lists(
    st.tuples(
        st.sampled_from(["call", "put", "perp", "spot"]),
        st.sampled_from([1500, 2000, 2500]),
        st.floats(-5, 5),
        st.sampled_from([1, 7, 30, 120]),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small=moves, extra=moves, book=legs, vol=st.floats(0.1, 1.5))
def test_bigger_shock_grid_never_lowers_the_requirement(small, extra, book, vol):
    pos = [
        opt(k, s, q, d) if k in ("call", "put") else {"kind": k, "underlying": "ETH", "qty": q} for k, s, q, d in book
    ]
    pf = pf_of({"positions": pos})
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": vol})
    kw = dict(
        vol_shock=VolShockParams(range_up=0.5, range_down=0.3),
        contingency=ContingencyParams(option_pct_mm=0.01, perp_pct_mm=0.02),
        discount=StaticDiscountParams(long_base=0.95),
        im_factor=1.3,
    )
    g_small = ScenarioGrid.product(small, (UP, NONE, DOWN))
    g_big = g_small + ScenarioGrid.product(extra, (UP, DOWN))
    r_small = model(grid=g_small, **kw).requirements(pf, mkt)
    r_big = model(grid=g_big, **kw).requirements(pf, mkt)
    assert r_big.mm[0] >= r_small.mm[0] - 1e-9
    assert r_big.im[0] >= r_small.im[0] - 1e-9


def test_parameter_validation_names_fields():
    with pytest.raises(ValueError, match="range_up"):
        VolShockParams(range_up=-1.0)
    with pytest.raises(ValueError, match="dampening"):
        ScenarioGrid((1.0,), (UP,), (1.0, 2.0), (False,))
    with pytest.raises(ValueError, match="cross_underlying"):
        ScenarioPMParams(name="x", grid=GRID15, cross_underlying="both")
    with pytest.raises(ValueError, match="basis_down"):
        ContingencyParams(basis_down=1.5)


def test_portfolio_validation_and_records():
    with pytest.raises(ValueError, match="kind"):
        Portfolio.from_records([{"positions": [{"kind": "swap", "underlying": "ETH", "qty": 1}]}])
    pf = pf_of({"positions": [opt("put", 1800, -1)]})
    assert pf.positions_of(0).loc[0, "kind"] == "put"
    with pytest.raises(ValueError, match="account"):
        Portfolio(
            n_accounts=1,
            underlyings=("ETH",),
            account=[3],
            kind=[0],
            und=[0],
            qty=[1.0],
            strike=[0.0],
            expiry_s=[0.0],
            entry_price=[0.0],
            cash=[0.0],
        )
