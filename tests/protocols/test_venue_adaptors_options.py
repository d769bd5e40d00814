"""The options adaptor's portfolio (the venue's own when the underlyings agree), field by field and bit for bit
against the code it replaced (`reference_portfolio`: always rebuilt with remapped underlyings), for the venue's
underlyings, a superset in another order, one missing, every row, one row, rows out of order and none."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.margin.portfolio import Portfolio
from defistress.protocols.options import OptionsVenue, OptionsVenueParams
from defistress.protocols.venue_adaptors import OptionsAdaptor, _und_index

DAY = 86_400.0  # seconds


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
