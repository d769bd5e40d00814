"""The options venue's per-row margin cache (protocols/options_margin_cache.py): after every kind of state change
each row's cached requirement equals, bit for bit, a fresh computation of the whole book by the margin model
(the independent reference: the model called directly on the venue's portfolio, no cache involved), and only
the rows that changed are sent to the model again."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.margin.catalog import get_model
from defistress.protocols.options import OptionsVenue, OptionsVenueParams
from defistress.protocols.vol import VolSurfaceParams

DAY = 86_400.0


def sample_trades(v: OptionsVenue, rows) -> tuple[int, int, int]:
    """List an ETH put, call and perp on `v` and have "alice" trade them on her first four `rows`: a short put, a
    short and a long call, a long put against a short one, a perp. Returns the (put, call, perp) instruments."""
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    call = v.list_instrument("ETH", "call", 2200.0, 30 * DAY)
    perp = v.list_instrument("ETH", "perp")
    v.trade("alice", rows[:1], put, [-4.0])
    v.trade("alice", rows[1:3], call, [-2.0, 3.0])
    v.trade("alice", rows[2:4], put, [1.5, -6.0])
    v.trade("alice", rows[3:4], perp, [2.0])
    return put, call, perp


def make(liquidation: str = "auction", oracles: tuple[str, ...] = ("ETH",)):
    """A venue with a market maker, four option writers/buyers, a perp trader, spot collateral and a liquidator."""
    env = Env()
    feeds = {u: FixedPrice(p) for u, p in zip(oracles, (2000.0, 60_000.0))}
    for h in ("mm", "alice", "liq"):
        env.ledger.mint("USDC", h, 1e8, "test")
    for u in oracles:
        env.ledger.mint(u, "alice", 100.0, "test")
    prm = OptionsVenueParams(vol=VolSurfaceParams(), liquidation=liquidation, security_module_usd=50.0)
    v = OptionsVenue(prm, {**feeds, "USDC": FixedPrice(1.0)}, env)
    v.set_market_maker(int(v.open_accounts("mm", [1e7])[0]))
    rows = v.open_accounts("alice", [1100.0, 5000.0, 20_000.0, 50_000.0, 8000.0])
    liq = int(v.open_accounts("liq", [500_000.0])[0])
    put, call, perp = sample_trades(v, rows)
    v.deposit_spot("alice", rows[4:], "ETH", [1.0])
    return v, env, feeds, rows, liq, (put, call, perp)


def fresh(v: OptionsVenue):
    """The whole book's requirements from the margin model itself (no cache)."""
    return v.model.requirements(v.portfolio(), v.market_state())


def assert_cache_exact(v: OptionsVenue) -> None:
    got, ref = v.margin(), fresh(v)
    assert np.array_equal(got.im, ref.im) and np.array_equal(got.mm, ref.mm)
    for k, d in ref.drivers.items():
        if np.ndim(d) == 1 and len(d) == v.n_accounts:
            assert np.array_equal(got.drivers[k], d, equal_nan=True), k
    assert got.model == ref.model


def computed(v: OptionsVenue) -> int:
    return v._rows_cache.rows_computed


def test_a_trade_recomputes_only_the_two_rows_it_moved_and_matches_a_fresh_book():
    v, env, feeds, rows, liq, (put, call, perp) = make()
    assert_cache_exact(v)
    before = computed(v)
    v.trade("alice", rows[2:3], call, [-1.0])  # the row and the market maker's row
    assert_cache_exact(v)
    assert computed(v) - before == 2
    before = computed(v)
    v.margin()
    v.health()
    assert computed(v) == before  # nothing changed: nothing recomputed


def test_deposit_withdraw_and_spot_collateral_recompute_the_row_only():
    v, env, feeds, rows, liq, _ = make()
    v.margin()
    before = computed(v)
    v.deposit("alice", rows[1:2], [100.0])
    v.deposit_spot("alice", rows[3:4], "ETH", [0.5])
    v.withdraw("alice", rows[2:3], [10.0])
    assert_cache_exact(v)
    assert computed(v) - before == 3


def test_a_price_move_a_block_and_accrual_recompute_every_row():
    v, env, feeds, rows, liq, _ = make()
    v.margin()
    feeds["ETH"].price = 1700.0
    assert_cache_exact(v)
    before = computed(v)
    env.clock.block += 25  # time to expiry shrinks
    assert_cache_exact(v)
    assert computed(v) - before == v.n_accounts
    v.accrue(300.0)  # vol surface, perp settlement to cash
    assert_cache_exact(v)


