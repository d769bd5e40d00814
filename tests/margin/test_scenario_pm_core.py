"""The scenario-grid engine's core (`ScenarioPM._underlying`, `requirements`, `_floor`) on small books whose every
figure is worked out by hand or by an independent Black-76 written here (math.erf, one option at a time): the
option loop per (account, expiry) with vol shocks, dampening and the two-sided static discount, coin-margined
accounts, the delta-1 contingencies, the per-expiry basis floor, the floor charges and the aggregation across
underlyings. Fast on purpose: these are the tests the mutation run (tests/mutation, group `scenario_pm`) leans on."""

import math

import numpy as np
import pytest

from defistress.protocols.margin.forward_curve import ForwardCurve
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.scenario_params import (
    ABS,
    DOWN,
    LINEAR,
    NONE,
    UP,
    CollateralParams,
    ContingencyParams,
    ScenarioGrid,
    ScenarioPMParams,
    SkewShockParams,
    StaticDiscountParams,
    VolShockParams,
)
from defistress.protocols.margin.scenario_pm import ScenarioPM

YEAR_DAYS = 365.0  # Lyra/Derive Black76.sol and Deribit: 365-day year


def n_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def b76(f: float, k: float, t: float, sigma: float, call: bool, d: float = 1.0) -> float:
    """Black-76 price of one option, discounted by d (independent of protocols/margin/black76.py)."""
    if sigma * math.sqrt(t) <= 0.0:
        return d * max(f - k, 0.0) if call else d * max(k - f, 0.0)
    sd = sigma * math.sqrt(t)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if call:
        return d * (f * n_cdf(d1) - k * n_cdf(d2))
    return d * (k * n_cdf(-d2) - f * n_cdf(-d1))


def book(*accounts: dict) -> Portfolio:
    return Portfolio.from_records(
        [
            {
                "name": f"a{i}",
                "cash": a.get("cash", 0.0),
                "margin_currency": a.get("currency", "USD"),
                "positions": a["positions"],
            }
            for i, a in enumerate(accounts)
        ],
        underlyings=("ETH", "BTC"),
    )


def opt(kind: str, strike: float, qty: float, days: float) -> dict:
    return {"kind": kind, "underlying": "ETH", "strike": strike, "qty": qty, "expiry_days": days}


def d1row(kind: str, qty: float, und: str = "ETH") -> dict:
    return {"kind": kind, "underlying": und, "qty": qty}


def model(grid: ScenarioGrid, **kw) -> ScenarioPM:
    return ScenarioPM(ScenarioPMParams(name="core", grid=grid, **kw))


# ---------------------------------------------------------------- the option loop against an independent Black-76
SPOT, SIGMA, RATE = 2000.0, 0.6, 0.05
VOL_MKT = MarketState(spot={"ETH": SPOT}, vol={"ETH": SIGMA}, rate={"ETH": RATE})
# spot x0.9, unchanged with vol Up (weight 0.5), unchanged with vol Down, x1.15 (weight 0.8)
GRID4 = ScenarioGrid((0.9, 1.0, 1.0, 1.15), (NONE, UP, DOWN, NONE), (1.0, 0.5, 1.0, 0.8), (False,) * 4)
SHOCK = VolShockParams(range_up=0.4, range_down=0.3, min_vol_up=0.9)
# long values x 0.95 e^{-0.1 T}; short values x min(1/D, 0.98 e^{0.05 T}) = 0.98 e^{0.05 T} (D = e^{-0.05 T})
DISC = StaticDiscountParams(long_base=0.95, long_rate_add=0.1, short_base=0.98, short_rate_add=0.05)
# account 0: options of two expiries interleaved; account 1: both expiries, net short; account 2: cash only
OPTION_BOOK = (
    {
        "cash": 5000.0,
        "positions": [
            opt("call", 2200, 2, 7),
            opt("put", 1800, -1, 60),
            opt("put", 1900, 1, 7),
            opt("call", 2400, 1, 60),
        ],
    },
    {"cash": 1000.0, "positions": [opt("call", 2000, -3, 60), opt("call", 2000, 1, 7), opt("put", 2100, -1, 7)]},
    {"cash": 300.0, "positions": []},
)


def _vol_mults(days: float) -> tuple[float, float]:
    # (30 d / T)^p with p = 0.3 up to 30 days, 0.13 beyond (VolShockParams defaults, PMRMLib _addVolShocks)
    mult = (30.0 / days) ** (0.3 if days <= 30 else 0.13)
    return 1.0 + 0.4 * mult, max(0.0, 1.0 - 0.3 * mult)


def _reference_option_pnl(accounts: tuple[dict, ...], grid: ScenarioGrid) -> tuple[np.ndarray, np.ndarray]:
    """(S, N) scenario PnL and (N,) option mark-to-market, one expiry group at a time:
    PnL_s = damp_s * [sum_e disc(V_e(shocked)) - V_e(now)], disc(v) = v * pos_e if v >= 0 else v * neg_e."""
    pnl = np.zeros((grid.size, len(accounts)))
    mtm = np.zeros(len(accounts))
    for i, a in enumerate(accounts):
        for days in sorted({p["expiry_days"] for p in a["positions"]}):
            legs = [p for p in a["positions"] if p["expiry_days"] == days]
            t = days / YEAR_DAYS
            f, d = SPOT * math.exp(RATE * t), math.exp(-RATE * t)
            pos, neg = 0.95 * math.exp(-0.1 * t), min(1.0 / d, 0.98 / math.exp(-0.05 * t))
            up, down = _vol_mults(days)
            now = sum(p["qty"] * b76(f, p["strike"], t, SIGMA, p["kind"] == "call", d) for p in legs)
            mtm[i] += now
            for s in range(grid.size):
                vd, m = grid.vol[s], grid.spot[s]
                sig = {NONE: SIGMA, UP: max(0.9, SIGMA * up), DOWN: SIGMA * down}[vd]
                v = sum(p["qty"] * b76(f * m, p["strike"], t, sig, p["kind"] == "call", d) for p in legs)
                pnl[s, i] += ((v * pos if v >= 0 else v * neg) - now) * grid.dampening[s]
    return pnl, mtm


