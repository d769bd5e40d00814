"""Delta hedgers: accounts short option books (short gamma) that hedge their delta with the venue's perp.

At set-up each account sells a near-the-money strip (as option writers do) and hedges its delta to zero. Each
block, accounts whose |net delta| exceeds `delta_band` x their gross option contracts trade the perp back to
zero delta in one batched Tx. A rebalance of notional X (USD) costs slippage X x (slippage_bps_per_million x
X / 1e6) / 1e4, which grows with size, plus gas; so hedging cost grows with gamma and with realised volatility.
The slippage is paid to the market maker through the trade price. Costs are recorded in USD per account.
A hedge that leaves an account below initial margin is sent only if it does not lower its maintenance margin.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from pydantic import Field

from defistress.agents.option_book import StripParams, instrument_arrays, margin_model, option_contracts, option_deltas
from defistress.agents.option_population import OptionPopulation, OptionPopulationParams
from defistress.agents.option_writers import sell_strip
from defistress.agents.tx import BlockView, Tx
from defistress.protocols.bounds import MAX_GAS, Bool, Float, Int
from defistress.protocols.events import UserAction
from defistress.protocols.margin.portfolio import PERP, Portfolio

BPS = 1e-4
MILLION_USD = 1e6


class DeltaHedgersParams(OptionPopulationParams):
    """A population of short-gamma books that delta-hedge with perps (defaults are modelling assumptions)."""

    id: str = Field("delta_hedgers", min_length=1, description="ledger holder of the population")
    strip: StripParams = Field(
        StripParams(style_weights={"strangle": 1.0}, otm_low=0.0, otm_high=0.05, expiry_days={30.0: 1.0}),
        description="which options the accounts sell [assumption: short near-ATM monthly strangles]",
    )
    target_margin_usage: Float = Field(
        0.4, gt=0, le=1, description="share of free initial margin used at set-up [assumption]"
    )
    delta_band: Float = Field(
        0.05,
        gt=0,
        le=10,
        description="rebalance when |delta| > band x gross option contracts (units, unitless) [assumption]",
    )
    slippage_bps_per_million: Float = Field(
        2.0,
        ge=0,
        le=10_000,
        description="slippage in bps per 1M USD of hedge notional (cost = X * bps(X) / 1e4) [assumption]",
    )
    hedge_gas: Int = Field(
        300_000, gt=0, le=MAX_GAS, description="gas units per account in a batched perp rebalance [assumption]"
    )
    hedge_at_setup: Bool = Field(True, description="hedge the initial delta of the book at set-up")


class DeltaHedgers(OptionPopulation):
    """Short-gamma books rebalanced with the venue's perp; `hedge_cost_usd[i]` = slippage + gas of account i."""

    params: DeltaHedgersParams

    def __init__(self, model, params: DeltaHedgersParams, venue, rng: np.random.Generator, eth_price=None):
        super().__init__(model, params, venue, rng, eth_price)
        n = params.accounts
        sell_strip(self, params, venue, rng)
        self.perp = int(venue.list_instrument(params.underlying, "perp"))
        self.hedge_slippage_usd = np.zeros(n)
        self.hedge_gas_usd = np.zeros(n)
        self.hedges = np.zeros(n, dtype=np.int64)
        self.hedged_notional_usd = 0.0
        self.refused = 0  # hedges not sent: below IM after and not risk-reducing
        if params.hedge_at_setup:
            self._hedge(np.arange(n), 0.0)

    @property
    def hedge_cost_usd(self) -> np.ndarray:
        """Slippage plus gas paid for hedging, USD per account."""
        return self.hedge_slippage_usd + self.hedge_gas_usd

    def delta(self) -> np.ndarray:
        """Net delta of each account in underlying units (options Black-76 + perp)."""
        return option_deltas(self.venue, self.rows, self.params.underlying)

    def band_units(self) -> np.ndarray:
        """Delta band per account in underlying units: band x gross option contracts held now."""
        return self.params.delta_band * option_contracts(self.venue, self.rows, self.params.underlying)

    def submit(self, view: BlockView) -> list[Tx]:
        """Margin defence plus one batched perp rebalance of every account outside its delta band."""
        txs = self.defence_txs(view)
        out = np.flatnonzero(np.abs(self.delta()) > self.band_units())
        out = out[: self.params.max_users_per_block]
        if out.size:
            gas = self.params.hedge_gas * out.size
            txs.append(
                Tx(
                    self.holder,
                    partial(self._hedge, out, self.gas_usd(self.params.hedge_gas, view)),
                    gas,
                    self.params.priority_fee_gwei,
                    f"delta_hedge:{self.venue.id}",
                )
            )
        return txs

    def slippage_usd(self, notional_usd: np.ndarray) -> np.ndarray:
        """Cost of a rebalance of `notional_usd`: X * (k * X / 1M) bps (size-dependent slippage, assumption)."""
        x = np.abs(notional_usd)
        return x * self.params.slippage_bps_per_million * (x / MILLION_USD) * BPS

    def _hedge(self, local: np.ndarray, gas_usd_each: float) -> None:
        """Trade the perp by -delta per account at mark worsened by its slippage (paid to the market maker).

        The order is accepted as Derive's risk manager does (derivexyz/v2-core src/risk-managers/PMRM.sol
        _assessRisk): if the account is at or above initial margin after it, or if its maintenance margin
        (equity - MM) does not fall; others wait, counted in `refused`. Margins come from the venue's model."""
        v = self.venue
        rows = self.rows[local]
        d = option_deltas(v, rows, self.params.underlying)
        keep = d != 0
        local, rows, q = local[keep], rows[keep], -d[keep]
        if not local.size:
            return
        spot = float(v.mark_prices()[self.perp])
        slip = self.slippage_usd(q * spot)
        im_after, mm_after = _margin_after(v, rows, self.perp, q)
        above_im = v.equity()[rows] - slip >= im_after
        reducing = mm_after + slip <= v.margin().mm[rows]  # signed margin equity - mm does not fall
        go = above_im | reducing
        # the venue's rule is applied to the whole order here (check_margin=False below): the order is split over
        # two venue calls to give each account its own average price, and a half-filled order is not what is sent
        _fill_at_average(v, self.holder, rows[go], self.perp, q[go], slip[go], spot)
        local, q, slip = local[go], q[go], slip[go]
        self.refused += int((~go).sum())
        self.hedge_slippage_usd[local] += slip
        self.hedge_gas_usd[local] += gas_usd_each
        self.hedges[local] += 1
        units = float(np.abs(q).sum())
        self.hedged_notional_usd += units * spot
        v.env.emit(
            UserAction(v.env.clock.block, self.holder, "delta_hedge", int(local.size), self.params.underlying, units)
        )


