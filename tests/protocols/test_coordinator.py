"""The cross-venue margin coordinator over a lending market and a perp DEX: netting credit, contingencies,
cross-venue liquidation and settlement, hand-computed (margin figures of derive-pm2, docs/margin-methods.md 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.coordinator import CoordinatorParams, MarginCoordinator
from defistress.protocols.events import Generic, Liquidated
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.margin.portfolio import SECONDS_PER_YEAR
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams
from defistress.protocols.venue_adaptors import LendingAdaptor, PerpsAdaptor, adaptor_for

ETH_L = AssetParams("ETH", ltv=0.825, liquidation_threshold=0.86, liquidation_bonus=0.05)  # MM share 0.14
USDC_L = AssetParams("USDC", ltv=0.865, liquidation_threshold=0.885, liquidation_bonus=0.048)
ETH_P = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)  # MMF 5%
Z, VOL, LAT = 2.326, 0.65, 60.0  # defaults: latency_z, default_vol, default_latency_s


class World:
    """A lending market and a perp DEX sharing one ledger; a keeper 'keeper' with a DEX row and USDC."""

    def __init__(self, eth_lend=2000.0, eth_perp=None, **params):
        self.env = env = Env()
        self.eth = FixedPrice(eth_lend)
        self.eth_perp = self.eth if eth_perp is None else FixedPrice(eth_perp)
        self.lend = LendingMarket("lend", [ETH_L, USDC_L], {"ETH": self.eth, "USDC": FixedPrice(1.0)}, env)
        self.dex = PerpDex(PerpDexParams(markets=[ETH_P]), {"ETH": self.eth_perp}, env)
        led = env.ledger
        led.mint("USDC", "lenders", 1e7, "t")
        self.lend.supply_liquidity("lenders", "USDC", 1e7)
        led.mint("USDC", "vault", 1e7, "t")
        self.vault = int(self.dex.open_accounts("vault", [1e6], None)[0])
        self.dex.set_vault(self.vault)
        led.mint("USDC", "keeper", 1e7, "t")
        self.krow = int(self.dex.open_accounts("keeper", [1e6], None)[0])
        self.coord = MarginCoordinator(CoordinatorParams(**params), {"lend": self.lend, "perps": self.dex}, env)
        self.coord.register_liquidator("keeper", {"lend": None, "perps": self.krow})

    def principal(self, name, eth_coll=0.0, usdc_debt=0.0, perp=0.0, perp_coll=0.0, usdc_coll=0.0):
        led, rows = self.env.ledger, {}
        if eth_coll or usdc_debt or usdc_coll:
            a = self.lend.add_accounts(1)
            if eth_coll:
                led.mint("ETH", name, eth_coll, "t")
                self.lend.supply(name, a, "ETH", np.array([eth_coll]))
            if usdc_coll:
                led.mint("USDC", name, usdc_coll, "t")
                self.lend.supply(name, a, "USDC", np.array([usdc_coll]))
            if usdc_debt:
                self.lend.borrow(name, a, "USDC", np.array([usdc_debt]))
            rows["lend"] = int(a[0])
        if perp or perp_coll:  # opened at the oracle price against a counterparty row of the vault's owner
            led.mint("USDC", name, perp_coll, "t")
            r = self.dex.open_accounts([name, "vault"], [perp_coll, 1e5], [[perp], [-perp]])
            rows["perps"] = int(r[0])
        return self.coord.enroll(name, rows)


def latency(notional_usd, seconds=LAT, vol=VOL):
    """z · N · σ · sqrt(latency / year) (the coordinator's latency contingency)."""
    return Z * notional_usd * vol * math.sqrt(seconds / SECONDS_PER_YEAR)


# --- margin ------------------------------------------------------------------------------------------
def test_hedged_book_needs_less_than_the_sum_of_silos():
    w = World()
    i = w.principal("alice", eth_coll=10.0, usdc_debt=12_000.0, perp=-10.0, perp_coll=2000.0)
    r = w.coord.requirements()
    # silos: lending 20000*(1-0.86) = 2800; perps 10*2000*0.05 = 1000
    assert r.silo_mm_usd[i] == pytest.approx(3800.0)
    assert r.silo_mm_max_usd[i] == pytest.approx(2800.0)
    # derive-pm2: spot +10 and perp -10 cancel in every scenario; MMPerpPercent 3% * 20000 = 600
    assert r.pm_mm_usd[i] == pytest.approx(600.0)
    assert r.credit_usd[i] == pytest.approx(0.8 * (3800.0 - 600.0))  # 2560
    lat = latency(20_000.0) + latency(20_000.0)  # 83.42
    assert r.contingencies["latency"][i] == pytest.approx(lat)
    assert r.contingencies["settlement"][i] == pytest.approx(0.02 * 2560.0)
    assert r.contingencies["oracle"][i] == 0.0
    # MM = max(3800 - 2560, 2800) + 83.42 + 51.2 = 2934.62 < 3800
    assert r.mm_usd[i] == pytest.approx(2800.0 + lat + 51.2)
    assert r.mm_usd[i] < r.silo_mm_usd[i]
    assert r.equity_usd[i] == pytest.approx(20_000.0 - 12_000.0 + 2000.0)
    assert r.health[i] == pytest.approx(10_000.0 / r.mm_usd[i])
    # IM = max(1.25 * 2800, max silo IM) + contingencies; lending IM 20000*0.175 = 3500, perps 2000
    assert r.im_usd[i] == pytest.approx(3500.0 + lat + 51.2)


def test_unhedged_book_needs_at_least_its_worst_silo():
    w = World()
    i = w.principal("bob", eth_coll=10.0, usdc_debt=12_000.0)
    j = w.principal("carol", eth_coll=10.0, usdc_debt=12_000.0, perp=5.0, perp_coll=2000.0)
    r = w.coord.requirements()
    assert r.mm_usd[i] >= r.silo_mm_max_usd[i] == pytest.approx(2800.0)
    assert r.mm_usd[i] == pytest.approx(2800.0 + latency(20_000.0))  # one venue: no credit
    assert r.credit_usd[i] == 0.0
    assert r.mm_usd[j] >= r.silo_mm_max_usd[j]


def test_zero_credit_rate_gives_the_sum_of_silos_plus_contingencies():
    w = World(credit_rate=0.0)
    i = w.principal("alice", eth_coll=10.0, usdc_debt=12_000.0, perp=-10.0, perp_coll=2000.0)
    r = w.coord.requirements()
    assert r.credit_usd[i] == 0.0 and r.contingencies["settlement"][i] == 0.0
    assert r.mm_usd[i] == pytest.approx(3800.0 + 2 * latency(20_000.0))


def test_contingency_figures_by_hand_with_divergent_oracles_and_latencies():
    w = World(
        eth_lend=2000.0,
        eth_perp=2020.0,
        latency_s={"lend": 600.0, "perps": 12.0},
        vol={"ETH": 0.8},
        oracle_divergence=2.0,
    )
    i = w.principal("alice", eth_coll=10.0, usdc_debt=12_000.0, perp=-10.0, perp_coll=3000.0)
    r = w.coord.requirements()
    # mean ETH = 2010; oracle = 2 * (|10| * |2000 - 2010| + |-10| * |2020 - 2010|) = 2 * 200 = 400
    assert r.contingencies["oracle"][i] == pytest.approx(400.0)
    # latency = 2.326 * 0.8 * (20000 * sqrt(600/Y) + 20200 * sqrt(12/Y))
    assert r.contingencies["latency"][i] == pytest.approx(latency(20_000.0, 600.0, 0.8) + latency(20_200.0, 12.0, 0.8))
    assert r.contingencies["settlement"][i] == pytest.approx(0.02 * r.credit_usd[i])
    assert r.contingency_usd[i] == pytest.approx(sum(c[i] for c in r.contingencies.values()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    coll=st.floats(1.0, 50.0),
    debt_share=st.one_of(st.just(0.0), st.floats(0.01, 0.8)),
    perp=st.floats(-50.0, 50.0),
    perp_coll=st.floats(500.0, 50_000.0),
    rate=st.floats(0.0, 1.0),
    price=st.floats(1000.0, 3000.0),
)
def test_mm_between_worst_silo_and_sum_of_silos_plus_contingencies(coll, debt_share, perp, perp_coll, rate, price):
    w = World(credit_rate=rate)
    i = w.principal("p", eth_coll=coll, usdc_debt=debt_share * coll * 2000.0, perp=perp, perp_coll=perp_coll)
    w.eth.price = price
    r = w.coord.requirements()
    tol = 1e-9 * r.silo_mm_usd[i] + 1e-9
    assert r.mm_usd[i] >= r.silo_mm_max_usd[i] + r.contingency_usd[i] - tol
    assert r.mm_usd[i] <= r.silo_mm_usd[i] + r.contingency_usd[i] + tol
    assert r.im_usd[i] >= r.mm_usd[i] - tol


# --- enrolment --------------------------------------------------------------------------------------
def test_enroll_marks_rows_controlled_and_a_row_has_one_controller():
    w = World()
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    row_l, row_p = int(w.coord.rows["lend"][i]), int(w.coord.rows["perps"][i])
    assert w.lend.controlled[row_l] and w.dex.controlled[row_p]
    with pytest.raises(Revert, match="one controller"):
        w.coord.enroll("again", {"lend": row_l})
    w.eth.price = 1500.0  # lending HF 0.806 < 1
    assert row_l not in w.lend.liquidatable()
    with pytest.raises(Revert, match="controlled"):
        w.lend.liquidate(row_l, "ETH", "USDC", 100.0, "keeper")


def test_liquidate_reverts_on_a_healthy_principal():
    w = World()
    i = w.principal("alice", eth_coll=10.0, usdc_debt=12_000.0, perp=-10.0, perp_coll=2000.0)
    with pytest.raises(Revert, match="healthy"):
        w.coord.liquidate(i, "keeper")


def test_adaptor_for_picks_the_venue_kind():
    w = World()
    assert isinstance(adaptor_for(w.lend), LendingAdaptor)
    assert isinstance(adaptor_for(w.dex), PerpsAdaptor)
    with pytest.raises(TypeError, match="venue"):
        adaptor_for(object())


# --- liquidation and settlement ---------------------------------------------------------------------
def test_cross_venue_liquidation_restores_health_and_settles_the_negative_venue():
    w = World()
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    w.eth.price = 1500.0
    # lending equity 15000 - 16000 = -1000; perps 500 + 5*500 = 3000; total 2000 < MM (about 2166)
    r = w.coord.requirements()
    assert r.equity_usd[i] == pytest.approx(2000.0)
    assert list(w.coord.liquidatable()) == [i]
    events = w.coord.liquidate(i, "keeper")
    closes = [e for e in events if isinstance(e, Liquidated)]
    # one lending step: repay 8000 USDC, seize 8000*1.02/1500 = 5.44 ETH (penalty 160)
    assert len(closes) == 1 and closes[0].source == "lend"
    assert closes[0].collateral_seized == pytest.approx(5.44)
    summary = events[-1]
    assert isinstance(summary, Generic) and summary.name == "coordinator_liquidation"
    # lending equity 6840 - 8000 = -1160 is covered from the perp row (settleable 3000 - 375 = 2625)
    assert summary.detail["settled_usd"] == pytest.approx(1160.0)
    row_l, row_p = int(w.coord.rows["lend"][i]), int(w.coord.rows["perps"][i])
    assert w.lend.debt()[row_l, 1] == pytest.approx(6840.0)
    assert w.dex.equity()[row_p] == pytest.approx(3000.0 - 1160.0)
    after = w.coord.requirements()
    assert after.equity_usd[i] == pytest.approx(2000.0 - 160.0)
    assert after.health[i] >= 1.0
    assert w.env.ledger.balance(w.coord.settlement_holder, "USDC") == 0.0
    assert w.env.ledger.balance("keeper", "ETH") == pytest.approx(5.44)
    w.env.ledger.check_conservation()
    assert w.dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    m = w.coord.metrics()
    assert m["liquidations"] == 1 and m["settled_usd"] == pytest.approx(1160.0) and m["accounts_unhealthy"] == 0


def test_crash_closes_every_venue_settles_and_writes_off_the_rest():
    w = World()
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    w.eth.price = 1000.0
    # lending -6000, perps 500 + 5*1000 = 5500: total -500
    w.coord.liquidate(i, "keeper")
    row_l, row_p = int(w.coord.rows["lend"][i]), int(w.coord.rows["perps"][i])
    for v, row in (("lend", row_l), ("perps", row_p)):
        assert w.coord.adaptors[v].is_flat(row)
    # lending: step 1 repays 8000 for 8160 of ETH (coll left 1840); step 2 repays 1840/1.02 = 1803.92 for the
    # rest: debt 6196.08. perps: two steps of 2500 notional, penalty 50 each: collateral 500 + 5000 - 100 = 5400,
    # settled into the lending debt: 796.08 left and written off = -500 - 160 - 36.08 - 100
    bad = 16_000.0 - 8000.0 - 1840.0 / 1.02 - 5400.0
    assert w.lend.deficit[1] == pytest.approx(bad)
    assert w.coord.bad_debt_usd == pytest.approx(bad)
    assert w.dex.collateral[row_p] == pytest.approx(0.0, abs=1e-9)
    assert w.coord.requirements().health[i] == np.inf
    w.env.ledger.check_conservation()
    assert w.dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)


# --- parameters -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value",
    [
        ("credit_rate", 1.5),
        ("model", "no-such-model"),
        ("latency_s", {"x": -1.0}),
        ("close_fraction", 0.0),
        ("im_factor", 0.5),
        ("target_health", 0.9),
        ("vol", {"ETH": 0.0}),
        ("settlement_haircut", -0.1),
        ("unknown", 1),
    ],
)
def test_bad_params_name_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        CoordinatorParams(**{field: value})