def test_option_scenarios_match_an_independent_black76_per_account_and_expiry():
    pf = book(*OPTION_BOOK)
    m = model(GRID4, vol_shock=SHOCK, discount=DISC, discount_option_prices=True)
    want, mtm = _reference_option_pnl(OPTION_BOOK, GRID4)
    # the Up floor binds for the 60-day options only: 0.6 x (1 + 0.4 x 0.5^0.13) = 0.819 < 0.9 < 0.6 x 1.619
    assert SIGMA * _vol_mults(60)[0] < 0.9 < SIGMA * _vol_mults(7)[0]
    got = m.scenario_pnl(pf, VOL_MKT, "ETH")
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-7)
    r = m.requirements(pf, VOL_MKT)
    np.testing.assert_allclose(r.equity, [5000.0 + mtm[0], 1000.0 + mtm[1], 300.0], rtol=1e-12)
    np.testing.assert_allclose(r.equity_parts["options"], [mtm[0], mtm[1], 0.0], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(r.equity_parts["cash"], [5000.0, 1000.0, 300.0])
    loss = np.maximum(-want.min(axis=0), 0.0)
    np.testing.assert_allclose(r.drivers["worst_loss_usd"], loss, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(r.mm, loss, rtol=1e-9, atol=1e-7)  # no contingency, factors 1
    np.testing.assert_allclose(r.drivers["native_margin_mm"], r.equity - loss, rtol=1e-9)
    worst = np.where(loss > 0, want.argmin(axis=0), -1)  # -1: no loss anywhere (the cash-only account)
    assert r.drivers["worst_scenario"].tolist() == worst.tolist()
    assert loss[0] > 0 and loss[1] > 0 and loss[2] == 0.0


def test_undiscounted_prices_and_one_sided_discount():
    # PMRM v1: options priced with D = 1 and only positive expiry values haircut (short_base None: neg factor 1)
    pf = book(*OPTION_BOOK[:2])
    m = model(GRID4, vol_shock=SHOCK, discount=StaticDiscountParams(long_base=0.9))
    got = m.scenario_pnl(pf, VOL_MKT, "ETH")
    for i, a in enumerate(OPTION_BOOK[:2]):
        for s in range(GRID4.size):
            want = 0.0
            for days in (7, 60):
                legs = [p for p in a["positions"] if p["expiry_days"] == days]
                t = days / YEAR_DAYS
                f = SPOT * math.exp(RATE * t)
                up, down = _vol_mults(days)
                sig = {NONE: SIGMA, UP: max(0.9, SIGMA * up), DOWN: SIGMA * down}[GRID4.vol[s]]
                now = sum(p["qty"] * b76(f, p["strike"], t, SIGMA, p["kind"] == "call") for p in legs)
                v = sum(p["qty"] * b76(f * GRID4.spot[s], p["strike"], t, sig, p["kind"] == "call") for p in legs)
                want += ((0.9 * v if v >= 0 else v) - now) * GRID4.dampening[s]
            assert got[s, i] == pytest.approx(want, rel=1e-9, abs=1e-7)


# ---------------------------------------------------------------- coin-margined accounts
def test_coin_margined_option_cash_and_contingencies_are_counted_in_coin():
    # vol 0, rate 0: short 1 call K 1800 is worth -200 USD now (-0.1 ETH); grid -10% / +10%.
    # coin account (cash 1000 USD = 0.5 ETH):
    #   -10%: call 0 -> +0.1 ETH; cash 1000/1800 - 0.5 = +0.0555556 => +0.1555556 ETH
    #   +10%: call -400 USD / 2200 = -0.1818182 ETH -> -0.0818182; cash 1000/2200 - 0.5 = -0.0454545 => -0.1272727
    # naked short 1 x 1% x 2000 = 20 USD = 0.01 ETH (MM, static outside the factor), IM 2%: 40 USD = 0.02 ETH more
    # USD account, same book: -10%: +200, +10%: -200 -> loss 200; MM 200 + 20; IM 200 + 20 + 40
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    grid = ScenarioGrid.product((-0.1, 0.1), (NONE,))
    short_call = opt("call", 1800, -1, 30)
    pf = book(
        {"cash": 1000.0, "currency": "ETH", "positions": [short_call]},
        {"cash": 1000.0, "positions": [short_call]},
    )
    m = model(grid, contingency=ContingencyParams(option_pct_mm=0.01, option_pct_im=0.02))
    pnl = m.scenario_pnl(pf, mkt, "ETH")
    np.testing.assert_allclose(pnl[:, 0], [0.1 + 1000 / 1800 - 0.5, -400 / 2200 + 0.1 + 1000 / 2200 - 0.5], rtol=1e-12)
    np.testing.assert_allclose(pnl[:, 1], [200.0, -200.0], rtol=1e-12)
    r = m.requirements(pf, mkt)
    loss_eth = 400 / 2200 - 0.1 - 1000 / 2200 + 0.5  # 0.1272727 ETH
    assert r.drivers["native_mm"][0] == pytest.approx(loss_eth + 0.01, rel=1e-12)
    assert r.drivers["native_im"][0] == pytest.approx(loss_eth + 0.01 + 0.02, rel=1e-12)
    assert r.drivers["native_equity"][0] == pytest.approx(0.5 - 0.1, rel=1e-12)
    assert r.mm.tolist() == pytest.approx([(loss_eth + 0.01) * 2000, 220.0], rel=1e-12)
    assert r.im.tolist() == pytest.approx([(loss_eth + 0.03) * 2000, 260.0], rel=1e-12)
    assert r.equity.tolist() == pytest.approx([800.0, 800.0], rel=1e-12)
    # the named drivers are USD for every account; the coin account's cash part is in coin
    assert r.drivers["naked_short_usd"].tolist() == pytest.approx([20.0, 20.0], rel=1e-12)
    assert r.drivers["naked_short_im_usd"].tolist() == pytest.approx([40.0, 40.0], rel=1e-12)
    assert r.drivers["worst_loss_usd"].tolist() == pytest.approx([loss_eth * 2000, 200.0], rel=1e-12)
    assert r.equity_parts["cash"].tolist() == pytest.approx([0.5, 1000.0], rel=1e-12)
    assert r.drivers["worst_scenario"].tolist() == [1, 1]
    assert r.currency == ("ETH", "USD")


def test_coin_margined_option_with_discounted_prices():
    # rate 10%, 73 days (0.2 y): F = 2000 e^{0.02} = 2040.4027, D = e^{-0.02}; vol 0, long 1 call K 1800:
    # value D (F m - K) USD, in coin D (F m - K) / (F m D) = 1 - K / (F m). Grid x1.0 and x0.8:
    # now 1 - 1800/2040.4027 = 0.1178203; x0.8: F' = 1632.32 < K -> 0 => PnL -0.1178203 ETH
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, rate={"ETH": 0.1})
    grid = ScenarioGrid.product((0.0, -0.2), (NONE,))
    pf = book({"cash": 0.0, "currency": "ETH", "positions": [opt("call", 1800, 1, 73)]})
    m = model(grid, discount_option_prices=True)
    f = 2000 * math.exp(0.02)
    np.testing.assert_allclose(m.scenario_pnl(pf, mkt, "ETH")[:, 0], [0.0, -(1 - 1800 / f)], atol=1e-12)
    r = m.requirements(pf, mkt)
    assert r.drivers["native_equity"][0] == pytest.approx(1 - 1800 / f, rel=1e-12)
    assert r.equity[0] == pytest.approx(2000 * (1 - 1800 / f), rel=1e-12)


# ---------------------------------------------------------------- delta-1 contingencies and the aggregation
def test_delta1_contingencies_roll_confidence_and_aggregation_by_hand():
    # spot ETH 2000 (confidence 0.8), ETH perp feed confidence 0.4; BTC 60,000 (confidence 1); grid -10% / +10%.
    # account 0: perp -2 ETH, spot +1 ETH, perp +0.1 BTC; account 1: spot +3 ETH.
    # ETH, account 0: net -1 ETH -> +10%: -200 (index 1); perp 2 x 2000 x 1% + spot 1 x 2000 x 0.5% = 50 MM,
    #   2 x 2000 x 2% + 2000 x 1% = 100 IM; roll 2 x 2000 x 0.5% = 20; holds a perp: confidence min(0.8, 0.4) =
    #   0.4 < 0.6 -> (1 - 0.4) x 0.5 x (2 + 1) x 2000 = 1800 (IM)
    # BTC, account 0: -10%: -600 (index 0); perp 0.1 x 60,000 x 1% = 60 MM, 120 IM; roll 30; confidence 1
    # account 1: ETH -10%: -600 (index 0); spot 3 x 2000 x 0.5% = 30 MM, 60 IM; no perp: confidence 0.8 >= 0.6
    mkt = MarketState(
        spot={"ETH": 2000.0, "BTC": 60_000.0},
        vol={"ETH": 0.5, "BTC": 0.5},
        confidence={"ETH": 0.8},
        perp_confidence={"ETH": 0.4},
    )
    c = ContingencyParams(
        perp_pct_mm=0.01,
        perp_pct_im=0.02,
        base_pct_mm=0.005,
        base_pct_im=0.01,
        conf_threshold=0.6,
        conf_margin=0.5,
        roll_min_move=0.005,
    )
    pf = book(
        {"positions": [d1row("perp", -2.0), d1row("spot", 1.0), d1row("perp", 0.1, "BTC")]},
        {"positions": [d1row("spot", 3.0)]},
    )
    grid = ScenarioGrid.product((-0.1, 0.1), (NONE,))
    r = model(grid, contingency=c, mm_factor=0.9, im_factor=1.3).requirements(pf, mkt)
    # MM = 0.9 (loss + roll) + static MM per underlying; IM = 1.3 (loss + roll) + static MM + static IM + confidence
    # account 0: 0.9 x 220 + 50 + 0.9 x 630 + 60 = 875; 1.3 x 220 + 150 + 1800 + 1.3 x 630 + 180 = 3235
    # account 1: 0.9 x 600 + 30 = 570; 1.3 x 600 + 30 + 60 = 870
    assert r.mm.tolist() == pytest.approx([875.0, 570.0], rel=1e-12)
    assert r.im.tolist() == pytest.approx([3235.0, 870.0], rel=1e-12)
    d = r.drivers
    assert d["worst_loss_usd"].tolist() == pytest.approx([800.0, 600.0], rel=1e-12)
    assert d["worst_scenario"].tolist() == [0, 0]  # account 0: BTC's 600 outweighs ETH's 200 (index 1)
    assert d["perp_base_usd"].tolist() == pytest.approx([110.0, 30.0], rel=1e-12)
    assert d["perp_base_im_usd"].tolist() == pytest.approx([220.0, 60.0], rel=1e-12)
    assert d["contingency_static_mm_usd"].tolist() == pytest.approx([110.0, 30.0], rel=1e-12)
    # the delta-1 equity part sums over underlyings: ETH spot 2000 + BTC perp 0 (entered at the mark); float mode
    assert r.equity_parts["delta1"].tolist() == pytest.approx([2000.0, 6000.0], rel=1e-12) and r.exact == {}
    assert d["roll_usd"].tolist() == pytest.approx([50.0, 0.0], rel=1e-12)
    assert d["confidence_usd"].tolist() == pytest.approx([1800.0, 0.0], rel=1e-12)
    assert d["basis_usd"].tolist() == [0.0, 0.0] and d["floor_charge_usd"].tolist() == [0.0, 0.0]
    # equity: no cash, perps entered at the mark, spot rows worth 1 x 2000 and 3 x 2000
    assert d["native_margin_im"].tolist() == pytest.approx([2000.0 - 3235.0, 6000.0 - 870.0], rel=1e-12)
    # PMRM v1: the static MM inside the factor: risk = loss + roll + static MM
    # account 0: 0.9 x (270 + 690) = 864; 1.3 x 270 + 100 + 1800 + 1.3 x 690 + 120 = 3268
    # account 1: 0.9 x 630 = 567; 1.3 x 630 + 60 = 879
    v1 = model(grid, contingency=c, mm_factor=0.9, im_factor=1.3, static_inside_factor=True).requirements(pf, mkt)
    assert v1.mm.tolist() == pytest.approx([864.0, 567.0], rel=1e-12)
    assert v1.im.tolist() == pytest.approx([3268.0, 879.0], rel=1e-12)


def test_worst_scenario_of_a_later_underlying_replaces_only_a_smaller_loss():
    # account 0: ETH perp +1 loses 200 at -10% (index 0), BTC perp -0.01 loses 60 at +10% (index 1): ETH's index;
    # account 1: ETH perp +0.01 loses 2, BTC perp -0.1 loses 600 at +10%: BTC's index 1
    mkt = MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 0.5, "BTC": 0.5})
    pf = book(
        {"positions": [d1row("perp", 1.0), d1row("perp", -0.01, "BTC")]},
        {"positions": [d1row("perp", 0.01), d1row("perp", -0.1, "BTC")]},
    )
    r = model(ScenarioGrid.product((-0.1, 0.1), (NONE,))).requirements(pf, mkt)
    assert r.drivers["worst_scenario"].tolist() == [0, 1]
    assert r.mm.tolist() == pytest.approx([260.0, 602.0], rel=1e-12)