def test_an_auction_start_and_bids_keep_every_row_exact():
    v, env, feeds, rows, liq, _ = make()
    feeds["ETH"].price = 1650.0
    env.clock.block += 1
    a = int(rows[0])
    assert a in v.liquidatable()
    v.start_auction(a)  # fee from the row's cash
    assert_cache_exact(v)
    env.clock.block += 40
    v.accrue(480.0)
    before = computed(v)
    v.bid(a, "liq", liq, 0.5)  # a share of the row moves to the liquidator's row
    assert_cache_exact(v)
    assert computed(v) - before >= 2 and computed(v) - before < v.n_accounts + 2


def test_an_insolvent_bid_that_socialises_a_loss_and_a_write_off_keep_every_row_exact():
    v, env, feeds, rows, liq, _ = make()
    feeds["ETH"].price = 1100.0
    env.clock.block += 1
    a = int(rows[0])
    assert v.equity()[a] < 0
    v.start_auction(a)
    env.clock.block += 150
    v.accrue(1800.0)
    v.bid(a, "liq", liq, 1.0)  # the security module (50 USD) pays, the rest is socialised over positive cash
    assert v.bad_debt_usd > 0
    assert_cache_exact(v)


def test_partial_liquidation_and_controller_close_keep_every_row_exact():
    v, env, feeds, rows, liq, _ = make(liquidation="partial")
    feeds["ETH"].price = 1650.0
    env.clock.block += 1
    v.margin()
    v.liquidate_partial(int(rows[0]), "liq", liq)
    assert_cache_exact(v)
    v.set_controlled(rows[3:4])
    v.controller_close(int(rows[3]), 0.5, "liq", liq, 0.02)
    v.settle_out(int(rows[3]), 10.0, "alice")
    v.settle_in(int(rows[3]), 5.0, "alice")
    assert_cache_exact(v)


def test_a_parameter_or_vol_change_and_a_new_listing_recompute_every_row():
    v, env, feeds, rows, liq, (put, _, _) = make()
    v.margin()
    v.model = get_model("deribit-pm", mm_factor=0.9)  # a new model object: every row again
    assert_cache_exact(v)
    before = computed(v)
    v.surfaces["ETH"].variance *= 4.0  # the surface state moved (as accrual does)
    assert_cache_exact(v)
    assert computed(v) - before == v.n_accounts
    new = v.list_instrument("ETH", "call", 2600.0, 7 * DAY)
    v.trade("alice", rows[3:4], new, [-1.0])
    assert_cache_exact(v)


def test_new_rows_join_the_cache_and_results_handed_out_are_never_rewritten():
    v, env, feeds, rows, liq, (put, _, _) = make()
    old = v.margin()
    im_old = old.im.copy()
    extra = v.open_accounts("alice", [3000.0, 4000.0])
    v.trade("alice", extra, put, [-1.0, -2.0])
    assert_cache_exact(v)
    assert np.array_equal(old.im, im_old)  # copy on write
    assert v.margin().im.size == v.n_accounts


def test_a_row_written_behind_the_venues_back_is_still_caught_at_the_next_state_change():
    v, env, feeds, rows, liq, (put, _, _) = make()
    v.margin()
    v.qty[int(rows[1]), put] -= 1.0  # no _touch: the venue's caches trust their state version ...
    v.qty[v.mm_row, put] += 1.0
    v.deposit("alice", rows[2:3], [1.0])  # ... until the next state change, when rows are compared bit for bit
    assert_cache_exact(v)


def test_a_trade_that_reverts_leaves_the_cache_exact():
    v, env, feeds, rows, liq, (put, _, _) = make()
    v.margin()
    with pytest.raises(Revert, match="below initial margin"):
        v.trade("alice", rows[:1], put, [-1000.0])
    assert_cache_exact(v)


def test_offsetting_gains_across_underlyings_fall_back_to_the_whole_book():
    # Deribit's cross-underlying offset depends on which underlyings the batch holds: not separable per row
    v, env, feeds, rows, liq, (put, call, _) = make(oracles=("ETH", "BTC"))
    btc = v.list_instrument("BTC", "put", 55_000.0, 7 * DAY)
    v.trade("alice", rows[1:2], btc, [-0.1])
    assert_cache_exact(v)
    before = computed(v)
    v.trade("alice", rows[2:3], call, [-1.0])
    assert_cache_exact(v)
    assert computed(v) - before == v.n_accounts


