"""The margin coordinator's liquidation and enrolment rules on the branches the other tests do not reach.

World as tests/protocols/test_coordinator.py: a lending market "lend" and a perp DEX "perps" (ETH IMF 10%,
MMF 5%) sharing one ledger; the keeper "keeper" has a DEX row.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_coordinator import World

from defistress.protocols.base import Revert
from defistress.protocols.events import Generic, Liquidated


def test_liquidate_names_a_principal_that_does_not_exist():
    w = World()
    w.principal("alice", perp=-5.0, perp_coll=500.0)
    for i in (1, -1):
        with pytest.raises(Revert, match=rf"^coordinator: no principal #{i}$"):
            w.coord.liquidate(i, "keeper")


def test_a_liquidator_without_a_row_is_recorded_as_a_failure_and_settlement_still_runs():
    w = World()
    # perps only: short 5 ETH @2000 with 500 USDC; at 2100 equity 500 − 500 = 0 < MM 5%·10,500 = 525
    i = w.principal("alice", perp=-5.0, perp_coll=500.0)
    w.eth.price = 2100.0
    assert list(w.coord.liquidatable()) == [i]
    events = w.coord.liquidate(i, "nobody")
    assert not [e for e in events if isinstance(e, Liquidated)]
    summary = events[-1]
    assert isinstance(summary, Generic) and summary.name == "coordinator_liquidation"
    assert summary.detail["closes"] == 0 and summary.detail["liquidator"] == "nobody"
    assert summary.detail["failures"] == {
        "perps": "perps: liquidator nobody has no account (open one with collateral first)"
    }
    assert summary.detail["health_after"] == summary.detail["health_before"] < 1.0
    row = int(w.coord.rows["perps"][i])
    assert w.dex.size[row, 0] == -5.0  # nothing closed
    assert int(w.coord.rows["lend"][i]) == -1  # no lending row: skipped throughout
    assert w.coord.metrics()["liquidations"] == 1


def test_enroll_names_unknown_venues_wrong_lengths_out_of_range_and_shared_rows():
    w = World()
    n_lend = w.lend.n_accounts
    w.lend.add_accounts(2)
    with pytest.raises(Revert, match=r"^coordinator: rows: unknown venue ids \['cex'\]; allowed \['lend', 'perps'\]$"):
        w.coord.enroll("a", {"cex": 0})
    with pytest.raises(Revert, match=r"^coordinator: rows\['lend'\] has 1 entries for 2 principals$"):
        w.coord.enroll_many(["a", "b"], {"lend": np.array([n_lend])})
    with pytest.raises(Revert, match=rf"^coordinator: rows\['lend'\]: allowed -1 or 0\.\.{n_lend + 1}$"):
        w.coord.enroll("a", {"lend": n_lend + 2})
    with pytest.raises(Revert, match=r"^coordinator: rows\['lend'\]: a row may have one controller only \(EVC\)$"):
        w.coord.enroll_many(["a", "b"], {"lend": np.array([n_lend, n_lend])})
    assert w.coord.n_accounts == 0 and not w.lend.controlled[n_lend]
    idx = w.coord.enroll_many(["a", "b"], {"lend": np.array([n_lend, -1])})
    assert list(idx) == [0, 1] and list(w.coord.rows["perps"]) == [-1, -1]


def test_register_liquidator_names_an_unknown_venue():
    w = World()
    with pytest.raises(Revert, match=r"^coordinator: rows: unknown venue ids \['cex'\]"):
        w.coord.register_liquidator("k2", {"cex": 1})


def test_accrue_refuses_negative_time():
    w = World()
    w.coord.accrue(0.0)
    with pytest.raises(ValueError, match="dt_seconds must be >= 0, got -1.0"):
        w.coord.accrue(-1.0)


def test_exposures_are_the_equity_of_each_venues_controlled_rows():
    w = World()
    # lending row 0: 10 ETH at 2000 against 12,000 USDC of debt -> 8,000 USD; perps: 2,000 USDC, flat at entry
    i = w.principal("alice", eth_coll=10.0, usdc_debt=12_000.0, perp=-10.0, perp_coll=2000.0)
    assert int(w.coord.rows["lend"][i]) == 0
    found = {(e.kind, e.asset, e.counterparty): e.amount for e in w.coord.exposures()}
    assert found == {
        ("receivable", "USD", "lend"): pytest.approx(8000.0),
        ("receivable", "USD", "perps"): pytest.approx(2000.0),
    }
    m = w.coord.metrics()
    assert m["principals"] == 1 and m["equity_usd"] == pytest.approx(10_000.0)


def test_metrics_carry_every_documented_figure():
    w = World()
    w.principal("alice", eth_coll=10.0, usdc_debt=12_000.0, perp=-10.0, perp_coll=2000.0)
    m = w.coord.metrics()
    base = {"principals", "equity_usd", "silo_im_usd", "silo_mm_usd", "im_usd", "mm_usd", "netting_credit_usd"}
    base |= {"contingency_usd", "accounts_unhealthy", "liquidations", "settled_usd", "bad_debt_usd"}
    base |= {"contingency_oracle_usd", "contingency_latency_usd", "contingency_settlement_usd"}
    assert set(m) == base
    # contingencies add up; one healthy principal, nothing liquidated
    parts = m["contingency_oracle_usd"] + m["contingency_latency_usd"] + m["contingency_settlement_usd"]
    assert m["contingency_usd"] == pytest.approx(parts)
    assert (m["accounts_unhealthy"], m["liquidations"], m["settled_usd"], m["bad_debt_usd"]) == (0, 0, 0.0, 0.0)


def test_a_venue_where_the_principal_has_no_row_does_not_stop_settlement_on_the_others():
    from test_coordinator import ETH_P

    from defistress.protocols.coordinator import CoordinatorParams, MarginCoordinator
    from defistress.protocols.perps import PerpDex, PerpDexParams

    w = World()
    spare = PerpDex(PerpDexParams(markets=[ETH_P]), {"ETH": w.eth}, w.env, id="spare")
    params = CoordinatorParams(liquidation_order=["spare", "lend", "perps"])
    w.coord = MarginCoordinator(params, {"spare": spare, "lend": w.lend, "perps": w.dex}, w.env)
    w.coord.register_liquidator("keeper", {"lend": None, "perps": w.krow})
    # the case of test_cross_venue_liquidation_restores_health_and_settles_the_negative_venue, with a venue first
    # in the order on which the principal has no row
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    assert int(w.coord.rows["spare"][i]) == -1
    w.eth.price = 1500.0
    summary = w.coord.liquidate(i, "keeper")[-1]
    # lending equity 6840 − 8000 = −1160 after one close is covered from the perp row
    assert summary.detail["settled_usd"] == pytest.approx(1160.0)
    assert w.coord.requirements().health[i] >= 1.0
    assert list(w.coord.liquidatable()) == []  # healthy again (health ≈ 1.05 is not liquidatable)
    w.env.ledger.check_conservation()


def test_the_first_row_of_a_venue_can_pay_a_settlement():
    w = World()
    # lending row 0: 100 USDC supplied, no debt; perps: short 5 ETH @2000 with 500 USDC
    i = w.principal("alice", usdc_coll=100.0, perp=-5.0, perp_coll=500.0)
    assert int(w.coord.rows["lend"][i]) == 0
    w.eth.price = 2200.0  # perps equity 500 − 5·200 = −500: the whole principal is under water
    summary = w.coord.liquidate(i, "keeper")[-1]
    # the perp row's deficit (at least 500) takes all of the 100 USDC the lending row can give
    assert summary.detail["settled_usd"] == pytest.approx(100.0)
    assert w.lend.collateral()[0, 1] == pytest.approx(0.0, abs=1e-9)
    w.env.ledger.check_conservation()


def test_liquidate_judges_the_named_principal_not_the_first():
    w = World()
    w.principal("bob", eth_coll=10.0, usdc_debt=1_000.0)  # #0: far from liquidation
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    w.eth.price = 1500.0
    assert list(w.coord.liquidatable()) == [i]
    summary = w.coord.liquidate(i, "keeper")[-1]
    assert summary.detail["index"] == i and summary.detail["health_before"] < 1.0
    with pytest.raises(Revert, match=r"^coordinator: principal #0 is healthy \(health [0-9.]+ >= 1\)$"):
        w.coord.liquidate(0, "keeper")


def test_a_principal_at_health_exactly_one_is_neither_unhealthy_nor_liquidatable():
    # no credit, no latency and one venue (no oracle divergence): MM is the perp silo's own, no contingency.
    # short 5 ETH at entry 2000 with 500 USDC: equity 500; MM 5% x 5 x 2000 = 500; health 500 / 500 = 1 exactly
    w = World(credit_rate=0.0, default_latency_s=0.0)
    i = w.principal("alice", perp=-5.0, perp_coll=500.0)
    r = w.coord.requirements()
    assert (r.equity_usd[i], r.mm_usd[i], r.contingency_usd[i], r.health[i]) == (500.0, 500.0, 0.0, 1.0)
    assert w.coord.metrics()["accounts_unhealthy"] == 0
    assert list(w.coord.liquidatable()) == []
    with pytest.raises(Revert, match=rf"^coordinator: principal #{i} is healthy \(health 1 >= 1\)$"):
        w.coord.liquidate(i, "keeper")


def crashed(w: World, first_bob: bool = False) -> int:
    """alice as in test_crash_closes_every_venue_settles_and_writes_off_the_rest (ETH 2000 -> 1000), optionally
    after a healthy principal bob (#0)."""
    if first_bob:
        w.principal("bob", eth_coll=10.0, usdc_debt=1_000.0)
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    w.eth.price = 1000.0  # lending −6000, perps 500 + 5·1000 = 5500: total −500
    return i


def test_the_health_that_stops_closing_is_the_named_principals():
    w = World()
    i = crashed(w, first_bob=True)
    assert i == 1
    events = w.coord.liquidate(i, "keeper")
    # alice is under water: every venue is closed in full (two steps each), whatever bob's health
    assert all(w.coord.adaptors[v].is_flat(int(w.coord.rows[v][i])) for v in ("lend", "perps"))
    assert sum(isinstance(e, Liquidated) for e in events) == 4
    assert events[-1].detail["health_after"] == np.inf  # alice has nothing at risk left (bob's health is finite)
    assert np.isfinite(w.coord.requirements().health[0])


def test_a_close_fraction_that_does_not_divide_one_still_ends_with_a_whole_close():
    w = World(close_fraction=0.4)
    i = crashed(w)
    events = w.coord.liquidate(i, "keeper")
    # steps of 0.4 of the starting position: f = 0.4, then 0.4 / 0.6, then 0.4 / 0.2 capped at 1 (the rest)
    fractions = [e.collateral_seized for e in events if isinstance(e, Liquidated) and e.source == "perps"]
    assert events[-1].detail["failures"] == {}
    assert w.dex.size[int(w.coord.rows["perps"][i]), 0] == 0.0
    assert len(fractions) == 3


def test_closed_positions_go_to_the_row_the_liquidator_registered():
    w = World()
    w.env.ledger.mint("USDC", "keeper2", 1e7, "t")
    first = int(w.dex.open_accounts("keeper2", [1e6], None)[0])
    second = int(w.dex.open_accounts("keeper2", [1e6], None)[0])
    w.coord.register_liquidator("keeper2", {"lend": None, "perps": second})
    # perps only: short 5 ETH @2000 with 500 USDC; at 2100 equity 0 < MM 525
    i = w.principal("alice", perp=-5.0, perp_coll=500.0)
    w.eth.price = 2100.0
    w.coord.liquidate(i, "keeper2")
    # two steps of half the starting position each: all 5 short ETH land on the registered (second) row
    assert w.dex.size[second, 0] == pytest.approx(-5.0)
    assert w.dex.size[first, 0] == 0.0


def test_liquidation_counters_add_up_over_liquidations():
    w = World()
    # twice the case of test_cross_venue_liquidation_restores_health_and_settles_the_negative_venue: each
    # liquidation settles 1,160 USD (lending equity 6840 − 8000 after one close, covered from the perp row)
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    j = w.principal("carol", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    w.eth.price = 1500.0
    for k in (i, j):
        assert w.coord.liquidate(k, "keeper")[-1].detail["settled_usd"] == pytest.approx(1160.0)
    m = w.coord.metrics()
    assert m["liquidations"] == 2 and m["settled_usd"] == pytest.approx(2320.0)


def test_a_venue_whose_close_does_nothing_does_not_stop_the_liquidation():
    w = World()
    # lending only: 10 ETH against 16,000 USDC; ETH at 0: collateral worth nothing, health −inf. The market's
    # controller close has nothing of value to seize and returns no event; settlement and write-off still run
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0)
    w.eth.price = 0.0
    assert list(w.coord.liquidatable()) == [i]
    events = w.coord.liquidate(i, "keeper")
    summary = events[-1]
    assert summary.name == "coordinator_liquidation" and summary.detail["closes"] == 0
    assert summary.detail["failures"] == {}
    assert w.coord.metrics()["liquidations"] == 1


def test_the_liquidation_summary_carries_every_documented_figure_and_bad_debt_adds_up():
    w = World()
    j = w.principal("carol", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)  # alice's book
    i = crashed(w)
    h0 = float(w.coord.requirements().health[i])
    w.env.clock.block = 7
    events = w.coord.liquidate(i, "keeper")
    summary = events[-1]
    assert (summary.block, summary.source, summary.name) == (7, "coordinator", "coordinator_liquidation")
    # as test_crash_closes_every_venue_settles_and_writes_off_the_rest: two closes per venue; the perp row's
    # 5,400 USDC settled into the lending debt; bad debt 16000 − 8000 − 1840/1.02 − 5400
    bad = 16_000.0 - 8000.0 - 1840.0 / 1.02 - 5400.0
    assert summary.detail == {
        "principal": "alice",
        "index": i,
        "liquidator": "keeper",
        "health_before": h0,
        "health_after": np.inf,
        "closes": 4,
        "settled_usd": pytest.approx(5400.0),
        "bad_debt_usd": pytest.approx(bad),
        "failures": {},
    }
    w.coord.liquidate(j, "keeper")  # the same book: the same bad debt again
    assert w.coord.metrics()["bad_debt_usd"] == pytest.approx(2 * bad)


def test_the_market_state_is_the_mean_of_venue_prices_with_the_configured_vols():
    # lending ETH oracle 2000, perps 2020: spot = (2000 + 2020) / 2 = 2010; no venue has a surface
    w = World(eth_lend=2000.0, eth_perp=2020.0, default_vol=0.3)
    mkt = w.coord.market_state()
    assert (mkt.spot, mkt.vol) == ({"ETH": 2010.0}, {"ETH": 0.3})
    w = World(eth_lend=2000.0, eth_perp=2020.0, vol={"ETH": 0.8})
    mkt = w.coord.market_state()
    assert (mkt.spot, mkt.vol) == ({"ETH": 2010.0}, {"ETH": 0.8})
    assert list(w.coord.vol_of(mkt)) == [0.8]


def test_the_market_state_takes_an_options_venues_surface_over_the_configured_vol():
    from test_coordinator import options_world

    env, eth, lend, opt, coord, i = options_world()
    surface = opt.market_state().vol["ETH"]
    mkt = coord.market_state()
    assert hasattr(mkt.vol["ETH"], "atm_vol") and mkt.vol["ETH"].atm_vol == surface.atm_vol
    assert list(coord.vol_of(mkt)) == [float(surface.atm_vol)]
    assert mkt.spot == {"ETH": 2000.0}


def test_requirements_of_principals_with_rows_on_different_venues_by_hand():
    from test_coordinator import latency

    w = World(credit_rate=0.0)
    p = w.principal("p", perp=-5.0, perp_coll=2000.0)  # perps only
    q = w.principal("q", eth_coll=10.0, usdc_debt=12_000.0)  # lending only
    c = w.principal("c", usdc_coll=1000.0)  # lending, cash only
    r = w.coord.requirements()
    # p: perps IM 10% and MM 5% of 10,000 notional; no credit: MM 500 + latency, IM max(1.25·500, 1000) + latency
    lat_p = latency(10_000.0)
    assert (r.equity_usd[p], r.silo_im_usd[p], r.silo_mm_usd[p]) == (2000.0, 1000.0, 500.0)
    assert r.mm_usd[p] == pytest.approx(500.0 + lat_p) and r.im_usd[p] == pytest.approx(1000.0 + lat_p)
    # q: lending IM 20,000·0.175 = 3,500, MM 20,000·0.14 = 2,800; IM max(1.25·2800, 3500) + latency
    lat_q = latency(20_000.0)
    assert (r.equity_usd[q], r.silo_im_usd[q], r.silo_mm_usd[q]) == pytest.approx((8000.0, 3500.0, 2800.0))
    assert r.mm_usd[q] == pytest.approx(2800.0 + lat_q) and r.im_usd[q] == pytest.approx(3500.0 + lat_q)
    # c: 1,000 USDC: IM 1000·0.135 = 135, MM 1000·0.115 = 115, no risky asset: no contingency
    assert (r.silo_im_usd[c], r.silo_mm_usd[c]) == pytest.approx((135.0, 115.0))
    assert r.contingency_usd[c] == 0.0 and r.mm_usd[c] == pytest.approx(115.0)
    assert r.im_usd[c] == pytest.approx(1.25 * 115.0)  # the combined part times im_factor beats the silo's 135
    assert r.health[c] == pytest.approx(1000.0 / 115.0)
    # one principal, or several in any order, gives the same figures as all of them
    for sub in ([q], [p], [c, p], [p, q, c]):
        part = w.coord.requirements(np.array(sub))
        for name in ("equity_usd", "silo_im_usd", "silo_mm_usd", "pm_mm_usd", "mm_usd", "im_usd", "health"):
            np.testing.assert_array_equal(getattr(part, name), getattr(r, name)[sub])
    # indices as whole floats (e.g. read back from a table) and as a scalar are taken as integers
    np.testing.assert_array_equal(w.coord.requirements(np.array([float(q), float(p)])).mm_usd, r.mm_usd[[q, p]])
    np.testing.assert_array_equal(w.coord.requirements(c).mm_usd, r.mm_usd[[c]])


def test_silo_shortfall_counts_each_venue_below_its_own_maintenance_margin():
    w = World()
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp=-5.0, perp_coll=500.0)
    w.eth.price = 1500.0
    # lending: equity 15,000 − 16,000 = −1,000 below MM 15,000·0.14 = 2,100: short 3,100;
    # perps: equity 500 + 5·500 = 3,000 above MM 5%·7,500 = 375: short 0
    assert w.coord.requirements().silo_shortfall_usd[i] == pytest.approx(3100.0)