def test_basis_floor_is_per_expiry_with_its_own_time():
    # vol 0, rate 0, grid 0% only (no scenario loss). Basis scenarios F x 1.05 and F x 0.95 per expiry:
    # 7 d short call K 2000: up -100, down 0 -> -100 x (0.25 + 0.5 x 7/365)
    # 90 d short put K 2000: up 0, down -100 -> -100 x (0.25 + 0.5 x 90/365)
    # one-leg account: only its own expiry
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    c = ContingencyParams(basis_up=1.05, basis_down=0.95, basis_add=0.25, basis_mult=0.5)
    pf = book(
        {"positions": [opt("call", 2000, -1, 7), opt("put", 2000, -1, 90)]},
        {"positions": [opt("put", 2000, -2, 90)]},
        {"positions": [opt("call", 2000, 1, 7), opt("put", 2000, 1, 7)]},  # long straddle: +100 both ways -> no floor
    )
    # a grid without a NONE scenario (UP with no vol range is the same market): the basis prices at the unshocked vol
    r = model(ScenarioGrid.product((0.0,), (UP,)), contingency=c).requirements(pf, mkt)
    b0 = 100 * (0.25 + 0.5 * 7 / 365) + 100 * (0.25 + 0.5 * 90 / 365)
    b1 = 200 * (0.25 + 0.5 * 90 / 365)
    assert r.drivers["basis_usd"].tolist() == pytest.approx([b0, b1, 0.0], rel=1e-12)
    assert r.mm.tolist() == pytest.approx([b0, b1, 0.0], rel=1e-12)
    assert r.drivers["worst_scenario"].tolist() == [1, 1, -1]  # index S = 1: the basis floor scenario


def test_option_confidence_contingency_per_expiry_takes_the_lower_of_spot_and_perp():
    # spot confidence 0.5 < 0.6; perp feed 0.3. Account 0: long 2 calls + short 1 put, same expiry (gross 3),
    # options only -> (1 - 0.5) x 0.4 x 3 x 2000 = 1200. Account 1: 1 call and a perp of 1:
    # options at min(0.5, 0.3) = 0.3 -> 0.7 x 0.4 x 1 x 2000 = 560; delta-1: 0.7 x 0.4 x 1 x 2000 = 560
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, confidence={"ETH": 0.5}, perp_confidence={"ETH": 0.3})
    c = ContingencyParams(conf_threshold=0.6, conf_margin=0.4)
    pf = book(
        {"positions": [opt("call", 2000, 2, 30), opt("put", 1900, -1, 30)]},
        {"positions": [opt("call", 2100, 1, 30), d1row("perp", 1.0)]},
    )
    r = model(ScenarioGrid.product((0.0,), (NONE,)), contingency=c).requirements(pf, mkt)
    assert r.drivers["confidence_usd"].tolist() == pytest.approx([1200.0, 1120.0], rel=1e-12)
    assert r.im.tolist() == pytest.approx([1200.0, 1120.0], rel=1e-12)
    assert r.mm.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


# ---------------------------------------------------------------- floor charges
def test_min_delta_floor_counts_options_by_their_spot_delta():
    # vol 0.5, rate 5%, 30 d: F = S e^{rT}, D = e^{-rT}; spot delta = D N(d1) F / S = N(d1) (calls), N(d1) - 1 (puts)
    # account 0: long 2 calls K 2000, perp -3: longs 2 N(d1c), shorts 3
    # account 1: long 4 puts K 1800, perp +1: longs 1, shorts 4 (1 - N(d1p))
    # floor (Paradex min delta) = (1% x |longs - shorts| + 2% x min(longs, shorts)) x 2000
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5}, rate={"ETH": 0.05})
    t = 30 / 365
    f = 2000 * math.exp(0.05 * t)
    sd = 0.5 * math.sqrt(t)
    nc = n_cdf((math.log(f / 2000) + 0.5 * sd * sd) / sd)
    npu = n_cdf((math.log(f / 1800) + 0.5 * sd * sd) / sd) - 1.0
    pf = book(
        {"positions": [opt("call", 2000, 2, 30), d1row("perp", -3.0)]},
        {"positions": [opt("put", 1800, 4, 30), d1row("perp", 1.0)]},
    )
    c = ContingencyParams(min_delta_net_pct=0.01, min_delta_hedged_pct=0.02)
    r = model(ScenarioGrid.product((0.0,), (NONE,)), contingency=c).requirements(pf, mkt)

    def floor(longs: float, shorts: float) -> float:
        return (0.01 * abs(longs - shorts) + 0.02 * min(longs, shorts)) * 2000

    want = [floor(2 * nc, 3.0), floor(1.0, -4 * npu)]
    assert r.drivers["floor_charge_usd"].tolist() == pytest.approx(want, rel=1e-9)
    assert r.mm.tolist() == pytest.approx(want, rel=1e-9)  # no scenario loss: the floor is the risk