def assert_rows_exact(v: OptionsVenue, sub) -> None:
    """margin(sub) equals the fresh whole book at `sub`: IM, MM, equity, every per-row driver (values, dtype, order)."""
    sub = np.atleast_1d(np.asarray(sub, dtype=np.int64))
    got, ref = v.margin(sub), fresh(v)
    per_row = [k for k, d in ref.drivers.items() if np.ndim(d) == 1 and len(d) == v.n_accounts]
    assert list(got.drivers) == per_row
    for k in per_row:
        want = np.asarray(ref.drivers[k])[sub]
        assert got.drivers[k].dtype == want.dtype, k
        assert np.array_equal(got.drivers[k], want, equal_nan=True), k
    assert np.array_equal(got.im, ref.im[sub]) and np.array_equal(got.mm, ref.mm[sub])
    assert np.array_equal(got.equity, v.equity()[sub])
    assert got.model == ref.model


def test_a_row_subset_of_the_margin_is_the_whole_book_indexed_driver_by_driver():
    """margin(rows): each driver equals the fresh whole-book driver at those rows, with the driver's own dtype (the
    worst scenario stays an integer), in the same order, also after a trade."""
    v, env, feeds, rows, liq, (put, call, perp) = make()
    for _ in range(2):
        sub = np.array([rows[3], v.mm_row, rows[0], rows[3]])
        assert_rows_exact(v, sub)
        assert v.margin(sub).drivers["worst_scenario"].dtype.kind == "i"
        v.trade("alice", rows[3:4], call, [-1.0])  # a new whole-book result: the stack is rebuilt from it


def test_rows_current_after_a_trade_elsewhere_are_served_without_a_batch_and_stale_ones_are_batched_together():
    v, env, feeds, rows, liq, (put, call, perp) = make()
    v.margin()
    v.trade("alice", rows[2:3], call, [-1.0])  # moves rows[2] and the market maker's row
    batches = v._rows_cache.batches
    assert_rows_exact(v, [rows[0], liq, rows[0]])
    assert v._rows_cache.batches == batches  # untouched rows: no call of the model
    before = computed(v)
    assert_rows_exact(v, [rows[2]])
    assert computed(v) - before == 2  # the asked stale row with the other stale row, in one batch
    assert v._rows_cache.batches == batches + 1
    assert_cache_exact(v)


def test_a_new_market_makes_every_row_stale_for_a_row_subset_too():
    v, env, feeds, rows, liq, _ = make()
    v.margin()
    env.clock.block += 5
    before = computed(v)
    assert_rows_exact(v, [rows[1]])
    assert computed(v) - before == v.n_accounts


def test_an_empty_row_subset_on_a_fresh_venue_reads_the_whole_book():
    v, env, feeds, rows, liq, _ = make()
    v._rows_cache.invalidate()
    v._touch()
    got = v.margin(np.zeros(0, dtype=np.int64))
    assert got.im.size == 0 and got.model == fresh(v).model


def test_offsetting_gains_across_underlyings_recompute_the_book_for_a_current_row_too():
    v, env, feeds, rows, liq, (put, call, _) = make(oracles=("ETH", "BTC"))
    btc = v.list_instrument("BTC", "put", 55_000.0, 7 * DAY)
    v.trade("alice", rows[1:2], btc, [-0.1])
    v.margin()
    v.trade("alice", rows[2:3], call, [-1.0])
    before = computed(v)
    assert_rows_exact(v, [rows[0]])
    assert computed(v) - before == v.n_accounts