def test_health_with_no_requirement_is_plus_or_minus_infinity():
    w = World()
    i = w.principal("alice", perp_coll=500.0)  # a perp row with collateral and no position
    j = w.principal("bob", perp_coll=500.0)
    w.dex.collateral[int(w.coord.rows["perps"][j])] = -100.0  # a debt and nothing at risk
    k = w.coord.enroll("carol", {"lend": int(w.lend.add_accounts(1)[0])})  # an empty row: nothing at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # x / 0 and 0 / 0 are expected there: no RuntimeWarning
        r = w.coord.requirements()
    assert (r.mm_usd[i], r.mm_usd[j], r.mm_usd[k], r.equity_usd[k]) == (0.0, 0.0, 0.0, 0.0)
    assert (r.health[i], r.health[j], r.health[k]) == (np.inf, -np.inf, np.inf)


def test_no_principals_no_figures():
    w = World()
    r = w.coord.requirements()
    assert r.mm_usd.shape == r.health.shape == r.pm_mm_usd.shape == (0,)
    m = w.coord.metrics()
    assert (m["principals"], m["mm_usd"], m["equity_usd"], m["accounts_unhealthy"]) == (0, 0.0, 0.0, 0)
    assert w.coord.exposures() == [] and list(w.coord.liquidatable()) == []