def test_min_charge_rates_by_kind_and_the_larger_floor_wins():
    # OKX MR7: raw = sum |qty| x spot x rate; delta-1 (perp, future) 0.3%, options 0.1%, spot rows 0
    # account 0: perp -3 (18), call 2 (4), spot 5 (0) -> raw 22, tier (10, inf] x2 -> 44
    # account 1: future 1 (6), put -1 (2) -> raw 8, tier [0, 10] x1 -> 8
    # with a min delta of 1% net also on: account 0 net 2 x N(...) ... at vol 0 the call (K 2500, OTM) has delta 0:
    #   net |0 - 3 + 5| = 2 -> 1% x 2 x 2000 = 40 < 44 -> 44; account 1: future +1, put K 1500 OTM delta 0:
    #   net 1 -> 20 > 8 -> 20
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    pf = book(
        {"positions": [d1row("perp", -3.0), opt("call", 2500, 2, 30), d1row("spot", 5.0)]},
        {
            "positions": [
                {"kind": "future", "underlying": "ETH", "qty": 1.0, "expiry_days": 30},
                opt("put", 1500, -1, 30),
            ]
        },
    )
    grid = ScenarioGrid.product((0.0,), (NONE,))
    tiers = ((10.0, 1.0), (math.inf, 2.0))
    mc = ContingencyParams(min_charge_delta1_rate=0.003, min_charge_option_rate=0.001, min_charge_tiers=tiers)
    r = model(grid, contingency=mc).requirements(pf, mkt)
    assert r.drivers["floor_charge_usd"].tolist() == pytest.approx([44.0, 8.0], rel=1e-12)
    both = ContingencyParams(
        min_charge_delta1_rate=0.003, min_charge_option_rate=0.001, min_charge_tiers=tiers, min_delta_net_pct=0.01
    )
    r2 = model(grid, contingency=both).requirements(pf, mkt)
    assert r2.drivers["floor_charge_usd"].tolist() == pytest.approx([44.0, 20.0], rel=1e-12)
    assert r2.mm.tolist() == pytest.approx([44.0, 20.0], rel=1e-12)


def test_floor_charge_of_a_coin_margined_account_is_in_coin():
    # perp -1 ETH, min delta 1% net: 20 USD = 0.01 ETH for a coin account (grid 0%: no loss)
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    pf = book({"currency": "ETH", "positions": [d1row("perp", -1.0)]}, {"positions": [d1row("perp", -1.0)]})
    c = ContingencyParams(min_delta_net_pct=0.01)
    r = model(ScenarioGrid.product((0.0,), (NONE,)), contingency=c).requirements(pf, mkt)
    assert r.drivers["native_mm"].tolist() == pytest.approx([0.01, 20.0], rel=1e-12)
    assert r.drivers["floor_charge_usd"].tolist() == pytest.approx([20.0, 20.0], rel=1e-12)
    assert r.mm.tolist() == pytest.approx([20.0, 20.0], rel=1e-12)


# ---------------------------------------------------------------- the model object
def test_model_name_and_per_underlying_defaults():
    p = ScenarioPMParams(name="base", grid=ScenarioGrid.product((0.0,), (NONE,)))
    assert ScenarioPM(p).name == "base" and ScenarioPM(p, name="other").name == "other"
    assert ScenarioPM(p).per_underlying == {} and ScenarioPM(p).params_for("ETH") is p
    q = ScenarioPMParams(name="btc", grid=ScenarioGrid.product((0.1,), (NONE,)))
    m = ScenarioPM(p, {"BTC": q})
    assert m.params_for("BTC") is q and m.params_for("ETH") is p
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    assert m.requirements(book({"positions": [d1row("perp", 1.0)]}), mkt).model == "base"


# ---------------------------------------------------------------- boundaries and ties
def test_confidence_at_the_threshold_adds_nothing():
    # the contingency applies when confidence < threshold (PMRMLib _getConfidenceContingency): at 0.6 exactly, none;
    # at 0.59 an option (gross 1) and a perp of 1 each pay (1 - 0.59) x 0.5 x 2000 = 410
    c = ContingencyParams(conf_threshold=0.6, conf_margin=0.5)
    pf = book({"positions": [opt("call", 2000, 1, 30), d1row("perp", 1.0)]})
    grid = ScenarioGrid.product((0.0,), (NONE,))
    for conf, want in ((0.6, 0.0), (0.59, 820.0)):
        mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, confidence={"ETH": conf})
        r = model(grid, contingency=c).requirements(pf, mkt)
        assert r.drivers["confidence_usd"][0] == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_a_loss_under_one_dollar_still_names_its_scenario():
    # perp +0.001 ETH: -10% loses 0.2 USD (index 0); an empty account has no worst scenario (-1)
    pf = book({"positions": [d1row("perp", 0.001)]}, {"positions": []})
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    r = model(ScenarioGrid.product((-0.1, 0.1), (NONE,))).requirements(pf, mkt)
    assert r.drivers["worst_scenario"].tolist() == [0, -1]
    assert r.mm.tolist() == pytest.approx([0.2, 0.0], rel=1e-12)
    assert r.currency == ()  # every account margined in USD


def test_a_basis_floor_equal_to_the_worst_scenario_keeps_the_scenario_index():
    # vol 0, short call K 2000: grid +5% -> -100; basis up x1.05 -> -100 x (1 + 0 x T) = -100, the same float:
    # the grid scenario (index 0) is named, not the basis floor (index 1)
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    c = ContingencyParams(basis_up=1.05, basis_add=1.0)
    pf = book({"positions": [opt("call", 2000, -1, 30)]})
    r = model(ScenarioGrid.product((0.05,), (NONE,)), contingency=c).requirements(pf, mkt)
    assert r.drivers["basis_usd"][0] == r.drivers["worst_loss_usd"][0] == pytest.approx(100.0, rel=1e-12)
    assert r.drivers["worst_scenario"].tolist() == [0]


def test_equal_losses_in_two_underlyings_keep_the_first_underlyings_scenario():
    # ETH perp -1 at 2000 loses 200 at +10% (index 1); BTC perp +0.1 at 20,000 loses 200 at -10% (index 0):
    # the later underlying replaces the named scenario only with a larger loss
    mkt = MarketState(spot={"ETH": 2000.0, "BTC": 20_000.0}, vol={"ETH": 0.0, "BTC": 0.0})
    pf = book({"positions": [d1row("perp", -1.0), d1row("perp", 0.1, "BTC")]})
    r = model(ScenarioGrid.product((-0.1, 0.1), (NONE,))).requirements(pf, mkt)
    assert r.drivers["worst_loss_usd"][0] == pytest.approx(400.0, rel=1e-12)
    assert r.drivers["worst_scenario"].tolist() == [1]


