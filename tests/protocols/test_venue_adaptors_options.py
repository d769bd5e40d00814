"""The options adaptor's per-position spot deltas (one Black-76 delta per distinct series, gathered) and its
portfolio (the venue's own when the underlyings agree), bit for bit against the code they replaced
(`reference_position_delta`, `reference_portfolio`) on crafted books (spot 0, expiry 0, strike 0, -0.0, one
position, no options, several underlyings) and random ones."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.margin.black76 import delta as b76_delta
from defistress.protocols.margin.portfolio import (
    CALL,
    PERP,
    PUT,
    SECONDS_PER_YEAR,
    SPOT,
    MarketState,
    Portfolio,
    is_option,
)
from defistress.protocols.options import OptionsVenue, OptionsVenueParams
from defistress.protocols.venue_adaptors import OptionsAdaptor, _und_index
from defistress.protocols.vol import CoupledVolSurface, VolSurfaceParams


def reference_position_delta(pf: Portfolio, mkt: MarketState) -> np.ndarray:
    """OptionsAdaptor._position_delta as it was: every option priced on its own."""
    d = pf.qty.copy()
    opt = is_option(pf.kind)
    if opt.any():
        u = pf.und[opt]
        t = pf.expiry_s[opt]
        fwd = mkt.forward(u, t, pf.underlyings)
        spot = mkt.spot_array(pf.underlyings)[u]
        sig = mkt.vols(pf.underlyings, u, pf.strike[opt], t, fwd)
        disc = np.exp(-mkt.rate_array(pf.underlyings)[u] * t / SECONDS_PER_YEAR)
        dv = b76_delta(fwd, pf.strike[opt], t / SECONDS_PER_YEAR, sig, pf.kind[opt] == CALL, disc)
        d[opt] = pf.qty[opt] * dv * np.where(spot > 0, fwd / np.where(spot > 0, spot, 1.0), 1.0)
    return d


def reference_portfolio(venue, rows, underlyings: tuple[str, ...]) -> Portfolio:
    """OptionsAdaptor._portfolio as it was: the venue's portfolio always rebuilt with remapped underlyings."""
    pf = venue.portfolio(np.atleast_1d(np.asarray(rows, dtype=np.int64)))
    remap = _und_index(pf.underlyings, underlyings)
    if pf.n_positions and np.any(remap[pf.und] < 0):
        raise ValueError(f"underlyings: {venue.id} needs {pf.underlyings}; given {underlyings}")
    und = remap[pf.und] if pf.n_positions else pf.und
    return Portfolio(
        pf.n_accounts,
        underlyings,
        pf.account,
        pf.kind,
        und,
        pf.qty,
        pf.strike,
        pf.expiry_s,
        pf.entry_price,
        pf.cash,
    )


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


ADAPTOR = OptionsAdaptor(SimpleNamespace(id="options"))


def book(kind, und, qty, strike, expiry_s, unds=("ETH", "BTC"), n=3) -> Portfolio:
    k = np.asarray(kind, dtype=np.int8)
    p = k.size
    return Portfolio(n, unds, np.arange(p) % n, k, np.asarray(und), np.asarray(qty, dtype=np.float64),
                     np.asarray(strike, dtype=np.float64), np.asarray(expiry_s, dtype=np.float64), np.zeros(p),
                     np.zeros(n))  # fmt: skip


def surface(spot: float) -> CoupledVolSurface:
    return CoupledVolSurface(VolSurfaceParams(), spot)


def markets() -> list[MarketState]:
    return [
        MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 0.65, "BTC": 0.5}),
        MarketState(spot={"ETH": 0.0, "BTC": 60_000.0}, vol={"ETH": 0.65, "BTC": 0.5}),  # spot 0: ratio 1
        MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 0.65, "BTC": 0.5}, rate={"ETH": 0.05}),
        MarketState(spot={"ETH": 1500.0, "BTC": 1.0}, vol={"ETH": surface(1500.0), "BTC": 2.0}),
    ]


DAY = 86_400.0
CRAFTED = [
    # one position; no options; options at expiry 0, strike 0, -0.0 expiry next to 0.0, the same series repeated
    ([PUT], [0], [-3.0], [1800.0], [7 * DAY]),
    ([SPOT, PERP], [0, 1], [2.0, -1.0], [0.0, 0.0], [0.0, 0.0]),
    ([CALL, PUT, CALL, PUT], [0, 0, 1, 1], [1.0, -1.0, 2.0, 5.0], [0.0, 2000.0, 60_000.0, 1e-300], [0.0] * 4),
    ([PUT, PUT, PUT], [0, 0, 0], [1.0, 1.0, -1.0], [1800.0] * 3, [-0.0, 0.0, 7 * DAY]),
    ([PUT] * 5 + [CALL] * 5, [0] * 10, [1.0, -2.0, 3.0, -4.0, 5.0] * 2, [1800.0] * 10, [30 * DAY] * 10),
    ([CALL, PUT, SPOT, CALL], [1, 0, 0, 0], [-0.0, 1e-12, 1.0, 1e9], [70_000.0, 2e6, 0.0, 1.0], [DAY, 1.0, 0.0, 4e8]),
]