def test_im_is_the_largest_venue_im_when_it_beats_the_combined_part():
    from test_coordinator import latency

    w = World(im_factor=1.0)
    i = w.principal("alice", eth_coll=10.0, usdc_debt=12_000.0, perp=-10.0, perp_coll=2000.0)
    r = w.coord.requirements()
    # as test_hedged_book_needs_less_than_the_sum_of_silos: combined part max(3800 − 2560, 2800) = 2800;
    # IM = max(1.0·2800, lending IM 3500, perps IM 2000) + latency + settlement 0.02·2560
    assert r.silo_im_usd[i] == pytest.approx(5500.0)
    assert r.im_usd[i] == pytest.approx(3500.0 + 2 * latency(20_000.0) + 51.2)


def test_the_combined_portfolio_of_an_options_book_is_margined_as_the_venue_holds_it():
    from test_coordinator import ETH_L, USDC_L

    from defistress.protocols.base import Env, FixedPrice
    from defistress.protocols.coordinator import CoordinatorParams, MarginCoordinator
    from defistress.protocols.lending import LendingMarket
    from defistress.protocols.margin.catalog import get_model
    from defistress.protocols.options import OptionsVenue, OptionsVenueParams

    env, eth = Env(), FixedPrice(2000.0)
    lend = LendingMarket("lend", [ETH_L, USDC_L], {"ETH": eth, "USDC": FixedPrice(1.0)}, env)
    opt = OptionsVenue(OptionsVenueParams(), {"ETH": eth, "USDC": FixedPrice(1.0)}, env)
    for h in ("mm", "alice", "bob"):
        env.ledger.mint("USDC", h, 1e7, "t")
    opt.set_market_maker(int(opt.open_accounts("mm", [1e7])[0]))
    put = opt.list_instrument("ETH", "put", 1800.0, 7 * 86_400.0)
    call = opt.list_instrument("ETH", "call", 2400.0, 30 * 86_400.0)
    perp = opt.list_instrument("ETH", "perp")
    rows = np.array([int(opt.open_accounts(h, [50_000.0])[0]) for h in ("alice", "bob")])
    opt.trade("alice", rows[:1], put, [-4.0])
    opt.trade("alice", rows[:1], call, [2.0])
    opt.trade("bob", rows[1:], perp, [3.0])
    opt.trade("bob", rows[1:], call, [-1.0])
    coord = MarginCoordinator(CoordinatorParams(), {"lend": lend, "options": opt}, env)
    idx = coord.enroll_many(["alice", "bob"], {"options": rows})
    # the coordinator's PM requirement of each principal is derive-pm2's on the venue's own portfolio of that row
    # (one venue: the market state is the venue's spot and surface)
    model = get_model("derive-pm2")
    want = model.requirements(opt.portfolio(rows), opt.market_state()).mm
    np.testing.assert_allclose(coord.requirements(idx).pm_mm_usd, want, rtol=1e-12)
    np.testing.assert_allclose(coord.requirements(idx[::-1]).pm_mm_usd, want[::-1], rtol=1e-12)
    # a principal enrolled with no row anywhere has nothing at risk
    k = coord.enroll("carol", {})
    for r, at in ((coord.requirements(), k), (coord.requirements(np.array([k])), 0)):  # with others, and alone
        assert (r.pm_mm_usd[at], r.mm_usd[at], r.health[at]) == (0.0, 0.0, np.inf)