# ---------------------------------------------------------------- equity parts, static contingencies, exact mode
def test_static_contingencies_and_equity_parts_add_up_by_hand():
    # vol 0, grid -10% / +10%. Short put K 1800 (worth 0 at both moves: no option PnL), perp -1 entered at 2100
    # with 7.5 USD unsettled funding, 1000 DAI collateral (not risk-cancelling, price 1, stable 1).
    # loss: perp at +10% -> 200. Static MM: naked 1 x 2000 x 1% = 20, perp 1 x 2000 x 2% = 40, DAI 0.5% = 5 -> 65;
    # static IM on top: 2% naked 40, 3% perp 60, DAI 1% 10 -> 110. MM 200 + 65 = 265; IM 265 + 110 = 375.
    # equity: delta-1 -1 x (2000 - 2100) = 100, funding 7.5, collateral 1000, options 0, cash 50 -> 1157.5
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, collateral_price={"DAI": 1.0})
    c = ContingencyParams(option_pct_mm=0.01, option_pct_im=0.02, perp_pct_mm=0.02, perp_pct_im=0.03)
    m = model(
        ScenarioGrid.product((-0.1, 0.1), (NONE,)),
        contingency=c,
        collaterals={"DAI": CollateralParams(False, 0.005, 0.01)},
    )
    perp = {"kind": "perp", "underlying": "ETH", "qty": -1.0, "entry_price": 2100.0, "funding": 7.5}
    dai = {"kind": "collateral", "underlying": "ETH", "asset": "DAI", "qty": 1000.0}
    r = m.requirements(book({"cash": 50.0, "positions": [opt("put", 1800, -1, 30), perp, dai]}), mkt)
    d = r.drivers
    assert (d["naked_short_usd"][0], d["perp_base_usd"][0], d["collateral_haircut_usd"][0]) == pytest.approx(
        (20.0, 40.0, 5.0), rel=1e-12
    )
    assert (d["naked_short_im_usd"][0], d["perp_base_im_usd"][0], d["collateral_haircut_im_usd"][0]) == pytest.approx(
        (40.0, 60.0, 10.0), rel=1e-12
    )
    assert d["contingency_static_mm_usd"][0] == pytest.approx(65.0, rel=1e-12)
    assert (r.mm[0], r.im[0]) == pytest.approx((265.0, 375.0), rel=1e-12)
    parts = {k: float(v[0]) for k, v in r.equity_parts.items()}
    assert parts == pytest.approx(
        {"cash": 50.0, "options": 0.0, "delta1": 100.0, "collateral": 1000.0, "funding": 7.5}, abs=1e-9
    )
    assert r.equity[0] == pytest.approx(1157.5, rel=1e-12)
    assert d["native_margin_mm"][0] == pytest.approx(1157.5 - 265.0, rel=1e-12)
    assert d["native_margin_im"][0] == pytest.approx(1157.5 - 375.0, rel=1e-12)


def test_exact_mode_reports_every_figure_in_wei():
    # short 1 perp, +10%: loss 200; MM factor 1, IM factor 1.5 -> 300; cash 1000: margins 800 and 700
    pf = book({"cash": 1000.0, "positions": [d1row("perp", -1.0)]})
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    r = model(ScenarioGrid.product((0.1,), (NONE,)), im_factor=1.5, exact=True).requirements(pf, mkt)
    e = 10**18
    assert r.exact == {
        "im": (300 * e,),
        "mm": (200 * e,),
        "equity": (1000 * e,),
        "native_margin_mm": (800 * e,),
        "native_margin_im": (700 * e,),
    }
    assert (r.mm[0], r.im[0], r.equity[0]) == (200.0, 300.0, 1000.0)
    assert (r.drivers["native_margin_mm"][0], r.drivers["native_margin_im"][0]) == (800.0, 700.0)


def test_coin_margined_option_on_a_forward_with_a_fixed_part():
    # Derive settlement window: 900 s before expiry, F 2000 = 1000 fixed + 1000 variable; vol 0, long call K 1900.
    # USD: now 100, +10%: F' = 1100 + 1000 = 2100 -> 200, -10%: 1900 -> 0. In coin, value / F':
    # now 100/2000 = 0.05; +10%: 200/2100 = 0.0952381 -> +0.0452381; -10%: 0 -> -0.05
    curve = ForwardCurve.with_settlement_window((900.0,), (2000.0,))
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, forwards={"ETH": curve})
    call = {"kind": "call", "underlying": "ETH", "strike": 1900.0, "qty": 1.0, "expiry_s": 900.0}
    pf = book({"currency": "ETH", "positions": [call]}, {"positions": [call]})
    pnl = model(ScenarioGrid.product((-0.1, 0.1), (NONE,))).scenario_pnl(pf, mkt, "ETH")
    np.testing.assert_allclose(pnl[:, 0], [-0.05, 200 / 2100 - 0.05], rtol=1e-12)
    np.testing.assert_allclose(pnl[:, 1], [-100.0, 100.0], rtol=1e-12)


# ---------------------------------------------------------------- prices at and near zero
def test_a_coin_priced_under_one_dollar_is_still_counted_in_coin():
    # spot 0.5 USD, vol 0; coin account with 1 USD cash (2 coins) and a short call K 0.4 (-0.1 USD = -0.2 coin now);
    # grid -10% / +10%, naked shorts 1% of spot:
    #   +10%: call -0.15 USD / 0.55 -> PnL -0.15/0.55 + 0.2; cash 1/0.55 - 2
    #   -10%: call -0.05 USD / 0.45 -> PnL -0.05/0.45 + 0.2; cash 1/0.45 - 2
    # naked 1 x 0.5 x 1% = 0.005 USD = 0.01 coin; equity 2 - 0.2 = 1.8 coin = 0.9 USD
    mkt = MarketState(spot={"ETH": 0.5}, vol={"ETH": 0.0})
    pf = book({"cash": 1.0, "currency": "ETH", "positions": [opt("call", 0.4, -1, 30)]})
    m = model(ScenarioGrid.product((-0.1, 0.1), (NONE,)), contingency=ContingencyParams(option_pct_mm=0.01))
    dn = -0.05 / 0.45 + 0.2 + 1 / 0.45 - 2
    up = -0.15 / 0.55 + 0.2 + 1 / 0.55 - 2
    np.testing.assert_allclose(m.scenario_pnl(pf, mkt, "ETH")[:, 0], [dn, up], rtol=1e-9)
    r = m.requirements(pf, mkt)
    assert r.drivers["native_mm"][0] == pytest.approx(-up + 0.01, rel=1e-9)
    assert r.drivers["native_equity"][0] == pytest.approx(1.8, rel=1e-12)
    assert r.equity_parts["cash"][0] == pytest.approx(2.0, rel=1e-12)
    assert (r.mm[0], r.equity[0]) == pytest.approx(((-up + 0.01) * 0.5, 0.9), rel=1e-9)


def test_a_worthless_underlying_has_finite_margin():
    # spot 0: a long put K 100 is worth 100 in every scenario (F' = 0), a perp of 2 opened at the mark 0 is worth 0;
    # no loss, no contingency (1% of a 0 notional), no floor: MM = IM = 0, equity 10 cash + 100
    mkt = MarketState(spot={"ETH": 0.0}, vol={"ETH": 0.5})
    pf = book({"cash": 10.0, "positions": [opt("put", 100, 1, 30), d1row("perp", 2.0)]})
    c = ContingencyParams(perp_pct_mm=0.01, perp_pct_im=0.01)
    r = model(ScenarioGrid.product((-0.1, 0.1), (NONE,)), contingency=c).requirements(pf, mkt)
    assert (r.mm[0], r.im[0], r.equity[0]) == (0.0, 0.0, 110.0)
    assert r.drivers["floor_charge_usd"][0] == 0.0 and r.drivers["perp_base_usd"][0] == 0.0


