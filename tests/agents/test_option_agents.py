"""Tests of the option-venue populations: writers, delta hedgers and protection buyers."""

from __future__ import annotations

import mesa
import numpy as np
import pytest
from conftest import track_env
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from defistress.agents.option_agents import (
    DeltaHedgers,
    DeltaHedgersParams,
    OptionWriters,
    OptionWritersParams,
    ProtectionBuyers,
    ProtectionBuyersParams,
    StripParams,
)
from defistress.agents.option_book import option_contracts, option_deltas
from defistress.agents.traders import Lognormal
from defistress.agents.tx import GWEI, BlockView
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.events import UserAction
from defistress.protocols.options import OptionsVenue, OptionsVenueParams
from defistress.sim.engine.blocks import build_block

SPOT0 = 2000.0
DAY = 86_400.0
MM_CASH = 1e10


def make_venue(**kw):
    """A venue on one hand-driven ETH oracle, with a market maker row funded at genesis."""
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(SPOT0, "eth")}
    venue = OptionsVenue(OptionsVenueParams(**kw), orc, env)
    env.ledger.mint("USDC", "mm", MM_CASH, "genesis")
    venue.set_market_maker(int(venue.open_accounts("mm", [MM_CASH])[0]))
    return env, venue, orc


def model(seed=1):
    return mesa.Model(seed=seed)


def view(env, base_fee=10.0):
    return BlockView(block=env.clock.block, seconds=env.clock.seconds, base_fee_gwei=base_fee, reference={})


def step(env, venue, orc, price, blocks=1):
    """Move the oracle by hand and let the venue accrue, one block at a time."""
    for _ in range(blocks):
        orc["ETH"].price = price
        env.clock.block += 1
        venue.accrue(env.clock.block_seconds)


def glide(env, venue, orc, to_price, blocks):
    """Move the oracle geometrically to `to_price` over `blocks` blocks (a crash over hours, not one block)."""
    for p in np.geomspace(orc["ETH"].price, to_price, blocks + 1)[1:]:
        step(env, venue, orc, float(p))


def run(txs):
    for tx in txs:
        tx.action()


def writers(n=300, seed=1, venue_kw=None, **kw):
    env, venue, orc = make_venue(**(venue_kw or {}))
    pop = OptionWriters(model(seed), OptionWritersParams(accounts=n, **kw), venue, np.random.default_rng(seed))
    return env, venue, orc, pop


def hedgers(n=100, seed=2, **kw):
    env, venue, orc = make_venue()
    kw.setdefault("attentive_share", 0.0)
    pop = DeltaHedgers(model(seed), DeltaHedgersParams(accounts=n, **kw), venue, np.random.default_rng(seed))
    return env, venue, orc, pop


def buyers(n=200, seed=3, **kw):
    env, venue, orc = make_venue()
    pop = ProtectionBuyers(model(seed), ProtectionBuyersParams(accounts=n, **kw), venue, np.random.default_rng(seed))
    return env, venue, orc, pop


def option_cols(venue):
    return np.isin(np.asarray(venue.instruments["kind"]), ("call", "put"))


# --- parameters -------------------------------------------------------------------------------------------
def test_params_errors_name_the_field_and_range():
    with pytest.raises(ValidationError, match="style_weights"):
        StripParams(style_weights={"put": 0.5, "butterfly": 0.5})
    with pytest.raises(ValidationError, match="expiry_days"):
        StripParams(expiry_days={30.0: 0.5})
    with pytest.raises(ValidationError, match="otm_high"):
        StripParams(otm_low=0.3, otm_high=0.1)
    with pytest.raises(ValidationError, match="target_margin_usage"):
        OptionWritersParams(accounts=10, target_margin_usage=1.5)
    with pytest.raises(ValidationError, match="alarm_health_high"):
        OptionWritersParams(accounts=10, alarm_health_low=2.0, alarm_health_high=1.5)
    with pytest.raises(ValidationError, match="style_weights"):
        ProtectionBuyersParams(accounts=10, strip=StripParams(style_weights={"call": 1.0}))
    with pytest.raises(ValidationError, match="extra"):
        DeltaHedgersParams(accounts=10, band=0.1)


