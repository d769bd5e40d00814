"""OptionsVenue: marks, trades, expiry and perp settlement, Derive auction, partial and controller closes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from defistress.protocols import options_auction as da
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import BadDebt, Liquidated
from defistress.protocols.options import OptionsVenue, OptionsVenueParams
from defistress.protocols.vol import VolSurfaceParams

DAY = 86_400.0
MAINNET = da.AuctionSchedule()
FLAT = VolSurfaceParams(skew=0.0, curvature=0.0)
FROZEN = VolSurfaceParams(skew=0.0, curvature=0.0, level_coupling=0.0, skew_coupling=0.0)  # no vol reaction


def make(params=None, price=2000.0, alice=(20_000.0,), sm_usd=0.0):
    env = Env()
    oracle = FixedPrice(price)
    for h in ("mm", "alice", "liq"):
        env.ledger.mint("USDC", h, 1e7, "test")
    env.ledger.mint("ETH", "alice", 100.0, "test")
    prm = params or OptionsVenueParams(vol=FLAT, security_module_usd=sm_usd)
    v = OptionsVenue(prm, {"ETH": oracle, "USDC": FixedPrice(1.0)}, env)
    v.set_market_maker(int(v.open_accounts("mm", [1e6])[0]))
    rows = v.open_accounts("alice", list(alice))
    liq = int(v.open_accounts("liq", [200_000.0])[0])
    return v, env, oracle, rows, liq


def step(v, env, oracle=None, price=None, seconds=12.0):
    if price is not None:
        oracle.price = price
    env.clock.block += int(round(seconds / env.clock.block_seconds))
    v.accrue(seconds)


def conserved(v, env):
    env.ledger.check_conservation()
    assert abs(v.accounting_gap_usd()) < 1e-6
    for i in np.flatnonzero(v.inst_active):
        assert abs(v.qty[:, i].sum()) < 1e-9


# --- auction maths, mainnet parameters ------------------------------------------------------------
def test_discount_at_fast_slow_and_insolvent_times():
    # fast: d = 0.95 - 0.25 t/900; slow: d = 0.70 (1 - (t - 900)/43200); 0 after 44,100 s
    assert float(da.discount(0, MAINNET)) == pytest.approx(0.95)
    assert float(da.discount(450, MAINNET)) == pytest.approx(0.825)  # 0.95 - 0.25 x 0.5
    assert float(da.discount(900, MAINNET)) == pytest.approx(0.70)
    assert float(da.discount(900 + 21_600, MAINNET)) == pytest.approx(0.35)  # 0.70 x (1 - 0.5)
    assert float(da.discount(50_000, MAINNET)) == 0.0
    assert [da.phase(t, False, MAINNET) for t in (10, 1000, 50_000)] == ["fast", "slow", "insolvent"]
    # insolvent payout: |BM| = 1000 rising over 3600 s: 1800 s -> 500, capped at 1000
    assert float(da.insolvent_payout(-1000.0, 1800, MAINNET)) == pytest.approx(500.0)
    assert float(da.insolvent_payout(-1000.0, 7200, MAINNET)) == pytest.approx(1000.0)


def test_max_fraction_and_start_fee_by_hand():
    # E = 1000, mm = 1200, bp 0.15: BM = 1000 - 1200 x 1.15 = -380
    bm = float(da.buffer_margin(1000.0, 1200.0, 0.15))
    assert bm == pytest.approx(-380.0)
    # d = 0.95: f = -380 / (-380 - 950) = 2/7; after the sale BM = (5/7)(-380) + (2/7) 950 = 0
    assert float(da.max_fraction(1000.0, bm, 0.95)) == pytest.approx(2 / 7)
    # reserved cash R = 200, d = 0.5: f = -380 / (-380 - 500 - 100) = 380/980
    assert float(da.max_fraction(1000.0, bm, 0.5, 200.0)) == pytest.approx(380 / 980)
    # start fee = f(d=1) |MtM| rate = 380/1380 x 1000 x 0.10 = 27.536
    assert float(da.start_fee(1000.0, bm, MAINNET)) == pytest.approx(27.5362, abs=1e-4)


@settings(max_examples=100, deadline=None)
@given(st.floats(10, 1e6), st.floats(1.01, 5), st.floats(0.01, 1.0), st.floats(0, 0.3))
def test_max_fraction_restores_buffer_margin_to_zero(equity, mm_mult, d, bp):
    mm = equity * mm_mult
    bm = float(da.buffer_margin(equity, mm, bp))
    f = float(da.max_fraction(equity, bm, d))
    assert 0 < f <= 1
    assert (1 - f) * bm + f * equity * d == pytest.approx(0.0, abs=1e-6 * equity)


# --- marks, trades, settlement -----------------------------------------------------------------------
def test_put_mark_matches_black76_by_hand():
    # F = 2000, K = 1800, T = 7/365, sigma 0.65 (flat calm surface): sigma sqrt T = 0.0900152
    # d1 = (ln(2000/1800) + 0.5 x 0.0900152^2)/0.0900152 = 1.215482, d2 = 1.125467
    # P = 1800 N(-d2) - 2000 N(-d1) = 1800 x 0.1301956 - 2000 x 0.1120911 = 10.16985
    v, env, *_ = make()
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    assert v.mark_prices()[put] == pytest.approx(10.16985, abs=1e-4)
    assert v.list_instrument("ETH", "put", 1800.0, 7 * DAY) == put  # idempotent


def test_trade_moves_premium_and_is_zero_sum():
    v, env, oracle, rows, liq = make()
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    mark = v.mark_prices()[put]
    v.trade("alice", rows, put, [-3.0])
    assert v.qty[rows[0], put] == -3.0 and v.qty[v.mm_row, put] == 3.0
    assert v.cash[rows[0]] == pytest.approx(20_000.0 + 3 * mark)
    assert v.cash[v.mm_row] == pytest.approx(1e6 - 3 * mark)
    conserved(v, env)


def test_reverted_trade_and_withdraw_leave_state_unchanged():
    v, env, oracle, rows, liq = make(alice=(1000.0,))
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    snap = (v.cash.copy(), v.qty.copy(), env.ledger.snapshot())
    with pytest.raises(Revert, match="initial margin"):
        v.trade("alice", rows, put, [-50.0])
    with pytest.raises(Revert, match="does not own"):
        v.trade("liq", rows, put, [1.0])
    with pytest.raises(Revert):
        v.withdraw("alice", rows, [5000.0])
    np.testing.assert_array_equal(v.cash, snap[0])
    np.testing.assert_array_equal(v.qty, snap[1])
    assert env.ledger.snapshot() == snap[2]


def test_withdraw_below_initial_margin_reverts_but_free_cash_leaves():
    v, env, oracle, rows, liq = make(alice=(3000.0,))
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", rows, put, [-5.0])
    im = v.margin(rows).im[0]
    free = v.equity()[rows[0]] - im
    with pytest.raises(Revert, match="initial margin"):
        v.withdraw("alice", rows, [free + 1.0])
    before = env.ledger.balance("alice", "USDC")
    v.withdraw("alice", rows, [free - 1.0])
    assert env.ledger.balance("alice", "USDC") == pytest.approx(before + free - 1.0)
    conserved(v, env)


def test_expiry_settles_intrinsic_value():
    # alice short 2 puts K=1800 and long 1 call K=2200; spot 1500 at expiry:
    # put payoff 300/unit -> alice -600, mm +600; call payoff 0
    v, env, oracle, rows, liq = make()
    put = v.list_instrument("ETH", "put", 1800.0, 60.0)
    call = v.list_instrument("ETH", "call", 2200.0, 60.0)
    v.trade("alice", rows, put, [-2.0])
    v.trade("alice", rows, call, [1.0])
    cash_a, cash_m = v.cash[rows[0]], v.cash[v.mm_row]
    step(v, env, oracle, 1500.0, seconds=72.0)
    assert v.cash[rows[0]] == pytest.approx(cash_a - 600.0)
    assert v.cash[v.mm_row] == pytest.approx(cash_m + 600.0)
    assert not v.inst_active[put] and not v.inst_active[call] and (v.qty[:, [put, call]] == 0).all()
    conserved(v, env)


def test_perps_settle_pnl_to_cash_each_block():
    # long 2 perps at 2000, oracle 2100: +200 to alice, -200 to the market maker
    v, env, oracle, rows, liq = make()
    perp = v.list_instrument("ETH", "perp")
    v.trade("alice", rows, perp, [2.0])
    cash_a = v.cash[rows[0]]
    step(v, env, oracle, 2100.0)
    assert v.cash[rows[0]] == pytest.approx(cash_a + 200.0)
    assert v.cash[v.mm_row] == pytest.approx(1e6 - 200.0)
    assert v.metrics()["mm_pnl_usd"] == pytest.approx(-200.0)
    conserved(v, env)


def test_spot_collateral_counts_in_equity():
    v, env, oracle, rows, liq = make()
    v.deposit_spot("alice", rows, "ETH", [2.0])
    assert v.equity()[rows[0]] == pytest.approx(20_000.0 + 4000.0)
    assert env.ledger.balance(v.id, "ETH") == 2.0
    conserved(v, env)


# --- liquidation ---------------------------------------------------------------------------------
def crashed(params=None, crash=1500.0, sm_usd=0.0):
    params = params or OptionsVenueParams(vol=FROZEN, security_module_usd=sm_usd)
    v, env, oracle, rows, liq = make(params, alice=(1100.0,), sm_usd=sm_usd)
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", rows, put, [-4.0])
    oracle.price = crash
    env.clock.block += 1
    return v, env, oracle, rows, liq, put


def test_start_auction_charges_fee_to_security_module_and_reverts_when_healthy():
    v, env, oracle, rows, liq = make()
    with pytest.raises(Revert, match="above maintenance"):
        v.start_auction(int(rows[0]))
    v, env, oracle, rows, liq, put = crashed(crash=1700.0)
    a = int(rows[0])
    eq, mm = v.equity()[a], v.margin().mm[a]
    assert 0 < eq < mm
    bm = eq - mm * 1.15
    fee = bm / (bm - eq) * eq * 0.10  # f_max(d=1) |MtM| feeRate
    v.start_auction(a)
    assert env.ledger.balance(v.security_module, "USDC") == pytest.approx(fee)
    assert v.auction_state(a).phase == "fast" and v.auction_discount(a) == pytest.approx(0.95)
    conserved(v, env)


def test_solvent_bid_takes_max_fraction_at_discount():
    v, env, oracle, rows, liq, put = crashed(crash=1700.0)
    a = int(rows[0])
    v.start_auction(a)
    step(v, env, seconds=456.0)  # 38 blocks: 456 s into the fast phase
    st = v.auction_state(a)
    d = 0.95 - 0.25 * 456 / 900
    assert st.discount == pytest.approx(d)
    f = st.buffer_margin_usd / (st.buffer_margin_usd - st.equity_usd * d)
    qty_a, cash_a, cash_l = v.qty[a, put], v.cash[a], v.cash[liq]
    ev = v.bid(a, "liq", liq, 1.0)
    assert isinstance(ev, Liquidated) and ev.collateral_seized == pytest.approx(f)
    assert v.qty[a, put] == pytest.approx(qty_a * (1 - f))
    assert v.qty[liq, put] == pytest.approx(qty_a * f)
    pay = st.equity_usd * d * f
    assert v.cash[liq] == pytest.approx(cash_l + f * cash_a - pay)
    assert v.cash[a] == pytest.approx(cash_a * (1 - f) + pay)
    assert v.auction_state(a).phase == "none"  # buffer margin restored: auction ended
    conserved(v, env)


def test_insolvent_auction_security_module_pays_then_bad_debt_is_socialised():
    v, env, oracle, rows, liq, put = crashed(crash=1200.0, sm_usd=100.0)
    a = int(rows[0])
    assert v.equity()[a] < 0
    v.start_auction(a)
    assert v.auction_state(a).phase == "insolvent"
    step(v, env, seconds=1800.0)
    st = v.auction_state(a)
    assert st.payout_usd == pytest.approx(v.auction_lower[a] * 0.5)  # |BM at start| x 1800/3600 s
    gross = float(np.abs(v.qty[a]) @ np.abs(v.mark_prices()) + v.spot[a] @ v.prices())
    ev = v.bid(a, "liq", liq, 1.0)
    assert ev.debt_repaid_usd == pytest.approx(gross) and gross > 0  # volume: the mark value taken over
    assert ev.collateral_seized_usd - ev.bonus_usd == pytest.approx(-st.payout_usd)  # the module paid the bidder
    assert env.ledger.balance(v.security_module, "USDC") == pytest.approx(0.0)
    assert v.bad_debt_usd == pytest.approx(st.payout_usd - 100.0)
    assert any(isinstance(e, BadDebt) for e in env.events)
    assert (v.qty[a] == 0).all()
    conserved(v, env)


def test_bid_reverts_on_healthy_controlled_or_unowned_row_and_state_is_unchanged():
    v, env, oracle, rows, liq, put = crashed(crash=1700.0)
    a = int(rows[0])
    with pytest.raises(Revert, match="no auction"):
        v.bid(a, "liq", liq, 0.5)
    v.start_auction(a)
    snap = (v.cash.copy(), v.qty.copy())
    with pytest.raises(Revert, match="does not own"):
        v.bid(a, "alice", liq, 0.5)
    with pytest.raises(Revert, match="fraction"):
        v.bid(a, "liq", liq, 1.5)
    v.set_controlled([a])
    with pytest.raises(Revert, match="controlled"):
        v.bid(a, "liq", liq, 0.5)
    assert a not in v.liquidatable()
    np.testing.assert_array_equal(v.cash, snap[0])
    np.testing.assert_array_equal(v.qty, snap[1])


def test_partial_liquidation_moves_fraction_at_mark_with_penalty():
    prm = OptionsVenueParams(vol=FROZEN, liquidation="partial")
    v, env, oracle, rows, liq, put = crashed(prm, crash=1700.0)
    a = int(rows[0])
    mark = v.mark_prices()[put]
    eq0, cash_a, cash_l = v.equity()[a], v.cash[a], v.cash[liq]
    v.liquidate_partial(a, "liq", liq)
    # 0.25 of -4 puts = -1 put moves; the liquidator is paid 1 x mark to take it; penalty 0.05 x 1 x mark
    penalty = 0.05 * 1.0 * mark
    assert v.qty[a, put] == pytest.approx(-3.0) and v.qty[liq, put] == pytest.approx(-1.0)
    assert v.cash[a] == pytest.approx(cash_a + (-1.0 * mark) - penalty)
    assert v.cash[liq] == pytest.approx(cash_l + 1.0 * mark + penalty)
    assert v.equity()[a] == pytest.approx(eq0 - penalty)
    with pytest.raises(Revert, match="not 'auction'"):
        v.start_auction(a)
    conserved(v, env)


def test_controller_close_moves_exact_fraction_and_penalty():
    v, env, oracle, rows, liq = make()
    a = int(rows[0])
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    perp = v.list_instrument("ETH", "perp")
    v.trade("alice", rows, put, [-4.0])
    v.trade("alice", rows, perp, [2.0])
    v.deposit_spot("alice", rows, "ETH", [1.0])
    v.set_controlled([a])
    mark = v.mark_prices()[put]
    cash_a, cash_l = v.cash[a], v.cash[liq]
    v.controller_close(a, 0.25, "liq", liq, 0.02)
    np.testing.assert_allclose(v.qty[a, [put, perp]], [-3.0, 1.5])
    np.testing.assert_allclose(v.qty[liq, [put, perp]], [-1.0, 0.5])
    assert v.spot[a, 0] == pytest.approx(0.75) and v.spot[liq, 0] == pytest.approx(0.25)
    # paid at mark: 0.25 x (-4 x mark + 2 x 0 (perp settled) + 1 x 2000); penalty 0.02 x (1 mark + 0.5 x 2000 + 500)
    pay = 0.25 * (-4 * mark + 2000.0)
    penalty = 0.02 * (mark + 1000.0 + 500.0)
    assert v.cash[a] == pytest.approx(cash_a + pay - penalty)
    assert v.cash[liq] == pytest.approx(cash_l - pay + penalty)
    conserved(v, env)


def test_settle_out_in_and_write_off():
    v, env, oracle, rows, liq = make(sm_usd=50.0)
    a = int(rows[0])
    moved = v.settle_out(a, 25_000.0, "coord")
    assert moved == pytest.approx(20_000.0) and env.ledger.balance("coord", "USDC") == pytest.approx(20_000.0)
    put = v.list_instrument("ETH", "put", 1800.0, 60.0)
    v.trade("alice", rows, put, [-1.0], check_margin=False)
    step(v, env, oracle, 1000.0, seconds=72.0)  # put expires 800 in the money: alice cash ~ -800 + premium
    assert v.cash[a] < 0
    deficit = -v.cash[a]
    env.ledger.mint("USDC", "coord2", 100.0, "test")
    v.settle_in(a, 100.0, "coord2")
    bad = v.write_off(a)
    assert bad == pytest.approx(deficit - 100.0 - 50.0)
    assert v.cash[a] == pytest.approx(0.0, abs=1e-9)
    assert v.bad_debt_usd == pytest.approx(bad)
    conserved(v, env)


def test_metrics_and_exposures():
    v, env, oracle, rows, liq = make()
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", rows, put, [-3.0])
    m = v.metrics()
    for k in (
        "collateral_usd",
        "debt_usd",
        "bad_debt_usd",
        "accounts_unhealthy",
        "liquidations",
        "liquidation_volume_usd",
        "security_module_usd",
        "atm_vol",
        "open_interest_usd",
        "mm_pnl_usd",
    ):
        assert k in m
    assert m["open_interest_usd"] == pytest.approx(3 * 2000.0)
    assert m["atm_vol"] == pytest.approx(0.65)
    assert v.exposures()[0].amount == pytest.approx(env.ledger.balance(v.id, "USDC"))


def test_bad_params_name_the_field():
    with pytest.raises(ValidationError, match="margin_model"):
        OptionsVenueParams(margin_model="nope")
    with pytest.raises(ValidationError, match="liquidator_fee_rate"):
        OptionsVenueParams(liquidator_fee_rate=0.2)
    with pytest.raises(ValidationError, match="fast_auction_cutoff"):
        OptionsVenueParams(fast_auction_cutoff=0.99)
    with pytest.raises(ValidationError, match="margin_overrides"):
        OptionsVenueParams(margin_overrides={"not_a_field": 1})
    with pytest.raises(ValidationError, match="liquidation"):
        OptionsVenueParams(liquidation="ad")


@pytest.mark.parametrize("model", ["deribit-pm", "derive-pm2", "lyra-standard", "greeks", "cme-span"])
def test_any_options_margin_model_drives_health(model):
    v, env, oracle, rows, liq, put = crashed(OptionsVenueParams(vol=FLAT, margin_model=model), crash=1200.0)
    assert int(rows[0]) in v.liquidatable()
    assert v.mm_row not in v.liquidatable()


@pytest.mark.parametrize("shape", [(0, 0), (0, 4), (4, 0), (3, 1), (40, 7)])
def test_the_venues_nonzero_scan_finds_what_numpy_nonzero_finds(shape):
    """`_nonzero` (used to build the margin portfolio) returns np.nonzero's indices in its order, NaN and subnormals
    counted, -0.0 not, on contiguous and strided arrays."""
    from defistress.protocols.options import _nonzero

    rng = np.random.default_rng(3)
    a = np.zeros(shape)
    if a.size:
        k = max(1, a.size // 4)
        a.flat[rng.choice(a.size, k, replace=False)] = rng.choice([1.0, -2.5, np.nan, -0.0, 5e-324], k)
    for arr in (a, a[::2], a[:, ::2]):
        want, got = np.nonzero(arr), _nonzero(arr)
        assert [g.dtype for g in got] == [w.dtype for w in want]
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