def test_a_zero_forward_refuses_a_coin_account_and_leaves_a_usd_account_as_it_was():
    # a forward feed of 0 (allowed: ForwardCurve forward >= 0) at the put's expiry: F' = 0 in every scenario. In USD
    # the put is worth its strike now and in every scenario (PnL 0); in coin it would be 100 / 0: refused, naming
    # the forward, the expiry, the account and what is allowed
    curve = ForwardCurve((30 * 86_400.0,), (0.0,))
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5}, forwards={"ETH": curve})
    put = opt("put", 100, 1, 30)
    m = model(ScenarioGrid.product((-0.1, 0.1), (NONE,)))
    usd = book({"positions": [put]}, {"positions": [put]})
    assert m.scenario_pnl(usd, mkt, "ETH").tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert (m.requirements(usd, mkt).mm.tolist(), m.requirements(usd, mkt).equity.tolist()) == ([0, 0], [100, 100])
    coin = book({"positions": [put]}, {"currency": "ETH", "positions": [put]})
    msg = (
        "forward of ETH at expiry 2.592e+06 s = 0.0 USD (MarketState.forwards['ETH']) takes ETH to a forward of 0 "
        "in every scenario for account 1 (numeraire ETH), which holds an option or future of that expiry: "
        "coin-margined portfolios need ETH's spot and every scenario forward > 0 (moves > -100%)"
    )
    for call in (lambda: m.scenario_pnl(coin, mkt, "ETH"), lambda: m.requirements(coin, mkt)):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == msg
    fut = {"kind": "future", "underlying": "ETH", "qty": 1.0, "expiry_days": 30}
    with pytest.raises(ValueError, match=r"at expiry 2.592e\+06 s = 0.0 USD .* for account 0 \(numeraire ETH\)"):
        m.requirements(book({"currency": "ETH", "positions": [fut]}), mkt)


def test_only_the_options_and_futures_a_coin_account_holds_need_a_forward():
    # forward 0 at 10 days, 2000 at 30 days: a coin account's 30-day call (F 2000) and its perp (read off the curve
    # at T = 0, flat before the first node: F 0, but a perp is marked at the perp price) are valued as before;
    # vol 0, call K 1900 worth 100 USD = 0.05 ETH; perp of 1 opened at the mark: 0
    curve = ForwardCurve((10 * 86_400.0, 30 * 86_400.0), (0.0, 2000.0))
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, forwards={"ETH": curve})
    pf = book({"currency": "ETH", "positions": [opt("call", 1900, 1, 30), d1row("perp", 1.0)]})
    r = model(ScenarioGrid.product((-0.1, 0.1), (NONE,))).requirements(pf, mkt)
    assert r.drivers["native_equity"][0] == pytest.approx(0.05, rel=1e-12)


def test_a_coin_account_at_spot_0_is_refused_with_what_is_allowed():
    # ETH at 0 USD: a coin account margined in ETH (here: 10 USD cash, worth 10 / 0 ETH) has no finite value in ETH;
    # a USD account at the same prices and grid is valued as before (the worthless-underlying test above), and so
    # is a coin account margined in BTC
    mkt = MarketState(spot={"ETH": 0.0, "BTC": 60_000.0}, vol={"ETH": 0.5, "BTC": 0.5})
    m = model(ScenarioGrid.product((-0.1, 0.1), (NONE,)))
    with pytest.raises(ValueError) as err:
        m.requirements(book({"positions": []}, {"cash": 10.0, "currency": "ETH", "positions": []}), mkt)
    assert str(err.value) == (
        "spot['ETH']=0.0 USD takes ETH to a price of 0 for coin-margined accounts (numeraire ETH), which have no "
        "finite value in ETH there: coin-margined portfolios need ETH's spot and every scenario forward > 0 "
        "(moves > -100%)"
    )
    # BTC-margined: 60,000 USD cash = 1 BTC, a BTC perp of 1 at the mark; the ETH put (USD account) is worth 100
    pf = book({"positions": [opt("put", 100, 1, 30)]}, {"cash": 60_000.0, "currency": "BTC", "positions": []})
    r = m.requirements(pf, mkt)
    assert (r.equity.tolist(), r.drivers["native_equity"].tolist()) == ([100.0, 60_000.0], [100.0, 1.0])


def test_the_grid_refuses_a_move_of_minus_100_percent():
    # a spot multiplier of 0 (move -100%) would take every coin's price to 0: ScenarioGrid refuses it for every book
    with pytest.raises(ValueError, match=r"spot\[1\]=0\.0: allowed \[1e-09, 1000000\.0\]"):
        ScenarioGrid.product((-0.5, -1.0), (NONE,))


def test_coin_margined_cash_is_dampened_like_every_scenario_pnl():
    # coin account holding 1000 USD cash (0.5 ETH at 2000), grid -20% / +25% at dampening 0.5:
    # -20%: (1000/1600 - 0.5) x 0.5 = +0.0625 ETH; +25%: (1000/2500 - 0.5) x 0.5 = -0.05 ETH -> MM 0.05 ETH = 100 USD
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    pf = book({"cash": 1000.0, "currency": "ETH", "positions": []})
    m = model(ScenarioGrid.product((-0.2, 0.25), (NONE,), dampening=0.5))
    np.testing.assert_allclose(m.scenario_pnl(pf, mkt, "ETH")[:, 0], [0.0625, -0.05], rtol=1e-12)
    r = m.requirements(pf, mkt)
    assert (r.drivers["native_mm"][0], r.mm[0], r.equity[0]) == pytest.approx((0.05, 100.0, 1000.0), rel=1e-12)


def test_skew_scenarios_of_a_coin_priced_under_one_dollar_use_ln_k_over_f():
    # Derive PM2 skew (PMRMLib_2 _getExpirySkewedShockedMTM) with the default SkewShockParams, spot 0.5, vol 0.8,
    # rate 0, long 1 call K 0.4, 30 d: sqrt(T) = 0.28669; cap = -0.1 sqrt(T) + 0.25 = 0.22133; kStar =
    # max(0.01, sqrt(T) x 4 x 0.6) = 0.68806; k = ln(0.4/0.5) = -0.22314 -> Linear x (1 + k cap/kStar) = 0.92822,
    # Abs x (1 + |k| cap/kStar) = 1.07178; each scenario counts -|V(shocked vol) - V(now)|
    mkt = MarketState(spot={"ETH": 0.5}, vol={"ETH": 0.8})
    grid = ScenarioGrid((1.0, 1.0), (LINEAR, ABS), (1.0, 1.0), (False, False))
    pf = book({"positions": [opt("call", 0.4, 1, 30)]})
    t = 30 / YEAR_DAYS
    cap = -0.1 * math.sqrt(t) + 0.25
    k_star = max(0.01, math.sqrt(t) * 4 * 0.6)
    k = math.log(0.4 / 0.5)
    v0 = b76(0.5, 0.4, t, 0.8, True)
    want = [-abs(b76(0.5, 0.4, t, 0.8 * (1 + max(-cap, k * cap / k_star)), True) - v0)]
    want.append(-abs(b76(0.5, 0.4, t, 0.8 * (1 + min(cap, abs(k) * cap / k_star)), True) - v0))
    got = model(grid, skew=SkewShockParams()).scenario_pnl(pf, mkt, "ETH")[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert want[0] < 0 and want[1] < 0
    # a grid of the Abs scenario alone
    abs_only = model(ScenarioGrid((1.0,), (ABS,), (1.0,), (False,)), skew=SkewShockParams())
    assert abs_only.scenario_pnl(pf, mkt, "ETH")[0, 0] == pytest.approx(want[1], rel=1e-9)


def test_basis_floor_of_a_coin_margined_account_is_in_coin():
    # vol 0.5, rate 0, short 1 call K 2000, 30 d, basis up x1.05 / down x0.95 (add 1, mult 0), a grid with only an
    # unshocked Up scenario (no vol range): the basis prices at the unshocked vol. Up: USD -(C(2100) - C(2000)),
    # in coin -C(2100)/2100 + C(2000)/2000 (each value over its own forward); down is a gain in both
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5})
    c = ContingencyParams(basis_up=1.05, basis_down=0.95, basis_add=1.0)
    call = opt("call", 2000, -1, 30)
    # a third account, short 1 put K 2000: its loss is the down shock, P(1900) - P(2000)
    pf = book(
        {"currency": "ETH", "positions": [call]}, {"positions": [call]}, {"positions": [opt("put", 2000, -1, 30)]}
    )
    r = model(ScenarioGrid.product((0.0,), (UP,)), contingency=c).requirements(pf, mkt)
    t = 30 / YEAR_DAYS
    c_up, c0 = b76(2100, 2000, t, 0.5, True), b76(2000, 2000, t, 0.5, True)
    p_dn, p0 = b76(1900, 2000, t, 0.5, False), b76(2000, 2000, t, 0.5, False)
    coin = c_up / 2100 - c0 / 2000
    assert r.drivers["native_mm"].tolist() == pytest.approx([coin, c_up - c0, p_dn - p0], rel=1e-9)
    assert r.drivers["basis_usd"].tolist() == pytest.approx([coin * 2000, c_up - c0, p_dn - p0], rel=1e-9)


