"""Published PM presets: Lyra PMRM hand check, golden cases per preset, hedges, the PM2 discount caution."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.presets_pm import DERIVE_PM2, DERIVE_PM2_GOLDEN, PRESETS
from defistress.protocols.margin.scenario_params import ABS, DOWN, LINEAR, UP
from defistress.protocols.margin.scenario_pm import ScenarioPM

DAY = 86_400.0
MKT0 = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0})  # rate 0, F = S, vol 0: options at intrinsic
PM_PRESETS = [
    "lyra-pmrm-v1",
    "lyra-pmrm-v1-test",
    "derive-pm2",
    "derive-pm2-golden",
    "deribit-pm",
    "deribit-pm-btc",
    "deribit-pm-eth",
    "paradex-pm",
    "okx-pm",
]


def book(*positions, cash=0.0, und="ETH"):
    return Portfolio.from_records(
        [{"name": "x", "cash": cash, "positions": [dict(p, underlying=p.get("underlying", und)) for p in positions]}]
    )


SHORT2PERP = {"kind": "perp", "qty": -2.0}
SHORTPUT = {"kind": "put", "strike": 2200.0, "qty": -1.0, "expiry_days": 30}
SPOT1, PERP1S = {"kind": "spot", "qty": 1.0}, {"kind": "perp", "qty": -1.0}


def req(name, pf, mkt=MKT0, **kw):
    r = get_model(name, **kw).requirements(pf, mkt)
    return r.mm[0], r.im[0], r


def test_all_presets_are_registered_and_unknown_override_lists_allowed():
    from defistress.protocols.margin import registry

    for name in PM_PRESETS + ["cme-span"]:
        assert name in registry._FACTORIES and hasattr(get_model(name), "requirements")
    with pytest.raises(ValueError, match="allowed"):
        get_model("okx-pm", no_such_field=1.0)


def test_grids_have_the_published_sizes():
    # PMRM v1 mainnet 23, test 21; Derive PM2 33 (golden cases' default 31); Deribit 27 + 8 extended; Paradex 24;
    # OKX 7 MR1 + 2 MR6
    sizes = {n: PRESETS[n].grid.size for n in PRESETS}
    assert sizes == {
        "lyra-pmrm-v1": 23,
        "lyra-pmrm-v1-test": 21,
        "derive-pm2": 33,
        "derive-pm2-golden": 31,
        "deribit-pm-btc": 35,
        "deribit-pm-eth": 35,
        "paradex-pm": 24,
        "okx-pm": 9,
    }


def test_lyra_pmrm_hand_check_long_one_base():
    # docs/margin-methods.md 1.5: spot 2000, stable 1, perp 2001, rate 0.02, vol 0.5, test config with
    # rateAddScale 0.12, confMargin 0.4, base/perpPercent 0.025. Long 1 base: worst (-15%) -300, static 50:
    # MM = -350 + 2000 = 1650; IM = -350*1.3 + 2000 = 1545
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5}, rate={"ETH": 0.02}, perp_price={"ETH": 2001.0})
    mm, im, r = req(
        "lyra-pmrm-v1-test", book(SPOT1), mkt, long_rate_add=0.12, conf_margin=0.4, base_pct_mm=0.025, perp_pct_mm=0.025
    )
    assert r.drivers["native_margin_mm"][0] == pytest.approx(1650.0, abs=1e-9)
    assert r.drivers["native_margin_im"][0] == pytest.approx(1545.0, abs=1e-9)
    assert (mm, im) == (pytest.approx(350.0), pytest.approx(455.0))


# ---------------------------------------------------------------- Lyra PMRM v1 test config
def test_lyra_v1_test_naked_short_put():
    # K 2200, vol 0: now 200. worst -15%: F 1700, put 500 -> -300 (negatives not discounted in v1)
    # basis: 0.95 -> put 300 -> -100 x (0.25 + 0.01*30/365) = -25.08 > -300 (floor not binding)
    # static: 1 naked x 1% x 2000 = 20. MM = 320; IM = 1.3 * 320 = 416
    mm, im, r = req("lyra-pmrm-v1-test", book(SHORTPUT, cash=1000.0))
    assert (mm, im) == (pytest.approx(320.0), pytest.approx(416.0))
    assert r.equity[0] == pytest.approx(800.0)


def test_lyra_v1_test_covered_call():
    # long 1 base + short call K 2200 vol 0: +15% spot +300, call 100 -> +200; -15%: -300 (call 0) => -300
    # static base 2% x 2000 = 40 + 1 naked x 1% x 2000 = 20 => MM 360; IM 1.3 x 360 = 468
    mm, im, _ = req(
        "lyra-pmrm-v1-test", book(SPOT1, {"kind": "call", "strike": 2200.0, "qty": -1.0, "expiry_days": 30})
    )
    assert (mm, im) == (pytest.approx(360.0), pytest.approx(468.0))


# ---------------------------------------------------------------- Lyra PMRM v1 mainnet
def test_lyra_v1_mainnet_short_perps():
    # worst +20% Up: -2 x 2000 x 0.2 = -800; static 2 x 3% x 2000 = 120 => MM 920; IM 1.25 x 920 = 1150
    mm, im, _ = req("lyra-pmrm-v1", book(SHORT2PERP))
    assert (mm, im) == (pytest.approx(920.0), pytest.approx(1150.0))


def test_lyra_v1_mainnet_naked_put_and_depeg_and_confidence():
    # worst -20% Up: F 1600, put 600 -> -400; naked 1 x 2% x 2000 = 40 => MM 440; IM 1.25 x 440 = 550
    mm, im, _ = req("lyra-pmrm-v1", book(SHORTPUT))
    assert (mm, im) == (pytest.approx(440.0), pytest.approx(550.0))
    # stable 0.95 < 0.99: IM factor 1.25 + 0.04 x 4 = 1.41; conf 0.5 < 0.55: (1-0.5) x 1.0 x 1 x 2000 = 1000
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, stable_price=0.95, confidence={"ETH": 0.5})
    mm2, im2, _ = req("lyra-pmrm-v1", book(SHORTPUT), mkt)
    assert mm2 == pytest.approx(440.0)
    assert im2 == pytest.approx(1.41 * 440.0 + 1000.0)


def test_lyra_v1_mainnet_spot_perp_hedge():
    # perp mark = spot: PnL 0 in every scenario; static 3% x 2000 (base) + 3% x 2000 (perp) = 120; IM 150
    mm, im, _ = req("lyra-pmrm-v1", book(SPOT1, PERP1S))
    assert (mm, im) == (pytest.approx(120.0), pytest.approx(150.0))


# ---------------------------------------------------------------- Derive PM2
def test_derive_pm2_short_perps():
    # +18% Up: -2 x 2000 x 0.18 = -720; tails damp 0.1386/|move| give -2 x 2000 x 0.1386 = -554.4
    # MM = 0.8 x 720 + 3% x 4000 = 696; IM = 720 + 120 + 1% x 4000 = 880
    mm, im, _ = req("derive-pm2", book(SHORT2PERP))
    assert (mm, im) == (pytest.approx(696.0), pytest.approx(880.0))


def test_derive_pm2_naked_put_without_vol_floor():
    # min_vol_up 0 so vol 0 stays 0; rate 0. Mainnet script (as committed): negative expiry values x
    # min(1/D = 1, 0.95 e^{0.16 x 30/365}) = 0.9625757. -18% Up: F 1640, put 560: -560 x 0.9625757 + 200 = -339.0424;
    # tails -66%: (-1520 x 0.9625757 + 200) x 0.21 = -265.25; -33%: (-860 x .. + 200) x 0.42 = -263.68.
    # MM = 0.8 x 339.0424 + 0.3% x 2000 = 277.2339; IM = 339.0424 + 6 + 0.2% x 2000 = 349.0424
    # (correction: the former hybrid preset used the golden 1.04 here and gave 294 / 370)
    mm, im, _ = req("derive-pm2", book(SHORTPUT, cash=1000.0), min_vol_up=0.0)
    assert (mm, im) == (pytest.approx(277.2338951, rel=1e-9), pytest.approx(349.0423689, rel=1e-9))
    # golden-test defaults: short base 1.04, rate terms 0: neg = min(1, ...) = 1: -18%: -360; MM 0.8 x 360 + 6
    mm_g, im_g, _ = req("derive-pm2-golden", book(SHORTPUT, cash=1000.0), min_vol_up=0.0)
    assert (mm_g, im_g) == (pytest.approx(294.0), pytest.approx(370.0))


def test_derive_pm2_spot_perp_hedge():
    # base is risk-cancelling collateral: PnL 0. MM perp 3% x 2000 = 60; IM 60 + 1% x 2000 = 80
    mm, im, _ = req("derive-pm2", book(SPOT1, PERP1S))
    assert (mm, im) == (pytest.approx(60.0), pytest.approx(80.0))


def _reference_single_option_loss(p, kind, k, qty, days, s0, sigma, r):
    """Independent loop implementation of one option's scenario loss for a ScenarioPMParams (no contingency)."""
    t = days / 365.0
    f = s0 * math.exp(r * t)
    d = math.exp(-r * t) if p.discount_option_prices else 1.0

    def bs(fw, vol):
        if vol * math.sqrt(t) <= 0:
            c = max(fw - k, 0.0) * d
        else:
            d1 = (math.log(fw / k) + 0.5 * vol * vol * t) / (vol * math.sqrt(t))
            c = d * (fw * norm.cdf(d1) - k * norm.cdf(d1 - vol * math.sqrt(t)))
        return qty * (c if kind == "call" else c - d * (fw - k))

    ref = 30.0 / max(days, 1.0)
    pw = (
        p.vol_shock.short_term_power
        if (days <= 30 if p.vol_shock.short_term_inclusive else days < 30)
        else p.vol_shock.long_term_power
    )
    up = max(p.vol_shock.min_vol_up, sigma * (1 + p.vol_shock.range_up * ref**pw))
    down = sigma * max(0.0, 1 - p.vol_shock.range_down * ref**pw)
    pos = p.discount.long_base * math.exp(-t * (r * p.discount.long_rate_mult + p.discount.long_rate_add))
    neg = (
        1.0
        if p.discount.short_base is None
        else min(
            1 / d, p.discount.short_base / math.exp(-t * (r * p.discount.short_rate_mult + p.discount.short_rate_add))
        )
    )
    v0 = bs(f, sigma)
    worst = 0.0
    for m, vd, w, tail in zip(p.grid.spot, p.grid.vol, p.grid.dampening, p.grid.tail):
        if vd in (LINEAR, ABS):
            kk = math.log(k / f) if vd == LINEAR else abs(math.log(k / f))
            sk = p.skew
            cap = (sk.linear_c_base if vd == LINEAR else sk.abs_c_base) * math.sqrt(t) + sk.linear_base_cap
            vp = sk.vol_param_static + math.sqrt(t) * sk.vol_param_scale
            kstar = max(sk.min_k_star, math.sqrt(t) * sk.width_scale * vp)
            mult = 1 + (min(cap, kk * cap / kstar) if kk >= 0 else max(-cap, kk * cap / kstar))
            v = bs(f, sigma * max(mult, 0.0))
        else:
            v = bs(f * m, {UP: up, DOWN: down}.get(vd, sigma))
        pnl = ((v * pos if v >= 0 else v * neg) - v0) * w
        if vd in (LINEAR, ABS):
            pnl = -abs(pnl)
        if tail and p.extended_dampener_usd > 0 and pnl < 0:
            pnl = min(pnl + max(abs(m - 1) / p.extended_price_range - 1, 0) * p.extended_dampener_usd, 0.0)
        worst = min(worst, pnl)
    return -worst