def test_unknown_venue_ids_name_the_field():
    env = Env()
    dex = PerpDex(PerpDexParams(markets=[ETH_P]), {"ETH": FixedPrice(2000.0)}, env)
    with pytest.raises(ValueError, match="liquidation_order"):
        MarginCoordinator(CoordinatorParams(liquidation_order=["lend"]), {"perps": dex}, env)
    with pytest.raises(ValueError, match="latency_s"):
        MarginCoordinator(CoordinatorParams(latency_s={"lend": 1.0}), {"perps": dex}, env)


# --- options venue -------------------------------------------------------------------------------------
def options_world():
    """Lending + options venue (derive-pm2 would also do; the venue default deribit-pm is used as is)."""
    from defistress.protocols.options import OptionsVenue, OptionsVenueParams

    env = Env()
    eth = FixedPrice(2000.0)
    lend = LendingMarket("lend", [ETH_L, USDC_L], {"ETH": eth, "USDC": FixedPrice(1.0)}, env)
    opt = OptionsVenue(OptionsVenueParams(), {"ETH": eth, "USDC": FixedPrice(1.0)}, env)
    led = env.ledger
    for h in ("lenders", "mm", "keeper", "alice"):
        led.mint("USDC", h, 1e7, "t")
    lend.supply_liquidity("lenders", "USDC", 1e7)
    opt.set_market_maker(int(opt.open_accounts("mm", [1e7])[0]))
    perp = opt.list_instrument("ETH", "perp")
    coord = MarginCoordinator(CoordinatorParams(), {"lend": lend, "options": opt}, env)
    krow = int(opt.open_accounts("keeper", [1e6])[0])
    coord.register_liquidator("keeper", {"lend": None, "options": krow})
    led.mint("ETH", "alice", 10.0, "t")
    a = lend.add_accounts(1)
    lend.supply("alice", a, "ETH", np.array([10.0]))
    lend.borrow("alice", a, "USDC", np.array([16_000.0]))
    r = opt.open_accounts("alice", [1000.0])
    opt.trade("alice", r, perp, [-5.0], check_margin=False)  # a snapshot of an existing book
    i = coord.enroll("alice", {"lend": int(a[0]), "options": int(r[0])})
    return env, eth, lend, opt, coord, i