def test_contingencies_of_a_coin_margined_account_are_in_coin():
    # coin account: perp -1 ETH and 1000 DAI collateral (haircuts 1% MM, 2% IM; not risk-cancelling); spot 2000 with
    # confidence 0.5 < 0.6 (margin 0.5); grid 0% only: no loss. In USD: perp 1% 20 MM, 2% 40 IM; DAI 10 MM, 20 IM;
    # roll 2000 x 0.5% = 10; confidence (1 - 0.5) x 0.5 x 2000 = 500 (perp) + 0.25 x 1000 = 250 (DAI, min(1, 0.5))
    # in coin (/ 2000): MM = roll 0.005 + 0.01 + 0.005 = 0.02; IM = 0.02 + 0.02 + 0.01 + 0.375 = 0.425
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, confidence={"ETH": 0.5}, collateral_price={"DAI": 1.0})
    c = ContingencyParams(perp_pct_mm=0.01, perp_pct_im=0.02, conf_threshold=0.6, conf_margin=0.5, roll_min_move=0.005)
    m = model(
        ScenarioGrid.product((0.0,), (NONE,)), contingency=c, collaterals={"DAI": CollateralParams(False, 0.01, 0.02)}
    )
    dai = {"kind": "collateral", "underlying": "ETH", "asset": "DAI", "qty": 1000.0}
    r = m.requirements(book({"currency": "ETH", "positions": [d1row("perp", -1.0), dai]}), mkt)
    d = r.drivers
    assert (d["native_mm"][0], d["native_im"][0]) == pytest.approx((0.02, 0.425), rel=1e-12)
    assert (r.mm[0], r.im[0]) == pytest.approx((40.0, 850.0), rel=1e-12)
    got = [
        d[k][0] for k in ("perp_base_usd", "perp_base_im_usd", "collateral_haircut_usd", "collateral_haircut_im_usd")
    ]
    assert got == pytest.approx([20.0, 40.0, 10.0, 20.0], rel=1e-12)
    assert (d["roll_usd"][0], d["confidence_usd"][0]) == pytest.approx((10.0, 750.0), rel=1e-12)


def test_each_floor_charge_applies_on_its_own():
    # perp -3 and 2 calls K 2500 (vol 0: delta 0); only the option minimum charge: 2 x 2000 x 0.1% = 4;
    # only the hedged min delta (longs 0, shorts 3): min(0, 3) = 0 -> 0; with a spot +1 (longs 1): 2% x 1 x 2000 = 40
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})
    grid = ScenarioGrid.product((0.0,), (NONE,))
    pf = book({"positions": [d1row("perp", -3.0), opt("call", 2500, 2, 30), d1row("spot", 1.0)]})
    r = model(grid, contingency=ContingencyParams(min_charge_option_rate=0.001)).requirements(pf, mkt)
    assert r.drivers["floor_charge_usd"][0] == pytest.approx(4.0, rel=1e-12)
    r = model(grid, contingency=ContingencyParams(min_delta_hedged_pct=0.02)).requirements(pf, mkt)
    assert r.drivers["floor_charge_usd"][0] == pytest.approx(40.0, rel=1e-12)


class _TermSmileSurface:
    """Independent test surface: vol = 0.4 + 0.3 x T (years, 365 d) + 0.5 x |ln(K/F)|, so a vol looked up at the
    wrong expiry or off the wrong forward differs."""

    def vol(self, strike: np.ndarray, expiry_s: np.ndarray, forward: np.ndarray) -> np.ndarray:
        t = np.asarray(expiry_s, dtype=np.float64) / (YEAR_DAYS * 86_400.0)
        return 0.4 + 0.3 * t + 0.5 * np.abs(np.log(np.asarray(strike) / np.asarray(forward)))


def test_min_delta_floor_reads_the_vol_at_each_option_expiry_and_forward():
    # spot 2000, rate 5%; account 0 long 1 call K 2200 at 73 d (T = 0.2), account 1 short 2 puts K 1800 at 146 d
    # (T = 0.4). F = 2000 e^{0.05 T}, D = e^{-0.05 T}; sigma from the surface at (K, T, F):
    #   call: F = 2020.1003, ln(2200/F) = 0.085310, sigma = 0.4 + 0.06 + 0.042655 = 0.502655
    #   put:  F = 2040.4027, ln(1800/F) = -0.125361, sigma = 0.4 + 0.12 + 0.062680 = 0.582680
    # spot delta = dV/dF x F/S: call D N(d1) F/S, put D (N(d1) - 1) F/S; floor = 1% x |net delta| x 2000 (one side
    # per account, so the hedged part is 0)
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": _TermSmileSurface()}, rate={"ETH": 0.05})
    pf = book({"positions": [opt("call", 2200, 1, 73)]}, {"positions": [opt("put", 1800, -2, 146)]})
    c = ContingencyParams(min_delta_net_pct=0.01)
    r = model(ScenarioGrid.product((0.0,), (NONE,)), contingency=c).requirements(pf, mkt)

    def floor(k: float, t: float, qty: float, call: bool, sigma: float | None = None, f_vol: float | None = None):
        f, d = 2000.0 * math.exp(0.05 * t), math.exp(-0.05 * t)
        sigma = sigma if sigma is not None else 0.4 + 0.3 * t + 0.5 * abs(math.log(k / (f_vol or f)))
        sd = sigma * math.sqrt(t)
        nd1 = n_cdf((math.log(f / k) + 0.5 * sd * sd) / sd)
        delta = qty * d * (nd1 if call else nd1 - 1.0) * f / 2000.0
        return 0.01 * abs(delta) * 2000.0

    want = [floor(2200, 0.2, 1, True), floor(1800, 0.4, -2, False)]
    assert 0.4 + 0.06 + 0.5 * math.log(2200 / (2000 * math.exp(0.01))) == pytest.approx(0.502655, abs=1e-6)
    assert 0.4 + 0.12 + 0.5 * abs(math.log(1800 / (2000 * math.exp(0.02)))) == pytest.approx(0.582680, abs=1e-6)
    assert r.drivers["floor_charge_usd"].tolist() == pytest.approx(want, rel=1e-9)
    # the test tells the lookups apart: the vol at expiry 0 or at the spot instead of the forward moves each floor
    at_t0 = [floor(2200, 0.2, 1, True, sigma=0.4 + 0.5 * math.log(2200 / 2000 / math.exp(0.01)))]
    at_spot = [floor(2200, 0.2, 1, True, f_vol=2000.0)]
    assert abs(at_t0[0] - want[0]) > 1e-3 * want[0] and abs(at_spot[0] - want[0]) > 1e-3 * want[0]