@pytest.mark.parametrize("case", range(len(CRAFTED)))
def test_position_deltas_of_crafted_books_are_the_position_by_position_bits(case):
    pf = book(*CRAFTED[case])
    for mkt in markets():
        with np.errstate(all="ignore"):
            want = reference_position_delta(pf, mkt)
            got = ADAPTOR._position_delta(pf, mkt)
        np.testing.assert_array_equal(bits(got), bits(want))


@pytest.mark.parametrize("seed", range(6))
def test_position_deltas_of_random_books_are_the_position_by_position_bits(seed):
    rng = np.random.default_rng(seed)
    p = int(rng.integers(1, 400))
    kind = rng.choice(np.array([SPOT, PERP, CALL, PUT], dtype=np.int8), size=p)
    und = rng.integers(0, 2, size=p)
    # few series (the venue lists a grid), so series repeat; some strikes and expiries drawn afresh
    strikes = rng.choice(np.array([1400.0, 1600.0, 1800.0, 2000.0, 2200.0, 50_000.0, 60_000.0]), size=p)
    strikes = np.where(rng.random(p) < 0.1, rng.uniform(0.0, 1e5, size=p), strikes)
    expiry = rng.choice(np.array([0.0, DAY, 7 * DAY, 30 * DAY]), size=p)
    expiry = np.where(rng.random(p) < 0.1, rng.uniform(0.0, 400 * DAY, size=p), expiry)
    opt = (kind == CALL) | (kind == PUT)
    pf = book(kind, und, rng.normal(0.0, 5.0, size=p), np.where(opt, strikes, 0.0), np.where(opt, expiry, 0.0), n=7)
    for mkt in markets():
        with np.errstate(all="ignore"):
            want = reference_position_delta(pf, mkt)
            got = ADAPTOR._position_delta(pf, mkt)
        np.testing.assert_array_equal(bits(got), bits(want))


def options_venue() -> tuple[OptionsVenue, np.ndarray]:
    env = Env()
    eth = FixedPrice(2000.0)
    opt = OptionsVenue(OptionsVenueParams(), {"ETH": eth, "USDC": FixedPrice(1.0)}, env)
    for h in ("mm", "a", "b", "c"):
        env.ledger.mint("USDC", h, 1e7, "t")
    opt.set_market_maker(int(opt.open_accounts("mm", [1e7])[0]))
    put = opt.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    call = opt.list_instrument("ETH", "call", 2400.0, 30 * DAY)
    perp = opt.list_instrument("ETH", "perp")
    rows = np.array([int(opt.open_accounts(h, [50_000.0])[0]) for h in ("a", "b", "c")])
    opt.trade("a", rows[:1], put, [-4.0])
    opt.trade("a", rows[:1], call, [2.0])
    opt.trade("b", rows[1:2], perp, [3.0])
    opt.trade("b", rows[1:2], put, [1.0])
    return opt, rows


FIELDS = ("account", "kind", "und", "qty", "strike", "expiry_s", "entry_price", "cash", "numeraire", "asset", "funding")


@pytest.mark.parametrize("unds", [("ETH",), ("BTC", "ETH"), ("ETH", "SOL")])
@pytest.mark.parametrize("which", [[0, 1, 2], [2], [1, 0], []])
def test_the_portfolio_is_the_rebuilt_one_field_by_field(unds, which):
    opt, rows = options_venue()
    got = OptionsAdaptor(opt)._portfolio(rows[which], unds)
    want = reference_portfolio(opt, rows[which], unds)
    assert (got.n_accounts, got.underlyings, got.labels, got.assets) == (
        want.n_accounts,
        want.underlyings,
        want.labels,
        want.assets,
    )
    for f in FIELDS:
        a, b = getattr(got, f), getattr(want, f)
        assert a.dtype == b.dtype, f
        np.testing.assert_array_equal(a, b, err_msg=f)
        if a.dtype == np.float64:
            np.testing.assert_array_equal(bits(a), bits(b), err_msg=f)


def test_a_portfolio_over_underlyings_that_miss_the_venues_is_refused():
    opt, rows = options_venue()
    with pytest.raises(ValueError, match="needs"):
        OptionsAdaptor(opt)._portfolio(rows, ("BTC",))
    with pytest.raises(ValueError, match="needs"):
        reference_portfolio(opt, rows, ("BTC",))