@pytest.mark.parametrize(
    "preset,sigma,rate",
    [("derive-pm2", 0.6, 0.05), ("deribit-pm-eth", 0.7, 0.0), ("paradex-pm", 0.8, 0.0), ("lyra-pmrm-v1", 0.5, 0.03)],
)
def test_short_put_matches_independent_reference(preset, sigma, rate):
    p = dataclasses.replace(
        PRESETS[preset],
        contingency=dataclasses.replace(
            PRESETS[preset].contingency,
            basis_add=0.0,
            basis_mult=0.0,
            roll_min_move=0.0,
            min_delta_net_pct=0.0,
            min_delta_hedged_pct=0.0,
            option_pct_mm=0.0,
            option_pct_im=0.0,
        ),
    )
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": sigma}, rate={"ETH": rate})
    pf = book({"kind": "put", "strike": 1800.0, "qty": -2.0, "expiry_days": 10})
    loss = _reference_single_option_loss(p, "put", 1800.0, -2.0, 10, 2000.0, sigma, rate)
    r = ScenarioPM(p).requirements(pf, mkt)
    assert loss > 0
    assert r.mm[0] == pytest.approx(p.mm_factor * loss, rel=1e-9)


def test_derive_pm2_discount_caution_mainnet_script_is_lenient():
    # docs/margin-methods.md 2: golden cases use long 0.95 / short 1.04; the mainnet script as committed (short 0.95,
    # long 1.05) makes a short option GAIN in the unshocked scenario. Rate 5%, 30 d: 1/D = e^{0.05*30/365} = 1.0041181
    # golden neg = min(1.0041181, 1.04 e^{(0.5 x 0.05 + 0.08) 30/365} = 1.0490) -> shorts scaled up (loss)
    # mainnet neg = min(1.0041181, 0.95 e^{0.16 x 30/365} = 0.9625757) -> shorts scaled down (gain)
    assert DERIVE_PM2.discount.long_base == 1.05 and DERIVE_PM2.discount.short_base == 0.95
    assert DERIVE_PM2_GOLDEN.discount.long_base == 0.95 and DERIVE_PM2_GOLDEN.discount.short_base == 1.04
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6}, rate={"ETH": 0.05})
    pf = book({"kind": "put", "strike": 1900.0, "qty": -1.0, "expiry_days": 30})
    flat = 11  # grid index of (0% spot, vol None) in both contract-ordered grids
    for p in (DERIVE_PM2, DERIVE_PM2_GOLDEN):
        assert p.grid.spot[flat] == 1.0 and p.grid.vol[flat] == 0
    golden, mainnet = ScenarioPM(DERIVE_PM2_GOLDEN), ScenarioPM(DERIVE_PM2)
    assert golden.scenario_pnl(pf, mkt, "ETH")[flat, 0] < 0
    assert mainnet.scenario_pnl(pf, mkt, "ETH")[flat, 0] > 0
    assert golden.requirements(pf, mkt).mm[0] > mainnet.requirements(pf, mkt).mm[0]