# ---------------------------------------------------------------- one model over a sequence of books (groupings kept)
# each book differs from the one before in one thing only: which account holds a leg (A -> B), a leg's expiry
# (B -> C), a leg's strike (B -> D); naked shorts per (account, expiry, strike), calls and puts pooled, x 2000 x 1%
SEQ_BOOKS = {
    "A": ({"positions": [opt("call", 2000, -1, 7)]}, {"positions": [opt("call", 2000, 1, 7)]}),  # naked 1 | 0
    "B": ({"positions": [opt("call", 2000, -1, 7), opt("call", 2000, 1, 7)]}, {"positions": []}),  # net 0
    "C": ({"positions": [opt("call", 2000, -1, 7), opt("call", 2000, 1, 60)]}, {"positions": []}),  # naked 1 (7 d)
    "D": ({"positions": [opt("call", 2000, -1, 7), opt("call", 2100, 1, 7)]}, {"positions": []}),  # naked 1 (K 2000)
}
SEQ_NAKED_USD = {"A": [20.0, 0.0], "B": [0.0, 0.0], "C": [20.0, 0.0], "D": [20.0, 0.0]}


def test_one_model_over_books_that_differ_in_account_expiry_or_strike_groups_each_book_afresh():
    m = model(GRID4, vol_shock=SHOCK, discount=DISC, discount_option_prices=True, contingency=ContingencyParams(0.01))
    assert m.params.contingency.option_pct_mm == 0.01
    for name in ("A", "B", "C", "B", "D", "A", "C"):
        accounts = SEQ_BOOKS[name]
        want, mtm = _reference_option_pnl(accounts, GRID4)
        r = m.requirements(book(*accounts), VOL_MKT)
        np.testing.assert_allclose(m.scenario_pnl(book(*accounts), VOL_MKT, "ETH"), want, rtol=1e-9, atol=1e-7)
        np.testing.assert_allclose(r.equity_parts["options"], mtm, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(r.drivers["naked_short_usd"], SEQ_NAKED_USD[name], rtol=1e-12, atol=1e-12)


def test_a_model_keeps_the_groupings_of_its_four_latest_books():
    m = model(GRID4)
    for name in ("A", "B", "C", "D", "A"):
        m.requirements(book(*SEQ_BOOKS[name]), VOL_MKT)
    assert len(m._groups) == 4  # A, B, C, D (the second A is found, nothing added)
    m.requirements(book({"positions": [opt("put", 1500, -2, 30)]}), VOL_MKT)
    assert len(m._groups) == 4


def test_option_groups_by_hand_and_equal_arrays_reuse_the_first_calls_groups():
    from defistress.protocols.margin.scenario_pm import _option_groups

    day = 86_400.0
    acct, ts, k = np.array([0, 1, 0]), np.array([7 * day, 7 * day, 30 * day]), np.array([2000.0, 2000.0, 2100.0])
    cache: dict = {}
    got = _option_groups(cache, acct, ts, k)
    # (account, expiry) groups in key order: (0, 7 d), (0, 30 d), (1, 7 d); buckets add the strike inside each group
    assert got.grp.tolist() == [0, 2, 1] and got.g_acct.tolist() == [0, 0, 1] and got.first.tolist() == [0, 2, 1]
    assert got.sk.tolist() == [0, 2, 1] and got.sk_acct.tolist() == [0, 0, 1]
    assert _option_groups(cache, acct.copy(), ts.copy(), k.copy()) is got  # equal bits: the kept groups
    assert len(cache) == 1


def test_option_groups_of_the_same_book_a_block_later_are_reused_only_where_they_hold():
    """Expiries are seconds from now: a block later every one is smaller by the same dt, the bytes differ but the
    groups hold and are reused (same object); where an expiry reaches 0 and merges with another, an account's
    expiries change order, or a bucket's strikes split, the groups are computed afresh and equal a fresh
    computation."""
    from defistress.protocols.margin.scenario_pm import _groups_hold, _new_option_groups, _option_groups

    day = 86_400.0
    acct = np.array([0, 1, 0, 0, 1])
    ts = np.array([7 * day, 7 * day, 30 * day, 7 * day, 30 * day])
    k = np.array([2000.0, 2000.0, 2100.0, 2000.0, 1900.0])
    cache: dict = {}
    got = _option_groups(cache, acct, ts, k)
    # groups (0, 7 d), (0, 30 d), (1, 7 d), (1, 30 d); options 0 and 3 share group 0 and bucket 0 (same strike)
    assert got.grp.tolist() == [0, 2, 1, 0, 3] and got.first.tolist() == [0, 2, 1, 4]
    assert got.sk.tolist() == [0, 2, 1, 0, 3] and got.sk_first.tolist() == [0, 2, 1, 4]
    later = _option_groups(cache, acct, ts - 12.0, k)
    assert later is got and len(cache) == 2  # kept under the new bytes too
    assert _groups_hold(got, acct, ts - 12.0, k)

    def fresh_differs(a, t, kk):
        assert not _groups_hold(got, a, t, kk)
        want = _new_option_groups(a, t, kk)
        out = _option_groups({"kept": got}, a, t, kk)
        for f in ("grp", "g_acct", "first", "sk", "sk_acct", "sk_first"):
            assert np.array_equal(getattr(out, f), getattr(want, f)), f
        return out

    merged = fresh_differs(acct, np.maximum(ts - 7 * day, 0.0) * np.array([1, 1, 1, 1, 0]), k)
    assert merged.grp.tolist() == [0, 2, 1, 0, 2]  # account 1's two expiries (0 s and 0 s) merged
    swapped = fresh_differs(acct, np.array([40 * day, 7 * day, 30 * day, 40 * day, 30 * day]), k)
    assert swapped.grp.tolist() == [1, 2, 0, 1, 3]  # account 0's expiries now in the other order
    split = fresh_differs(acct, ts, np.array([2000.0, 2000.0, 2100.0, 2050.0, 1900.0]))
    assert split.sk.tolist() == [0, 3, 2, 1, 4]  # options 0 and 3: one group, two buckets
    moved = fresh_differs(np.array([0, 1, 0, 1, 1]), ts, k)  # option 3 moved to account 1
    assert moved.grp.tolist() == [0, 2, 1, 2, 3]
    assert not _groups_hold(got, acct[:4], ts[:4], k[:4])  # another book size


def test_option_groups_hold_close_expiries_and_strikes_and_refuse_reordered_or_merged_strikes():
    """An account's two expiries 0.5 s apart and a group's two strikes 0.5 USD apart still hold a block later;
    strikes that swap order inside a group, or become equal, get the groups computed afresh."""
    from defistress.protocols.margin.scenario_pm import _groups_hold, _new_option_groups, _option_groups

    day = 86_400.0
    acct = np.array([0, 0, 0, 1])
    ts = np.array([7 * day, 7 * day + 0.5, 7 * day, 30 * day])
    k = np.array([2000.0, 2000.0, 2000.5, 1900.0])
    cache: dict = {}
    got = _option_groups(cache, acct, ts, k)
    # groups (0, 7 d), (0, 7 d + 0.5 s), (1, 30 d); buckets (g0, 2000), (g0, 2000.5), (g1, 2000), (g2, 1900)
    assert got.grp.tolist() == [0, 1, 0, 2] and got.sk.tolist() == [0, 2, 1, 3]
    assert _option_groups(cache, acct, ts - 12.0, k) is got
    for k2, sk in (([2000.5, 2000.0, 2000.0, 1900.0], [1, 2, 0, 3]), ([2000.0, 2000.0, 2000.0, 1900.0], [0, 1, 0, 2])):
        k2 = np.array(k2)  # swapped strikes in group 0; equal strikes in group 0 (one bucket)
        assert not _groups_hold(got, acct, ts, k2)
        out = _option_groups(cache, acct, ts, k2)
        assert out.sk.tolist() == sk and np.array_equal(out.sk, _new_option_groups(acct, ts, k2).sk)
