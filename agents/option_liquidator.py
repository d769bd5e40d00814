"""A liquidator of an `OptionsVenue`: it starts Derive auctions, bids when the discount pays, or partial-liquidates.

Each block it looks at rows liquidatable for at least its latency. In auction mode it starts an auction on rows
without one, and bids on ongoing auctions when the value it takes beats its minimum profit after base-fee gas:
solvent phase f x MtM x (1 - discount), insolvent phase f x (MtM + payout). In partial mode it calls
`liquidate_partial` when the penalty beats its minimum profit. If `unwind`, the same transaction trades every
position it took back to the venue's market maker at mark, so the profit is realised and its row stays small
(as the perp liquidator closes against the DEX vault). Tx-based like agents/perp_liquidator.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import mesa
import numpy as np
from pydantic import BaseModel, Field

from defistress.agents.tx import GWEI, BlockView, Tx
from defistress.protocols.base import Revert
from defistress.protocols.bounds import MAX_GAS, MAX_GWEI, MAX_USD, PARAMS_CONFIG, Bool, Float, Int


class OptionLiquidatorParams(BaseModel):
    """Capital, gas and competition settings (defaults as agents/perp_liquidator.py)."""

    model_config = PARAMS_CONFIG

    id: str = Field("option-liquidator", min_length=1, description="ledger holder (its venue row's owner)")
    capital_usd: Float = Field(gt=0, le=MAX_USD, description="quote deposited into its venue row at set-up, USD")
    gas: Int = Field(600_000, gt=0, le=MAX_GAS, description="gas units per bid or partial liquidation [assumption]")
    start_gas: Int = Field(300_000, gt=0, le=MAX_GAS, description="gas units per start_auction [assumption]")
    latency_blocks: Int = Field(1, ge=0, le=10_000, description="blocks between seeing and acting [assumption]")
    max_tx_per_block: Int = Field(5, ge=1, le=1000, description="bids sent per block [assumption]")
    min_profit_usd: Float = Field(
        50.0, ge=0, le=MAX_USD, description="skip bids earning less after gas, USD [assumption]"
    )
    profit_share_to_gas: Float = Field(
        0.3, ge=0, le=1, description="share of expected profit bid as priority fee [assumption]"
    )
    max_priority_fee_gwei: Float = Field(500.0, ge=0, le=MAX_GWEI, description="highest tip, gwei per gas unit")
    bid_fraction: Float = Field(
        1.0, gt=0, le=1, description="share of the account asked per bid (capped by f_max) [assumption]"
    )
    unwind: Bool = Field(True, description="trade what it took back to the market maker at mark in the same tx")


class OptionLiquidator(mesa.Agent):
    def __init__(self, model: mesa.Model, params: OptionLiquidatorParams, venue, eth_price: Callable[[], float]):
        """Opens its venue row with `capital_usd` taken from its ledger balance (mint it there first)."""
        super().__init__(model)
        self.params = params
        self.holder = params.id
        self.venue = venue
        self.eth_price = eth_price
        own = venue.accounts_of(self.holder)
        self.row = int(own[0]) if own.size else int(venue.open_accounts(self.holder, [params.capital_usd])[0])
        self.first_seen: dict[int, int] = {}
        self.attempts = 0
        self.liquidations = 0
        self.auctions_started = 0

    def _tip(self, gross: float, gas_usd_per_gwei: float) -> float:
        pr = self.params
        if gas_usd_per_gwei <= 0:
            return pr.max_priority_fee_gwei
        return min(pr.max_priority_fee_gwei, pr.profit_share_to_gas * gross / gas_usd_per_gwei)

    def submit(self, view: BlockView) -> list[Tx]:
        v, pr = self.venue, self.params
        cand = [int(a) for a in v.liquidatable() if int(a) != self.row]
        live = set(cand)
        for a in [a for a in self.first_seen if a not in live]:
            del self.first_seen[a]
        for a in cand:
            self.first_seen.setdefault(a, view.block)
        ready = [a for a in cand if view.block - self.first_seen[a] >= pr.latency_blocks]
        eth_usd = float(self.eth_price())
        per_gwei = pr.gas * GWEI * eth_usd
        txs: list[Tx] = []
        if v.params.liquidation == "partial":
            gross = v.gross_value_usd()
            eq = v.equity()
            for a in sorted(ready, key=lambda a: -gross[a]):
                if len(txs) >= pr.max_tx_per_block:
                    break
                penalty = min(v.params.partial_penalty * v.params.partial_fraction * gross[a], max(eq[a], 0.0))
                net = penalty - per_gwei * view.base_fee_gwei
                if net > pr.min_profit_usd:
                    txs.append(
                        Tx(
                            self.holder,
                            partial(self._execute, "partial", a),
                            pr.gas,
                            self._tip(net, per_gwei),
                            f"liquidate:{v.id}",
                        )
                    )
        else:
            auctions = [
                int(a) for a in np.flatnonzero(np.isfinite(v.auction_start) & ~v.controlled) if int(a) != self.row
            ]
            for a in auctions:
                if len(txs) >= pr.max_tx_per_block:
                    break
                try:
                    st = v.auction_state(a)
                except Revert:
                    continue
                if st.phase == "insolvent":
                    f = pr.bid_fraction
                    profit = f * (st.equity_usd + st.payout_usd)
                else:
                    f = min(pr.bid_fraction, st.max_fraction)
                    profit = f * st.equity_usd * (1.0 - st.discount)
                net = profit - per_gwei * view.base_fee_gwei
                if f > 0 and net > pr.min_profit_usd:
                    txs.append(
                        Tx(
                            self.holder,
                            partial(self._execute, "bid", a),
                            pr.gas,
                            self._tip(net, per_gwei),
                            f"bid:{v.id}",
                        )
                    )
            started = set(auctions)
            for a in ready:
                if len(txs) >= pr.max_tx_per_block:
                    break
                if a not in started:
                    txs.append(
                        Tx(self.holder, partial(self._execute, "start", a), pr.start_gas, 0.0, f"start_auction:{v.id}")
                    )
        self.attempts += len(txs)
        return txs

    def _execute(self, action: str, account: int) -> None:
        v = self.venue
        if action == "start":
            v.start_auction(account, keeper=self.holder)
            self.auctions_started += 1
            return
        before = v.qty[self.row].copy()
        if action == "bid":
            v.bid(account, self.holder, self.row, self.params.bid_fraction)
        else:
            v.liquidate_partial(account, self.holder, self.row)
        self.liquidations += 1
        if self.params.unwind:
            self.unwind(v.qty[self.row] - before)

    def unwind(self, taken: np.ndarray) -> None:
        """Trade `taken` (units per instrument) back to the market maker at mark; keeps what cannot be traded."""
        v = self.venue
        if v.mm_row is None:
            return
        for i in np.flatnonzero(np.abs(taken) > 0):
            if not v.inst_active[i]:
                continue
            try:
                v.trade(self.holder, [self.row], int(i), [-float(taken[i])], check_margin=False)
            except Revert:
                pass
