"""Option writers: many accounts that sell OTM puts and calls on the options venue (the books crashes blow up).

At set-up each account gets cash (lognormal, USD), draws a strip (put, call or strangle; OTM distance; expiry)
and sells it to the venue's market maker at mark. The number of contracts uses `target_margin_usage` of its
free initial margin: qty = usage x cash / IM(one unit), with IM from the venue's margin model (bisection where
the model is not linear in size; a strangle also fits with either leg alone, as legs fill one at a time).
Attentive accounts defend their margin (see option_population).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from defistress.agents.option_book import Legs, StripParams, draw_strip, trade_legs, unit_margin_usd
from defistress.agents.option_population import OptionPopulation, OptionPopulationParams
from defistress.agents.tx import BlockView, Tx
from defistress.protocols.bounds import Float
from defistress.protocols.margin.portfolio import CALL, PUT

SIZE_BISECTION_STEPS = 40  # numerical: qty found to 2^-40 of the linear estimate
SIZE_HEADROOM = 1e-9  # numerical: relative room so float rounding never fails the venue's IM check


class OptionWritersParams(OptionPopulationParams):
    """A population of option sellers (defaults are modelling assumptions, not venue values)."""

    id: str = Field("option_writers", min_length=1, description="ledger holder of the population")
    strip: StripParams = Field(StripParams(), description="which options the accounts sell [assumption]")
    target_margin_usage: Float = Field(
        0.5, gt=0, le=1, description="share of free initial margin (USD) used at set-up [assumption]"
    )


def _im_any_fill_order(venue, underlying: str, legs: Legs, n: int, q: np.ndarray | None) -> np.ndarray:
    """IM (USD) of the whole short strip or of either leg alone, whichever is larger: legs fill one venue call
    at a time, and a strangle can need less margin than its put leg alone."""
    out = unit_margin_usd(venue, underlying, legs, n, -1.0, q)
    for kind in (PUT, CALL):
        m = legs.kind == kind
        if m.any() and not m.all():
            one = Legs(legs.local[m], legs.instrument[m], legs.kind[m], legs.strike[m], legs.expiry_t[m])
            out = np.maximum(out, unit_margin_usd(venue, underlying, one, n, -1.0, q))
    return out


def size_short_book(venue, underlying: str, legs: Legs, n: int, free_usd: np.ndarray, usage: float) -> np.ndarray:
    """Contracts per account (same on each of its legs) whose initial margin is `usage` x free margin (USD).

    Linear first (qty = budget / IM of one unit); where the model charges large books more than linearly (e.g.
    Deribit's extended scenarios), the largest qty whose IM fits the budget, by bisection (IM rises with qty)."""
    budget = usage * np.maximum(free_usd, 0.0) * (1.0 - SIZE_HEADROOM)
    im1 = _im_any_fill_order(venue, underlying, legs, n, None)
    q = np.where(im1 > 0, budget / np.where(im1 > 0, im1, 1.0), 0.0)
    over = np.flatnonzero(_im_any_fill_order(venue, underlying, legs, n, q) > budget)
    if over.size:
        sel = np.isin(legs.local, over)
        sub = Legs(
            np.searchsorted(over, legs.local[sel]),
            legs.instrument[sel],
            legs.kind[sel],
            legs.strike[sel],
            legs.expiry_t[sel],
        )
        lo, hi = np.zeros(over.size), q[over]
        for _ in range(SIZE_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            fits = _im_any_fill_order(venue, underlying, sub, over.size, mid) <= budget[over]
            lo, hi = np.where(fits, mid, lo), np.where(fits, hi, mid)
        q[over] = lo
    return q


def sell_strip(pop: OptionPopulation, params, venue, rng: np.random.Generator) -> None:
    """Draw each account's strip, size it to `target_margin_usage` of its margin headroom and sell it to the
    market maker at mark; sets `pop.legs`, `pop.qty_sold` (contracts per leg) and `pop.premium_usd`."""
    n = params.accounts
    pop.legs = draw_strip(venue, params.underlying, params.strip, rng, n, pop.spot)
    pop.qty_sold = size_short_book(venue, params.underlying, pop.legs, n, pop.initial_cash, params.target_margin_usage)
    pop.premium_usd = trade_legs(
        venue, pop.holder, pop.rows[pop.legs.local], pop.legs.instrument, -pop.qty_sold[pop.legs.local]
    )


class OptionWriters(OptionPopulation):
    """Short option books on one venue; `qty_sold[i]` contracts per leg of account i."""

    def __init__(self, model, params: OptionWritersParams, venue, rng: np.random.Generator, eth_price=None):
        super().__init__(model, params, venue, rng, eth_price)
        sell_strip(self, params, venue, rng)

    def submit(self, view: BlockView) -> list[Tx]:
        """Margin defence only: writers hold their strip to expiry."""
        return self.defence_txs(view)