def test_unknown_underlying_is_refused_with_the_allowed_list():
    env, venue, orc = make_venue()
    with pytest.raises(ValueError, match="underlying.*BTC.*ETH"):
        OptionWriters(model(), OptionWritersParams(accounts=5, underlying="BTC"), venue, np.random.default_rng(0))


# --- writers ----------------------------------------------------------------------------------------------
def test_writers_are_net_short_options_sold_to_the_market_maker():
    env, venue, orc, pop = writers()
    qty = np.asarray(venue.qty)
    opt = option_cols(venue)
    mine = qty[pop.rows][:, opt]
    assert np.all(mine <= 0) and mine.sum() < 0  # every leg is a sale
    assert np.all((mine < 0).sum(axis=1) >= 1)  # every account wrote something
    np.testing.assert_allclose(qty[:, opt].sum(axis=0), 0.0, atol=1e-9 * np.abs(mine).sum())  # MM took the rest
    assert np.all(pop.option_value_usd() < 0)
    # genesis: the population's wallet holds the spare cash, the venue holds every account's cash
    assert env.ledger.balance("option_writers", "USDC") == pytest.approx(pop.wallet.sum())
    assert venue.accounting_gap_usd() == pytest.approx(0.0, abs=1e-3)


def test_writers_use_the_target_share_of_free_initial_margin():
    env, venue, orc, pop = writers(n=200, target_margin_usage=0.5)
    # free IM before trading = cash (no positions); so a one-leg writer's IM after selling is 0.5 x cash
    # (e.g. cash 50,000 -> IM 25,000), and its equity at mark is still the cash
    im = venue.margin().im[pop.rows]
    one_leg = np.bincount(pop.legs.local, minlength=200) == 1
    assert 0 < one_leg.sum() < 200
    np.testing.assert_allclose(im[one_leg], 0.5 * pop.initial_cash[one_leg], rtol=1e-6)
    # a strangle must also fit with either leg alone (legs fill one at a time): its IM is at most the budget
    assert np.all(im[~one_leg] <= 0.5 * pop.initial_cash[~one_leg])
    np.testing.assert_allclose(pop.equity(), pop.initial_cash, rtol=1e-9)
    assert np.all(pop.health() > 1.0)


def test_same_seed_gives_the_same_book():
    a = writers(n=100, seed=5)[1]
    b = writers(n=100, seed=5)[1]
    c = writers(n=100, seed=6)[1]
    np.testing.assert_array_equal(np.asarray(a.qty), np.asarray(b.qty))
    assert np.asarray(a.qty).shape != np.asarray(c.qty).shape or not np.array_equal(
        np.asarray(a.qty), np.asarray(c.qty)
    )


def test_put_writers_health_falls_along_a_crash_path():
    env, venue, orc, pop = writers(n=200, strip=StripParams(style_weights={"put": 1.0}), attentive_share=0.0)
    path = [SPOT0, 1900.0, 1750.0, 1600.0, 1400.0]
    health = []
    for p in path:
        step(env, venue, orc, p)
        health.append(pop.health())
    med = [float(np.median(h)) for h in health]
    assert all(b < a for a, b in zip(med, med[1:]))  # falls at every step of the crash
    assert np.all(health[-1] < health[0])  # for every put writer
    assert np.mean(health[-1] < 1.0) > 0.2  # and many are liquidatable
    assert np.isin(pop.rows, venue.liquidatable()).any()


def test_attentive_writers_top_up_after_their_reaction_delay():
    env, venue, orc, pop = writers(
        n=200,
        strip=StripParams(style_weights={"put": 1.0}),
        attentive_share=1.0,
        reaction_delay_blocks=3,
        wallet_share=5.0,
    )
    step(env, venue, orc, 1500.0)
    alarmed = pop.health() < pop.alarm
    assert alarmed.any()
    for _ in range(3):  # waiting out the delay: no Tx
        assert pop.submit(view(env)) == []
        step(env, venue, orc, 1500.0)
    txs = pop.submit(view(env))
    assert [t.label for t in txs] == ["top_up:options"]
    assert txs[0].gas == pop.params.top_up_gas * int(alarmed.sum())  # gas per user in the batch
    cash0, wallet0, h0 = np.asarray(venue.cash)[pop.rows].copy(), pop.wallet.copy(), pop.health()
    run(txs)
    added = np.asarray(venue.cash)[pop.rows] - cash0
    np.testing.assert_allclose(added, wallet0 - pop.wallet)  # wallet -> venue, account by account
    assert added[alarmed].min() > 0 and np.all(added[~alarmed] == 0)
    # the wallet was large enough: every alarmed account is back at restore_multiple x alarm
    np.testing.assert_allclose(pop.health()[alarmed], pop.target_health[alarmed], rtol=1e-6)
    assert np.all(pop.health()[alarmed] > h0[alarmed])
    assert any(isinstance(e, UserAction) and e.action == "top_up" for e in env.events)