@pytest.mark.parametrize("seed", range(6))
def test_random_state_changes_and_row_queries_match_a_fresh_book(seed):
    """Random trades, deposits, withdrawals, price moves and blocks, each followed by random row subsets (with
    repeats, the market maker and the liquidator) and at times the whole book: always the fresh model's figures."""
    rng = np.random.default_rng(seed)
    v, env, feeds, rows, liq, (put, call, perp) = make()
    everyone = np.arange(v.n_accounts)
    for _ in range(25):
        op = rng.integers(6)
        r = rows[rng.integers(rows.size, size=rng.integers(1, 3))]
        try:
            if op == 0:
                v.trade("alice", np.unique(r), int(rng.choice([put, call, perp])), float(rng.normal()))
            elif op == 1:
                v.deposit("alice", r, rng.uniform(0.0, 500.0, r.size))
            elif op == 2:
                v.withdraw("alice", r[:1], [float(rng.uniform(0.0, 50.0))])
            elif op == 3:
                feeds["ETH"].price *= float(rng.uniform(0.97, 1.03))
            elif op == 4:
                env.clock.block += int(rng.integers(1, 20))
            else:
                v.margin()
        except Revert:
            pass
        for _ in range(int(rng.integers(1, 4))):
            assert_rows_exact(v, rng.choice(everyone, size=int(rng.integers(1, 4))))
    assert_cache_exact(v)


def _moved_rows_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The per-row comparison `_moved_rows` replaced: a row moved when any of its float64 bit patterns differs."""
    bits = lambda x: np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)  # noqa: E731
    return (bits(a) != bits(b)).any(axis=1)


@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (5, 0), (7, 4), (40, 79)])
def test_moved_rows_flags_the_same_rows_as_a_per_row_bit_comparison(shape):
    from defistress.protocols.options_margin_cache import _moved_rows

    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    specials = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1.0, np.nextafter(1.0, 2.0), 5e-324])
    for _ in range(30):
        a = rng.choice(specials, size=shape) if rng.random() < 0.5 else rng.normal(size=shape)
        b = a.copy()
        k = int(rng.integers(0, a.size + 1))
        if a.size:
            b.flat[rng.integers(0, a.size, size=k)] = rng.choice(specials, size=k)
        got = np.zeros(shape[0], dtype=bool)
        got[_moved_rows(a, b)] = True
        assert np.array_equal(got, _moved_rows_reference(a, b))
    nan_payload = np.array([[np.nan, 1.0]])
    other = nan_payload.copy()
    other.view(np.uint64)[0, 0] ^= 1  # another NaN: a different bit pattern is a move
    assert _moved_rows(nan_payload, other).tolist() == [0]
    assert _moved_rows(np.array([[0.0]]), np.array([[-0.0]])).tolist() == [0]
    assert _moved_rows(np.array([[2.0, 3.0]]), np.array([[2.0, 3.0]])).size == 0


def test_a_new_market_with_the_same_shapes_recomputes_every_row_from_the_rows_as_they_are_now():
    """After a reset the cache keeps its old state arrays; rows written since (with or without a version bump)
    must still be recomputed from the venue's arrays, and a later in-place write must still show as a move."""
    v, env, feeds, rows, liq, (put, _, _) = make()
    v.margin()
    v.qty[int(rows[1]), put] -= 1.0  # behind the venue's back, before the market moves
    v.qty[v.mm_row, put] += 1.0
    feeds["ETH"].price = 1900.0
    assert_cache_exact(v)
    v.cash[int(rows[2])] += 7.0  # in place on the venue's array the cache took a copy of
    v._touch()
    assert_cache_exact(v)
    v.spot[int(rows[4]), 0] *= 0.5
    v._touch()
    before = computed(v)
    assert_cache_exact(v)
    assert computed(v) - before == 1


def test_the_whole_portfolio_equals_the_portfolio_of_every_row_listed():
    v, env, feeds, rows, liq, _ = make()
    whole, listed = v.portfolio(), v.portfolio(np.arange(v.n_accounts))
    for name in ("account", "kind", "und", "qty", "strike", "expiry_s", "entry_price", "cash"):
        a, b = getattr(whole, name), getattr(listed, name)
        assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8)), name
    whole.cash[0] += 1.0  # the portfolio's cash is its own
    assert v.cash[0] != whole.cash[0]


def test_row_drivers_keep_the_per_row_drivers_only_each_indexed_with_its_own_dtype():
    from defistress.protocols.options import _row_drivers

    drivers = {
        "loss": np.array([1.0, -0.0, np.nan]),
        "worst": np.array([3, 0, 7], dtype=np.int64),
        "grid": np.zeros((3, 2)),  # 2-D: not per row
        "short": np.array([1.0, 2.0]),  # another length: not per row
        "listed": [4.0, 5.0, 6.0],  # a list of one entry per row
        "scalar": 2.0,
    }
    got = _row_drivers(drivers, np.array([2, 1, 2]), 3)
    assert list(got) == ["loss", "worst", "listed"]
    assert got["worst"].dtype == np.int64 and got["worst"].tolist() == [7, 0, 7]
    assert np.array_equal(got["loss"], [np.nan, -0.0, np.nan], equal_nan=True) and np.signbit(got["loss"][1])
    assert got["listed"].tolist() == [6.0, 5.0, 6.0]


