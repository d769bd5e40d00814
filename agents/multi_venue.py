"""Accounts that hold positions on several protocols at once (one principal, one row on each venue).

Each principal is long the underlying as collateral on a lending market against a stablecoin loan, short a
perp of `hedge_ratio` x that size on a perp DEX, and long `put_ratio` x that size of puts on an options
venue. The book is hedged to a varying degree: hedge_ratio 1 with puts is close to delta-neutral, 0 is a
plain leveraged long.

Capital: under the `silo` regime each venue's equity is `im_multiple` x that venue's own initial margin
(lending: collateral x (1 - LTV), the USD form of Aave's LTV rule; perps: the DEX's initial requirement;
options: its margin model's IM, plus the premium paid). Under `portfolio` the principal posts
`im_multiple` x the margin coordinator's initial margin for the whole book, and the rest (the netting
benefit) is released back to the population's wallet: lending by drawing more stablecoin debt, perps and
options by the controller's `settle_out`. Both regimes hold identical positions from identical draws, so
the difference in outcome is the regime's.

The population is passive after set-up (no top-ups): what happens to its accounts is the protocols' and
the coordinator's doing, which is what the regime comparison measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import mesa
import numpy as np

from defistress.agents.tx import BlockView, Tx
from defistress.protocols.margin.portfolio import SECONDS_PER_DAY

#: cash opened on the options venue beyond the premium (room for the mark moving within the block), share + USD
PREMIUM_ROOM_SHARE, PREMIUM_ROOM_USD = 0.05, 1.0


@dataclass
class MultiVenueBook:
    """Where each principal's positions live (row per venue) and what was posted at set-up (USD)."""

    principals: list[str]
    rows: dict[str, np.ndarray]  # venue id -> (P,) row on that venue
    size_tokens: np.ndarray  # (P,) collateral long, underlying units
    capital_silo_usd: float  # what the silo regime would post
    capital_posted_usd: float  # what this regime posted
    released_usd: float  # silo capital minus posted (0 under silo)