# ---------------------------------------------------------------- Deribit
def test_deribit_eth_short_perps():
    # worst +18%: -2 x 2000 x 0.18 = -720 (extended cells clipped to +-18% then dampened to 0)
    # roll: 2 x 2000 x max(0.005, 0) = 20. IM = 740; MM = 0.8 x 740 = 592
    mm, im, _ = req("deribit-pm-eth", book(SHORT2PERP))
    assert (mm, im) == (pytest.approx(592.0), pytest.approx(740.0))


def test_deribit_spot_perp_hedge_and_btc_future_roll():
    # hedge: PnL 0; roll on the perp only: 2000 x 0.005 = 10 -> IM 10, MM 8
    mm, im, _ = req("deribit-pm-eth", book(SPOT1, PERP1S))
    assert (mm, im) == (pytest.approx(8.0), pytest.approx(10.0))
    # BTC: short 1 future 90 d at 60000: worst +16% = -9600; roll 60000 x max(0.01, 0.075 x 90/365) = 1109.589
    mkt = MarketState(spot={"BTC": 60000.0}, vol={"BTC": 0.5})
    mm, im, _ = req("deribit-pm", book({"kind": "future", "qty": -1.0, "expiry_days": 90}, und="BTC"), mkt)
    assert im == pytest.approx(9600.0 + 60000.0 * 0.075 * 90 / 365)
    assert mm == pytest.approx(0.8 * im)