def assert_row_margin_exact(v: OptionsVenue, row: int) -> None:
    """row_margin(row) is (equity, MM, IM) of the fresh whole book at the row, bit for bit, as Python floats."""
    got, ref = v.row_margin(row), fresh(v)
    want = (v.equity()[row], ref.mm[row], ref.im[row])
    assert all(type(x) is float for x in got)
    assert np.array_equal(np.array(got).view(np.uint64), np.array(want, dtype=np.float64).view(np.uint64))


@pytest.mark.parametrize("seed", range(4))
def test_row_margin_is_the_margin_of_that_row_with_the_same_batches(seed):
    """row_margin against margin([row]) on a twin venue given the same random changes: the same figures bit for bit
    and the same model batches (a current row is read without one, a stale row batches every stale row, a new market
    the whole book), also for the market maker, after a row written behind the venue's back, and for a book that is
    not separable per row (offsetting gains across two underlyings)."""
    rng = np.random.default_rng(seed)
    oracles = ("ETH", "BTC") if seed == 3 else ("ETH",)
    twins = [make(oracles=oracles), make(oracles=oracles)]
    if seed == 3:
        for v, *_ in twins:
            v.trade("alice", twins[0][3][1:2], v.list_instrument("BTC", "put", 55_000.0, 7 * DAY), [-0.1])
    for step in range(30):
        op, r, x = int(rng.integers(6)), int(rng.integers(5)), float(rng.uniform(-1.0, 1.0))
        for v, env, feeds, rows, _liq, (put, call, perp) in twins:
            try:
                if op == 0:
                    v.trade("alice", rows[r : r + 1], [put, call, perp][r % 3], [x])
                elif op == 1:
                    v.deposit("alice", rows[r : r + 1], [abs(x) * 100.0])
                elif op == 2:
                    feeds["ETH"].price *= 1.0 + 0.02 * x
                elif op == 3:
                    env.clock.block += 1 + r
                elif op == 4:
                    v.qty[int(rows[r]), put] += x  # behind the venue's back: caught at the next state change
                    v.qty[v.mm_row, put] -= x
                    v.deposit("alice", rows[0:1], [1.0])
                else:
                    v.margin()
            except Revert:
                pass
        (a, *_, rows_a, liq_a, _), (b, *_) = twins
        row = [int(rows_a[r]), a.mm_row, liq_a][step % 3]
        m = a.margin([row])
        got = b.row_margin(row)
        assert np.array_equal(np.array(got), np.array([m.equity[0], m.mm[0], m.im[0]]))
        assert (b._rows_cache.batches, b._rows_cache.rows_computed) == (
            a._rows_cache.batches,
            a._rows_cache.rows_computed,
        )
        assert_row_margin_exact(b, row)
    assert_cache_exact(twins[1][0])


def test_copy_into_writes_the_kept_array_when_it_fits_and_copies_otherwise():
    from defistress.protocols.options_margin_cache import _copy_into

    a = np.array([[0.0, -0.0], [np.nan, np.inf], [-np.inf, 5e-324]])
    a[1, 0] = np.frombuffer(np.uint64(0x7FF8_0000_0000_0ABC).tobytes(), dtype=np.float64)[0]  # a NaN payload
    kept = np.ones((3, 2))
    got = _copy_into(kept, a)
    assert got is kept and np.array_equal(got.view(np.uint64), a.view(np.uint64))
    a[0, 0] = 7.0
    assert got[0, 0] == 0.0  # a copy: later writes to the source do not show
    for other in (np.ones((2, 2)), np.ones((3, 2), dtype=np.float32), np.ones(6)):
        new = _copy_into(other, a)
        assert new is not a and new is not other and new.dtype == a.dtype
        assert np.array_equal(new.view(np.uint64), a.view(np.uint64))
    empty = _copy_into(np.zeros((0, 3)), np.zeros((0, 3)))
    assert empty.shape == (0, 3)