def test_oracle_contingency_with_an_underlying_only_one_venue_lists():
    from test_coordinator import ETH_L, USDC_L

    from defistress.protocols.base import Env, FixedPrice
    from defistress.protocols.coordinator import CoordinatorParams, MarginCoordinator
    from defistress.protocols.lending import LendingMarket
    from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

    env = Env()
    eth_l, eth_p, btc = FixedPrice(2000.0), FixedPrice(2020.0), FixedPrice(30_000.0)
    lend = LendingMarket("lend", [ETH_L, USDC_L], {"ETH": eth_l, "USDC": FixedPrice(1.0)}, env)
    btc_p = PerpMarketParams(asset="BTC", initial_margin_fraction=0.10, maintenance_fraction=0.5)
    eth_pm = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)
    dex = PerpDex(PerpDexParams(markets=[eth_pm, btc_p]), {"ETH": eth_p, "BTC": btc}, env)
    for h in ("vault", "alice"):
        env.ledger.mint("USDC", h, 1e7, "t")
    dex.set_vault(int(dex.open_accounts("vault", [1e6], None)[0]))
    env.ledger.mint("ETH", "alice", 10.0, "t")
    a = lend.add_accounts(1)
    lend.supply("alice", a, "ETH", np.array([10.0]))
    r = int(dex.open_accounts(["alice", "vault"], [50_000.0, 1e5], [[-10.0, 1.0], [10.0, -1.0]])[0])
    coord = MarginCoordinator(CoordinatorParams(oracle_divergence=2.0), {"lend": lend, "perps": dex}, env)
    i = coord.enroll("alice", {"lend": int(a[0]), "perps": r})
    # mean ETH = 2010 (both venues), mean BTC = 30,000 (the DEX only): oracle = 2·(10·10 + 10·10 + 1·0) = 400
    assert coord.requirements().contingencies["oracle"][i] == pytest.approx(400.0)