# ---------------------------------------------------------------- Paradex
def test_paradex_short_perps_and_naked_put():
    # perps: +16% Up -640; tails 0.16/|m| also -640. min delta 2% x 2 x 2000 = 80 < 640. IM 640, MM 320
    mm, im, _ = req("paradex-pm", book(SHORT2PERP))
    assert (mm, im) == (pytest.approx(320.0), pytest.approx(640.0))
    # put K 2200 vol 0: -16%: put 520 -> -320; tail -66%: (-1520+200) x 0.16/0.66 = -320. IM 320, MM 160
    mm, im, _ = req("paradex-pm", book(SHORTPUT))
    assert (mm, im) == (pytest.approx(160.0), pytest.approx(320.0))


def test_paradex_hedge_pays_the_hedged_delta_floor():
    # SCAN 0; min delta: net 0, hedged 1 -> 1% x 2000 = 20 => IM 20, MM 10
    mm, im, _ = req("paradex-pm", book(SPOT1, PERP1S))
    assert (mm, im) == (pytest.approx(10.0), pytest.approx(20.0))


# ---------------------------------------------------------------- OKX
def test_okx_short_perps():
    # MR1 +12%: -480; MR6 +24%: -960; MR4 2 x 2000 x 0.6% = 24 => 984; MR7 0.3% x 4000 = 12 < 984
    mm, im, _ = req("okx-pm", book(SHORT2PERP))
    assert (mm, im) == (pytest.approx(984.0), pytest.approx(1.3 * 984.0))