def test_options_adaptor_feeds_the_coordinator_and_its_liquidation():
    env, eth, lend, opt, coord, i = options_world()
    a = coord.adaptors["options"]
    row = int(coord.rows["options"][i])
    assert opt.controlled[row] and row not in opt.liquidatable()
    assert a.net_delta(np.array([row]), ("ETH",))[0, 0] == pytest.approx(-5.0)
    im, mm = a.silo_requirements(np.array([row]))
    assert mm[0] == pytest.approx(opt.margin(np.array([row])).mm[0])
    r = coord.requirements()
    assert r.mm_usd[i] < r.silo_mm_usd[i] + r.contingency_usd[i]  # the short perp hedges the ETH
    eth.price = 1000.0  # lending -6000, options 1000 + 5000 = 6000: total 0
    assert list(coord.liquidatable()) == [i]
    coord.liquidate(i, "keeper")
    after = coord.requirements()
    flat = all(coord.adaptors[v].is_flat(int(coord.rows[v][i])) for v in ("lend", "options"))
    assert flat or after.health[i] >= 1.0
    assert coord.settled_usd > 0
    env.ledger.check_conservation()
    assert opt.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)


def test_silo_only_figures_equal_the_full_valuation_and_leave_portfolio_figures_unset():
    env, eth, lend, opt, coord, i = options_world()
    for price in (2000.0, 1500.0):
        eth.price = price
        full, silo = coord.requirements(), coord.requirements(with_pm=False)
        for f in ("equity_usd", "silo_im_usd", "silo_mm_usd", "silo_mm_max_usd", "silo_shortfall_usd"):
            assert np.array_equal(getattr(silo, f), getattr(full, f)), f
        assert np.isfinite(full.pm_mm_usd).all() and np.isnan(silo.pm_mm_usd).all() and np.isnan(silo.health).all()
        # every portfolio-margin figure is a per-principal array of NaN, the contingencies under the same names
        n = full.equity_usd.shape
        for f in ("pm_mm_usd", "credit_usd", "contingency_usd", "mm_usd", "im_usd", "health"):
            got = getattr(silo, f)
            assert isinstance(got, np.ndarray) and got.shape == n and np.isnan(got).all(), f
        assert set(silo.contingencies) == set(full.contingencies) == {"oracle", "latency", "settlement"}
        for k, got in silo.contingencies.items():
            assert isinstance(got, np.ndarray) and got.shape == n and np.isnan(got).all(), k


def test_the_options_adaptor_rebuilds_its_portfolio_after_a_trade_or_a_price_move():
    env, eth, lend, opt, coord, i = options_world()
    a, row = coord.adaptors["options"], np.array([int(coord.rows["options"][i])])
    first = a.portfolio(row, ("ETH",))
    assert a.portfolio(row, ("ETH",)) is first  # nothing moved: the same valuation input
    perp = int(np.flatnonzero(opt.inst_kind == 1)[0])
    opt.trade("alice", row, perp, [1.0], check_margin=False)
    after = a.portfolio(row, ("ETH",))
    assert after is not first and after.qty.sum() == pytest.approx(-4.0)
    eth.price = 1900.0  # perp entry price is the last settlement, unchanged; still a new market: rebuilt
    assert a.portfolio(row, ("ETH",)) is not after