def test_health_of_a_requirement_below_one_dollar_is_equity_over_it():
    w = World(credit_rate=0.0, default_latency_s=0.0)
    # short 0.001 ETH at 2000 with 0.08 USDC: equity 0.08, MM 5% x 2 = 0.1 (no contingency): health 0.8
    i = w.principal("alice", perp=-0.001, perp_coll=0.08)
    r = w.coord.requirements()
    assert r.mm_usd[i] == pytest.approx(0.1) and r.health[i] == pytest.approx(0.8)


def test_closing_stops_at_a_health_of_exactly_target_health():
    # no credit, no latency, no penalty, perps only: short 5 ETH at 2000 with 600 USDC, ETH at 2050:
    # equity 600 − 5·50 = 350, MM 5%·5·2050 = 512.5, health 0.68. Closing half (2.5 ETH) at the oracle price
    # realises half the loss, equity stays 350, MM 5%·2.5·2050 = 256.25: health 350 / 256.25, the target here.
    target = 350.0 / 256.25
    w = World(credit_rate=0.0, default_latency_s=0.0, penalty=0.0, target_health=target)
    i = w.principal("alice", perp=-5.0, perp_coll=600.0)
    w.eth.price = 2050.0
    events = w.coord.liquidate(i, "keeper")
    # health ≥ target_health stops the closing (an equal health is enough): one close of half the position
    assert events[-1].detail["health_after"] == target
    assert events[-1].detail["closes"] == 1
    assert w.dex.size[int(w.coord.rows["perps"][i]), 0] == -2.5


def test_an_ask_of_exactly_dust_usd_is_rounding_and_moves_nothing():
    # alice's lending row is under water (as crashed(): 10 ETH against 16,000 USDC at 1000) and her perps row
    # holds 1e-6 USDC and no position: settleable 1e-6 − MM 0 = DUST_USD (1e-6) exactly, so every ask from it is
    # min(need, 1e-6, debt) = 1e-6: float rounding, not settled (a settlement needs ask > DUST_USD)
    w = World()
    i = w.principal("alice", eth_coll=10.0, usdc_debt=16_000.0, perp_coll=1e-6)
    prow = int(w.coord.rows["perps"][i])
    assert w.coord.adaptors["perps"].settleable_usd(np.array([prow]))[0] == 1e-6
    w.eth.price = 1000.0
    events = w.coord.liquidate(i, "keeper")
    assert events[-1].detail["settled_usd"] == 0.0
    assert w.dex.collateral[prow] == 1e-6  # nothing left the perps row