def test_okx_spot_perp_example_mmr():
    # OKX worked example (2024-06): 10 BTC spot vs -10 BTC perp: MR1 = MR6 = 0; MR4 = 20 legs x 0.6% x P;
    # with P = 67,111: 0.12 x 67111 = 8053.32 = the published MMR; MR7 = 0.3% x 10 x 67111 = 2013.33
    mkt = MarketState(spot={"BTC": 67111.0}, vol={"BTC": 0.5})
    mm, im, r = req("okx-pm", book({"kind": "spot", "qty": 10.0}, {"kind": "perp", "qty": -10.0}, und="BTC"), mkt)
    assert mm == pytest.approx(8053.32)
    assert im == pytest.approx(1.3 * 8053.32)
    assert r.drivers["floor_charge_usd"][0] == pytest.approx(2013.33)


def test_okx_naked_put_and_min_charge_tier():
    # put K 2200 vol 0: MR1 -12%: put 440 -> -240; MR6 -24%: put 680 -> -480 => MMR 480, IMR 624
    mm, im, _ = req("okx-pm", book(SHORTPUT))
    assert (mm, im) == (pytest.approx(480.0), pytest.approx(624.0))
    # tier: 20 perps long + 20 short (hedged): raw 0.3% x 40 x 60000 = 7200 (x1); 100 + 100: 36000 -> x2 = 72000
    mkt = MarketState(spot={"BTC": 60000.0}, vol={"BTC": 0.5})
    big = book({"kind": "perp", "qty": 100.0}, {"kind": "perp", "qty": -100.0}, und="BTC")
    assert get_model("okx-pm").requirements(big, mkt).drivers["floor_charge_usd"][0] == pytest.approx(72000.0)


# ---------------------------------------------------------------- hedges never cost more than their legs
def _legs_vs_hedge(name, legs, mkt):
    m = get_model(name)
    whole = m.requirements(book(*legs), mkt)
    parts = [m.requirements(book(leg), mkt) for leg in legs]
    return whole, parts


@pytest.mark.parametrize("name", PM_PRESETS + ["cme-span"])
@settings(max_examples=15, deadline=None)
@given(
    q=st.floats(0.1, 20.0),
    spot=st.floats(500.0, 5000.0),
    strike_m=st.floats(0.8, 1.5),
    days=st.sampled_from([3, 30, 90]),
    vol=st.floats(0.2, 1.2),
)
def test_hedge_needs_no_more_margin_than_its_legs(name, q, spot, strike_m, days, vol):
    mkt = MarketState(spot={"ETH": spot}, vol={"ETH": vol}, rate={"ETH": 0.02})
    spot_perp = [{"kind": "spot", "qty": q}, {"kind": "perp", "qty": -q}]
    covered_call = [
        {"kind": "spot", "qty": q},
        {"kind": "call", "strike": round(spot * strike_m), "qty": -q, "expiry_days": days},
    ]
    for legs in (spot_perp, covered_call):
        whole, parts = _legs_vs_hedge(name, legs, mkt)
        assert whole.mm[0] <= sum(p.mm[0] for p in parts) + 1e-6
        assert whole.im[0] <= sum(p.im[0] for p in parts) + 1e-6