class MultiVenuePopulation(mesa.Agent):
    """A vectorised population of multi-venue principals; `holder` is the ledger wallet of all of them."""

    def __init__(
        self,
        model,
        spec,
        lending,
        perps,
        options,
        rng: np.random.Generator,
        regime: str,
        coordinator=None,
        ensure_liquidity=None,
        fund=None,
    ):
        super().__init__(model)
        self.spec, self.holder = spec, spec.id
        self.lending, self.perps, self.options = lending, perps, options
        self.regime = regime
        n, a = spec.accounts, spec.asset
        led = model.env.ledger
        p = float(lending.prices()[lending.idx[a]])
        size_usd = spec.size_usd.draw(rng, n)
        hedge = spec.hedge_ratio.draw(rng, n)
        puts = spec.put_ratio.draw(rng, n) if options is not None else np.zeros(n)
        e = size_usd / p  # tokens of collateral per principal
        m = spec.im_multiple
        fund = fund or (lambda asset, holder, amount: led.mint(asset, holder, amount, "genesis_capital"))

        # lending leg: equity = m x IM, IM = coll x (1 - LTV) -> debt = coll x (1 - m (1 - LTV))  (USD form of LTV)
        ltv = float(lending.ltv[lending.idx[a]])
        debt_usd = np.maximum(size_usd * (1.0 - m * (1.0 - ltv)), 0.0)
        fund(a, self.holder, float(e.sum()))
        lend_rows = lending.add_accounts(n)
        lending.supply(self.holder, lend_rows, a, e)
        p_debt = float(lending.prices()[lending.idx[spec.debt]])
        if ensure_liquidity is not None:
            ensure_liquidity(spec.debt, float(debt_usd.sum()) / p_debt)
        lending.seed_borrow(self.holder, lend_rows, spec.debt, debt_usd / p_debt)

        # perps leg: short hedge x e against one well-collateralised counterparty ("the rest of the market")
        mk = perps.assets.index(a)
        short = -hedge * e
        sizes = np.zeros((n + 1, len(perps.assets)))
        sizes[:n, mk] = short
        sizes[n, mk] = -short.sum()
        imf = float(perps.imf_effective()[mk])
        coll_perp = m * imf * np.abs(short) * float(perps.prices()[mk])
        cp_coll = abs(float(short.sum())) * float(perps.prices()[mk])  # 1x: survives any fall of the price
        fund(perps.quote, self.holder, float(coll_perp.sum()))
        fund(perps.quote, f"{self.holder}:counterparty", cp_coll)
        prows = perps.open_accounts(
            [self.holder] * n + [f"{self.holder}:counterparty"], np.append(coll_perp, cp_coll), sizes
        )
        perp_rows = prows[:n]

        rows = {lending.id: lend_rows, perps.id: perp_rows}
        if options is not None:
            inst = options.list_instrument(
                a, "put", strike_usd=spec.put_moneyness * p, expiry_s=spec.put_expiry_days * SECONDS_PER_DAY
            )
            qty = puts * e
            premium = qty * float(options.mark_prices()[inst])
            buffer = premium * PREMIUM_ROOM_SHARE + PREMIUM_ROOM_USD
            fund(options.quote, self.holder, float((premium + buffer).sum()))
            orows = options.open_accounts(self.holder, premium + buffer)
            buy = qty > 0
            if buy.any():
                options.trade(self.holder, orows[buy], inst, qty[buy])
            im_opt = options.margin().im[orows]
            top = np.maximum(m * im_opt - options.equity()[orows], 0.0)
            if top.sum() > 0:
                fund(options.quote, self.holder, float(top.sum()))
                options.deposit(self.holder, orows, top)
            rows[options.id] = orows
        self.rows = rows

        silo_capital = self._equity_total()
        released = 0.0
        if coordinator is not None:
            self.index = coordinator.enroll_many([f"{self.holder}-{i}" for i in range(n)], rows)
            if regime == "portfolio":
                released = self._release_to_portfolio_margin(coordinator, ensure_liquidity)
            else:  # the coordinator only measures: venues keep liquidating their own rows
                for vid, r in rows.items():
                    coordinator.adaptors[vid].set_controlled(r, False)
        self.book = MultiVenueBook(
            [f"{self.holder}-{i}" for i in range(n)], rows, e, silo_capital, self._equity_total(), released
        )

    # --- set-up helpers ---------------------------------------------------------------------------------
    def _equity_total(self) -> float:
        """Sum over principals and venues of equity at oracle prices, USD."""
        lend_c, lend_d = self.lending.account_usd()
        r = self.rows[self.lending.id]
        total = float((lend_c[r] - lend_d[r]).sum())
        total += float(self.perps.equity()[self.rows[self.perps.id]].sum())
        if self.options is not None:
            total += float(self.options.equity()[self.rows[self.options.id]].sum())
        return total

    def _release_to_portfolio_margin(self, coordinator, ensure_liquidity) -> float:
        """Keep im_multiple x the coordinator's IM per principal; release the rest pro rata over venues."""
        res = coordinator.requirements()
        idx = self.index
        eq = res.equity_usd[idx]
        keep = np.minimum(self.spec.im_multiple * res.im_usd[idx], eq)
        k = np.where(eq > 0, keep / np.where(eq > 0, eq, 1.0), 1.0)  # share of each venue's equity kept
        released = 0.0
        lend, r = self.lending, self.rows[self.lending.id]
        c, d = lend.account_usd()
        extra_usd = np.maximum((1.0 - k) * (c[r] - d[r]), 0.0)
        p_debt = float(lend.prices()[lend.idx[self.spec.debt]])
        if extra_usd.sum() > 0:
            if ensure_liquidity is not None:
                ensure_liquidity(self.spec.debt, float(extra_usd.sum()) / p_debt)
            lend.seed_borrow(self.holder, r, self.spec.debt, extra_usd / p_debt)
            released += float(extra_usd.sum())
        for venue in (self.perps, self.options):
            if venue is None:
                continue
            vr = self.rows[venue.id]
            out = np.maximum((1.0 - k) * venue.equity()[vr], 0.0)
            for row, amt in zip(vr, out):
                if amt > 0:
                    released += float(venue.settle_out(int(row), float(amt), self.holder))
        return released

    def submit(self, view: BlockView) -> list[Tx]:
        return []