def _margin_after(venue, rows: np.ndarray, perp: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IM, MM) in USD of each row after adding `q` perp units, from the venue's margin model."""
    pf = venue.portfolio(rows)
    ins = instrument_arrays(venue)
    und = pf.underlyings.index(str(ins["und"][perp]))
    entry = float(venue.mark_prices()[perp])
    n = rows.size
    after = Portfolio(
        n_accounts=n,
        underlyings=pf.underlyings,
        account=np.append(pf.account, np.arange(n)),
        kind=np.append(pf.kind, np.full(n, PERP, np.int8)),
        und=np.append(pf.und, np.full(n, und)),
        qty=np.append(pf.qty, q),
        strike=np.append(pf.strike, np.zeros(n)),
        expiry_s=np.append(pf.expiry_s, np.zeros(n)),
        entry_price=np.append(pf.entry_price, np.full(n, entry)),
        cash=pf.cash,
    )
    res = margin_model(venue).requirements(after, venue.market_state())
    return np.asarray(res.im), np.asarray(res.mm)


def _fill_at_average(
    venue, holder: str, rows: np.ndarray, perp: int, q: np.ndarray, slip_usd: np.ndarray, spot: float
) -> None:
    """Fill each row's perp order at an average price of spot +/- slip/|q|: the venue takes one price per call,
    so each side fills part at spot and the rest one level worse, c = max per-unit slippage on that side:
    b = slip / c units at spot + c (buys) or spot - c (sells), |q| - b at spot; row cost = b c = slip."""
    for side in (1.0, -1.0):
        s = np.sign(q) == side
        if not s.any():
            continue
        per_unit = slip_usd[s] / np.abs(q[s])
        c = float(per_unit.max())
        worse = np.zeros(s.sum()) if c == 0 else side * slip_usd[s] / c
        for qty, price in ((q[s] - worse, spot), (worse, spot + side * c)):
            live = qty != 0
            if live.any():
                venue.trade(holder, rows[s][live], perp, qty[live], price_usd=price, check_margin=False)