def test_writers_without_a_wallet_buy_back_their_shorts():
    env, venue, orc, pop = writers(
        n=100,
        strip=StripParams(style_weights={"put": 1.0}),
        attentive_share=1.0,
        reaction_delay_blocks=0,
        wallet_share=0.0,
    )
    step(env, venue, orc, 1650.0)
    txs = pop.submit(view(env))
    assert [t.label for t in txs] == ["buy_back:options"]
    opt = option_cols(venue)
    short0 = -np.asarray(venue.qty)[pop.rows][:, opt].sum(axis=1)
    eq = pop.equity()
    acted = (pop.health() < pop.alarm) & (eq > 0)
    run(txs)
    short1 = -np.asarray(venue.qty)[pop.rows][:, opt].sum(axis=1)
    assert np.all(short1[acted] < short0[acted]) and np.all(short1 >= 0)
    np.testing.assert_allclose(short1[~acted], short0[~acted])
    # bought back at mark: equity unchanged, health restored to the target (MM scales with size)
    np.testing.assert_allclose(pop.equity(), eq, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(pop.health()[acted], pop.target_health[acted], rtol=1e-6)


# --- delta hedgers ----------------------------------------------------------------------------------------
def test_slippage_grows_with_size_hand_checked():
    env, venue, orc, pop = hedgers(n=5, slippage_bps_per_million=2.0)
    # X = 2M USD: 2 bps/M x 2 = 4 bps -> 2e6 x 4e-4 = 800 USD; X = 1M: 2 bps -> 200 USD (4x for 2x size)
    np.testing.assert_allclose(pop.slippage_usd(np.array([2e6, -1e6, 0.0])), [800.0, 200.0, 0.0])


def test_hedgers_start_short_gamma_and_delta_neutral():
    env, venue, orc, pop = hedgers()
    opt = option_cols(venue)
    assert np.all(np.asarray(venue.qty)[pop.rows][:, opt] <= 0)
    np.testing.assert_allclose(pop.delta(), 0.0, atol=1e-9 * option_contracts(venue, pop.rows, "ETH").max())
    assert np.all(pop.hedges == 1) and np.all(pop.hedge_slippage_usd >= 0)


def test_hedgers_bring_delta_back_inside_the_band_after_a_move():
    env, venue, orc, pop = hedgers()
    step(env, venue, orc, 2150.0)
    # short strangle after a rise: short calls gain delta -> the book is net short delta, outside its band
    d = pop.delta()
    out = np.abs(d) > pop.band_units()
    assert out.mean() > 0.9 and np.all(d[out] < 0)
    txs = pop.submit(view(env))
    assert [t.label for t in txs] == ["delta_hedge:options"]
    assert txs[0].gas == pop.params.hedge_gas * int(out.sum())
    mm_cash0 = float(np.asarray(venue.cash)[venue.mm_row])
    cost0 = pop.hedge_slippage_usd.copy()
    run(txs)
    assert np.all(np.abs(pop.delta()) <= pop.band_units())
    paid = pop.hedge_slippage_usd - cost0
    assert np.all(paid[out] > 0) and np.all(paid[~out] == 0)
    # the slippage goes to the market maker in venue cash
    assert float(np.asarray(venue.cash)[venue.mm_row]) - mm_cash0 == pytest.approx(
        paid.sum(), abs=1e-4
    )  # MM cash ~1e10
    assert pop.submit(view(env)) == []  # nothing left to do


def _hedge_along(path, seed=2):
    """Hedge along a price path; returns the hedge cost recorded, the cost recomputed from the perp trades (slippage
    X·2 bps·X/1M on each account's rebalance notional X, plus the gas recorded), the units hedged, and the book."""
    env, venue, orc, pop = hedgers(seed=seed)
    cost0 = pop.hedge_cost_usd.sum()
    expected, units = 0.0, 0.0
    for p in path:
        step(env, venue, orc, float(p))
        perp0, gas0 = np.asarray(venue.qty)[pop.rows, pop.perp].copy(), pop.hedge_gas_usd.sum()
        run(pop.submit(view(env)))
        traded = np.abs(np.asarray(venue.qty)[pop.rows, pop.perp] - perp0)
        x = traded * float(p)  # rebalance notional, USD, at the mark (= the path's price)
        expected += float((x * 2.0 * (x / 1e6) * 1e-4).sum()) + (pop.hedge_gas_usd.sum() - gas0)
        units += float(traded.sum())
    return pop.hedge_cost_usd.sum() - cost0, expected, units, pop


def test_hedge_cost_grows_with_a_bigger_move():
    small, small_expected, small_units, _ = _hedge_along(np.linspace(SPOT0, 2100.0, 10))
    big, big_expected, big_units, _ = _hedge_along(np.linspace(SPOT0, 2300.0, 10))
    assert small == pytest.approx(small_expected, rel=1e-9) and big == pytest.approx(big_expected, rel=1e-9)
    # a short-gamma book's delta grows with the move: three times the move, more than twice the units hedged
    assert big_units > 2 * small_units > 0


def test_hedge_cost_grows_with_realised_volatility():
    z = np.random.default_rng(7).standard_normal(40)
    calm = SPOT0 * np.exp(np.cumsum(0.005 * z))  # same shocks, 4x the volatility
    wild = SPOT0 * np.exp(np.cumsum(0.02 * z))
    cost_calm, expected_calm, units_calm, pop_calm = _hedge_along(calm)
    cost_wild, expected_wild, units_wild, pop_wild = _hedge_along(wild)
    assert cost_calm == pytest.approx(expected_calm, rel=1e-9)
    assert cost_wild == pytest.approx(expected_wild, rel=1e-9)
    assert units_wild > 2 * units_calm > 0
    assert pop_wild.hedges.sum() > pop_calm.hedges.sum()


def test_hedge_gas_cost_is_recorded_in_usd():
    env, venue, orc, pop = hedgers(n=20)
    step(env, venue, orc, 2200.0)
    gas0 = pop.hedge_gas_usd.copy()
    run(pop.submit(view(env, base_fee=18.0)))
    # 300,000 gas x (18 + 2) gwei x 1e-9 ETH/gwei x 2,200 USD/ETH = 13.2 USD per account
    np.testing.assert_allclose((pop.hedge_gas_usd - gas0)[pop.hedges == 2], 13.2)


# --- protection buyers ------------------------------------------------------------------------------------
def test_buyers_are_long_puts_bought_with_their_budget():
    env, venue, orc, pop = buyers(premium_budget_share=0.2, cash_usd=Lognormal(median=10_000.0, sigma=0.0))
    qty = np.asarray(venue.qty)[pop.rows]
    kinds = np.asarray(venue.instruments["kind"])
    assert np.all(qty[:, kinds == "put"].sum(axis=1) > 0) and np.all(qty[:, kinds != "put"] == 0)
    # 20% of each account's 10,000 USD went on premium at mark: 2,000 USD of puts, 8,000 USD cash left
    np.testing.assert_allclose(pop.put_value_usd(), 2_000.0, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(venue.cash)[pop.rows], 8_000.0, rtol=1e-9)
    assert env.ledger.balance("protection_buyers", "USDC") == pytest.approx(pop.wallet.sum())
    assert np.all(pop.health() >= 1.0)


def test_put_value_rises_as_price_falls():
    env, venue, orc, pop = buyers(roll=False)
    values = [pop.put_value_usd()]
    for p in (1800.0, 1600.0, 1300.0):  # each leg over 200 blocks (40 min)
        glide(env, venue, orc, p, 200)
        values.append(pop.put_value_usd())
    for a, b in zip(values, values[1:]):
        assert np.all(b > a)
    assert np.all(pop.equity() > pop.initial_cash)  # protection paid off at 1,300


def test_buyers_roll_puts_before_expiry():
    env, venue, orc, pop = buyers(
        n=50,
        strip=StripParams(style_weights={"put": 1.0}, otm_low=0.1, otm_high=0.1, expiry_days={7.0: 1.0}),
        roll_before_days=2.0,
    )
    old = pop.put_instrument.copy()
    held0 = pop.puts.copy()
    assert pop.submit(view(env)) == []
    blocks = int(5.5 * DAY / env.clock.block_seconds)  # 1.5 days left
    env.clock.block += blocks - 1
    step(env, venue, orc, 1800.0)
    txs = pop.submit(view(env))
    assert [t.label for t in txs] == ["roll_puts:options"]
    run(txs)
    ins = venue.instruments
    assert np.all(pop.put_instrument != old)
    # same 10% OTM distance from the new spot: 0.9 x 1,800 = 1,620 on the 2.5% x 2,000 = 50 USD grid -> 1,600
    np.testing.assert_allclose(np.asarray(ins["strike"])[pop.put_instrument], 1600.0)
    np.testing.assert_allclose(np.asarray(ins["expiry_t"])[pop.put_instrument] - env.clock.seconds, 7 * DAY)
    qty = np.asarray(venue.qty)[pop.rows]
    assert np.all(qty[np.arange(pop.rows.size), old] == 0)
    np.testing.assert_allclose(qty[np.arange(pop.rows.size), pop.put_instrument], pop.puts)
    assert np.all(pop.puts <= held0 + 1e-12) and np.all(pop.puts > 0)


# --- through the venue only -------------------------------------------------------------------------------
def _state(venue):
    return {k: np.array(getattr(venue, k), copy=True) for k in ("cash", "qty")}


def test_every_tx_acts_through_venue_methods_only(monkeypatch):
    """With the venue's mutating methods replaced by recorders, running every Tx leaves venue state unchanged."""
    env, venue, orc, w = writers(
        n=80,
        strip=StripParams(style_weights={"put": 1.0}),
        attentive_share=1.0,
        reaction_delay_blocks=0,
        wallet_share=0.1,
    )
    h = DeltaHedgers(model(4), DeltaHedgersParams(accounts=40), venue, np.random.default_rng(4))
    b = ProtectionBuyers(
        model(5), ProtectionBuyersParams(accounts=40, roll_before_days=40.0), venue, np.random.default_rng(5)
    )
    step(env, venue, orc, 1500.0)
    txs = w.submit(view(env)) + h.submit(view(env)) + b.submit(view(env))
    assert {t.label.split(":")[0] for t in txs} == {"top_up", "buy_back", "delta_hedge", "roll_puts"}
    calls = []
    for name in ("trade", "deposit", "withdraw", "deposit_spot"):
        monkeypatch.setattr(venue, name, lambda *a, _n=name, **k: calls.append(_n))
    before, bal = _state(venue), env.ledger.snapshot()
    run(txs)
    after = _state(venue)
    np.testing.assert_array_equal(after["cash"], before["cash"])
    k = before["qty"].shape[1]  # rolls list new instruments (a venue
    np.testing.assert_array_equal(after["qty"][:, :k], before["qty"])  # method); nobody holds them
    assert np.all(after["qty"][:, k:] == 0)
    assert {"trade", "deposit"} <= set(calls)
    assert env.ledger.snapshot() == bal  # no token moved outside the venue


def test_tx_through_the_block_builder_pays_gas_and_conserves_value():
    env, venue, orc, pop = hedgers(n=30)
    step(env, venue, orc, 2200.0)
    txs = pop.submit(view(env))
    eth0 = env.ledger.balance("delta_hedgers", "ETH")
    stats = build_block(txs, env, base_fee_gwei=10.0, gas_limit=30e6, background_gas=0.0, background_tip_gwei=1.0)
    assert stats.included == 1 and stats.reverted == 0
    assert eth0 - env.ledger.balance("delta_hedgers", "ETH") == pytest.approx(txs[0].gas * 12.0 * GWEI)
    assert np.all(np.abs(pop.delta()) <= pop.band_units())
    assert venue.accounting_gap_usd() == pytest.approx(0.0, abs=1e-3)


@settings(max_examples=15, deadline=None)
@given(st.floats(0.05, 1.0), st.floats(0.0, 50.0))
def test_slippage_is_convex_in_size(k_bps, x_m):
    """Doubling a rebalance more than doubles its cost: cost(2X) = 4 cost(X) (quadratic in size)."""
    env, venue, orc, pop = hedgers(n=1, slippage_bps_per_million=k_bps)
    x = x_m * 1e6
    assert pop.slippage_usd(np.array([2 * x]))[0] == pytest.approx(
        4 * pop.slippage_usd(np.array([x]))[0], rel=1e-12, abs=1e-12
    )


def test_options_deltas_follow_black76_sign_conventions():
    env, venue, orc, pop = buyers(n=20, roll=False)
    d = option_deltas(venue, pop.rows, "ETH")
    assert np.all(d < 0) and np.all(d > -pop.puts)  # long OTM puts: -qty < delta < 0


def test_hedges_below_initial_margin_go_through_when_they_reduce_risk():
    env, venue, orc, pop = hedgers(n=60, target_margin_usage=1.0)  # IM = all of the cash at set-up
    glide(env, venue, orc, 2300.0, 20)
    m = venue.margin()
    below = m.equity[pop.rows] < m.im[pop.rows]
    assert below.mean() > 0.5  # most books are now below IM
    run(pop.submit(view(env)))
    assert pop.refused == 0
    assert np.all(np.abs(pop.delta()) <= pop.band_units())
    assert np.all(venue.margin().mm[pop.rows][below] < m.mm[pop.rows][below])  # the hedge lowered MM


@pytest.mark.parametrize("margin_model", ["derive-pm2", "lyra-pmrm-v1"])
def test_writers_size_to_the_venue_margin_model(margin_model):
    env, venue, orc, pop = writers(n=60, venue_kw={"margin_model": margin_model}, target_margin_usage=0.3)
    im = venue.margin().im[pop.rows]
    one_leg = np.bincount(pop.legs.local, minlength=60) == 1
    assert np.all(im <= 0.3 * pop.initial_cash)
    np.testing.assert_allclose(im[one_leg], 0.3 * pop.initial_cash[one_leg], rtol=1e-6)


def test_option_deltas_are_recomputed_when_the_market_moves_and_reused_otherwise():
    """The per-unit deltas are kept per market state: after a price move and a block they equal Black-76 computed
    here by hand from the venue's surface (independent of option_book), and a trade alone (no market change) keeps
    them (the net delta still follows the new quantities)."""
    from defistress.agents.option_book import _DELTAS
    from defistress.protocols.margin import black76
    from defistress.protocols.margin.portfolio import CALL, PERP, PUT

    env, venue, orc, pop = buyers(n=10, roll=False)
    venue.list_instrument("ETH", "call", 2400.0, 20 * 86_400.0)  # a call and a perp besides the bought puts
    venue.list_instrument("ETH", "perp")

    def by_hand() -> np.ndarray:
        f = float(orc["ETH"].price)
        opt = (venue.inst_kind == CALL) | (venue.inst_kind == PUT)
        d = np.where(venue.inst_kind == PERP, 1.0, 0.0)
        tau = np.maximum(venue.inst_expiry_t[opt] - env.clock.seconds, 0.0)
        vol = venue.surfaces["ETH"].vol(venue.inst_strike[opt], tau, np.full(int(opt.sum()), f))
        d[opt] = black76.delta(f, venue.inst_strike[opt], black76.annualise(tau), vol, venue.inst_kind[opt] == CALL)
        return np.asarray(venue.qty)[pop.rows] @ d

    assert np.array_equal(option_deltas(venue, pop.rows, "ETH"), by_hand())
    first = _DELTAS[venue]["ETH"][1]
    step(env, venue, orc, 1700.0)
    assert np.array_equal(option_deltas(venue, pop.rows, "ETH"), by_hand())
    assert _DELTAS[venue]["ETH"][1] is not first  # a new market state: recomputed
    kept = _DELTAS[venue]["ETH"][1]
    for i in (int(np.flatnonzero(venue.inst_kind == CALL)[0]), int(np.flatnonzero(venue.inst_kind == PERP)[0])):
        venue.trade(pop.holder, pop.rows[:1], i, [1.0])
    assert np.array_equal(option_deltas(venue, pop.rows, "ETH"), by_hand())
    assert _DELTAS[venue]["ETH"][1] is kept  # same market: reused
