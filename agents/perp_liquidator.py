"""A liquidator of a `PerpDex`: it takes liquidated positions into its own DEX account at the fillable price.

Each block it looks at accounts that have been liquidatable for at least its latency, largest maintenance
requirement first, previews each liquidation, and submits a transaction when the discount it receives (fill
price vs oracle, times the size) beats its minimum profit after the base-fee gas, and when its free collateral
can carry the position. Its priority fee bids a share of the expected profit (a gas war, as the lending
liquidator). The transaction liquidates and, if `unwind`, closes the taken position against the DEX's
liquidity vault at the oracle price in the same call, so the discount is realised (as dYdX makers hedge at
once). Accounts whose liquidation would need deleveraging earn nothing and are left to the protocol.
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
from defistress.protocols.perps import LiquidationPreview

#: `view.extra` key of the liquidation previews shared by the perp liquidators of a block
_MEMO = "perp-liquidator-previews"


class PerpLiquidatorParams(BaseModel):
    """Capital, gas and competition settings (defaults as the lending liquidator's in scenarios/schema.py)."""

    model_config = PARAMS_CONFIG

    id: str = Field("perp-liquidator", min_length=1, description="ledger holder (its DEX account's owner)")
    capital_usd: Float = Field(gt=0, le=MAX_USD, description="USDC deposited into its DEX account at set-up, USD")
    gas: Int = Field(
        500_000, gt=0, le=MAX_GAS, description="gas units per liquidation (scenario-sketch liquidation_gas)"
    )
    latency_blocks: Int = Field(1, ge=0, le=10_000, description="blocks between seeing and acting [assumption]")
    max_tx_per_block: Int = Field(5, ge=1, le=1000, description="liquidations sent per block [assumption]")
    min_profit_usd: Float = Field(
        50.0, ge=0, le=MAX_USD, description="skip liquidations earning less after gas, USD [assumption]"
    )
    profit_share_to_gas: Float = Field(
        0.3, ge=0, le=1, description="share of expected profit bid as priority fee [assumption]"
    )
    max_priority_fee_gwei: Float = Field(500.0, ge=0, le=MAX_GWEI, description="highest tip, gwei per gas unit")
    unwind: Bool = Field(True, description="close the taken position against the DEX vault in the same tx")


class PerpLiquidator(mesa.Agent):
    def __init__(self, model: mesa.Model, params: PerpLiquidatorParams, dex, eth_price: Callable[[], float]):
        """Opens its DEX account with `capital_usd` taken from its ledger balance (mint it there first)."""
        super().__init__(model)
        self.params = params
        self.holder = params.id
        self.dex = dex
        self.eth_price = eth_price  # callable: USD per ETH now
        own = dex.accounts_of(self.holder)
        if own.size:
            self.account = int(own[0])
        else:
            self.account = int(dex.open_accounts(self.holder, [params.capital_usd], None)[0])
        self.first_seen = np.zeros(0, dtype=np.int64)  # per DEX account: block first seen liquidatable, or -1
        self._live = np.zeros(0, dtype=np.int64)  # the accounts first_seen dates (liquidatable at the last call)
        self._ready: np.ndarray | None = None  # `_live` less its own account when all were past the latency
        self.attempts = 0
        self.liquidations = 0
        self._memo: dict | None = None  # the reads of the last block this liquidator decided in (`_previews`)

    def submit(self, view: BlockView) -> list[Tx]:
        dex, pr = self.dex, self.params
        memo = self._previews(view)
        if "cand" not in memo:
            memo["cand"] = np.asarray(dex.liquidatable(), dtype=np.int64)
        cand = memo["cand"]
        n = int(dex.n_accounts)
        if self.first_seen.size != n:  # accounts opened since: they start unseen
            grown = np.full(n, -1, dtype=np.int64)
            k = min(n, self.first_seen.size)
            grown[:k] = self.first_seen[:k]
            self.first_seen = grown
            self._ready = None
        # first_seen >= 0 exactly on the previous call's candidates (`_live`): forget those no longer liquidatable
        # and date the new ones, touching only those rows (nothing to do when the candidates are the very same)
        if cand is not self._live:
            live = memo.get(("live", n))
            if live is None:
                live = memo[("live", n)] = np.zeros(n, dtype=bool)
                live[cand] = True
            self.first_seen[self._live[~live[self._live]]] = -1
            self.first_seen[cand[self.first_seen[cand] < 0]] = view.block
            self._live = cand
            self._ready = None
        if self._ready is not None:  # the same candidates, each already past the latency: the same list
            ready = self._ready
        else:
            others = cand != self.account
            ready = cand[others & (view.block - self.first_seen[cand] >= pr.latency_blocks)]
            self._ready = ready if ready.size == np.count_nonzero(others) else None
        if ready.size == 0:
            return []
        key = ("order", ready.tobytes(), pr.max_tx_per_block)
        if key not in memo:
            memo[key] = ready[np.argsort(-dex.maintenance_requirement()[ready], kind="stable")][
                : pr.max_tx_per_block * 4
            ]
        ready = memo[key]
        eth_usd = float(self.eth_price())
        gas_usd_per_gwei = pr.gas * GWEI * eth_usd
        # skip, without a preview, accounts whose profit bound cannot beat the minimum after gas: each would fail
        # the profit test below (profit <= bound), and a skipped account leaves `free` and the txs unchanged
        bkey = ("bound", key[1], key[2])
        if bkey not in memo:
            memo[bkey] = self._profit_bound(ready)
        ready = ready[memo[bkey] - gas_usd_per_gwei * view.base_fee_gwei > pr.min_profit_usd]
        if ready.size == 0:
            return []
        if "free" not in memo:
            memo["free"], memo["imf"] = dex.free_collateral(), dex.imf_effective()
        free = float(memo["free"][self.account])
        imf = memo["imf"]
        txs: list[Tx] = []
        for a in ready:
            if len(txs) >= pr.max_tx_per_block:
                break
            pv = self._preview(memo, int(a))
            if pv is None or pv.adl:
                continue
            margin = abs(pv.size) * pv.oracle_price * imf[pv.market]
            if margin > free:
                continue
            gross = pv.liquidator_profit_usd - gas_usd_per_gwei * view.base_fee_gwei
            if gross <= pr.min_profit_usd:
                continue
            tip = (
                pr.max_priority_fee_gwei
                if gas_usd_per_gwei <= 0
                else min(pr.max_priority_fee_gwei, pr.profit_share_to_gas * gross / gas_usd_per_gwei)
            )
            free -= margin
            txs.append(Tx(self.holder, partial(self._execute, int(a), pv.market), pr.gas, tip, f"liquidate:{dex.id}"))
        self.attempts += len(txs)
        return txs

    def _previews(self, view: BlockView) -> dict:
        """What the perp liquidators of a block read from the DEX, shared through `view.extra` and kept while the
        DEX state is unchanged (the liquidators of a block decide on the same state; from block to block as long
        as nothing moved: oracle prices, funding, positions, collateral, the fund): `dex.preview_liquidation`
        by account (None where it reverts), the liquidatable accounts ("cand"), free collateral and OI-scaled IMF
        ("free", "imf"), and the ordering of a ready list (("order", ...))."""
        dex = self.dex
        # a preview reads the positions' values (`state_key`) and also the fund and the controlled flags
        state = dex.state_key() + (dex.insurance_fund_usd(), dex.controlled.tobytes())
        key = f"{_MEMO}:{id(dex)}"
        memo = view.extra.get(key)
        if memo is None or memo["state"] != state:
            # a DEX state unchanged since this liquidator's last block gives the same reads: a preview judges the
            # state alone (its per-block limits start empty at every block's first preview: `_roll_block`)
            last = self._memo
            if last is not None and last["state"] == state:
                memo = last
            else:
                memo = {"state": state}
            view.extra[key] = memo
        self._memo = memo
        return memo

    def _profit_bound(self, rows: np.ndarray) -> np.ndarray:
        """An upper bound of `liquidator_profit_usd` of each account's preview, USD (no preview needed).

        With ratio = TNC/TMMR and ABR = clamp(BA·(1 − ratio), 0, 1), a preview's profit is q·P·ABR·SMMR·MMF
        at the fillable price (q·P when a long's fillable price is clamped at 0, then ABR·SMMR·MMF >= 1), or
        q·P·MMF·ratio at the bankruptcy price (only when the fund would pay, i.e. ratio < ABR·SMMR), or 0
        (ADL); q·P is at most the largest position's notional. TNC and TMMR are read from the DEX's per-account
        arrays (the preview recomputes them on its row, equal up to rounding), so the bound carries a slack of
        1e-9 in ABR and relative, far above the rounding (liquidations.go: GetFillablePrice, bankruptcy price).
        """
        dex, pr = self.dex, self.dex.params
        eq, mmr = dex.equity()[rows], dex.maintenance_requirement()[rows]
        # a liquidatable account has TMMR > 0 (health = TNC/TMMR < 1); elsewhere the ratio 1 gives ABR 0
        ratio = eq / np.where(mmr > 0, mmr, 1.0)
        ratio[~(mmr > 0)] = 1.0
        abr = np.minimum(np.maximum(pr.bankruptcy_adjustment * (1.0 - ratio), 0.0), 1.0)
        pmmr = (np.abs(dex.size[rows]) * (dex.prices() * dex.mmf)).max(axis=1, initial=0.0)
        return pmmr * pr.spread_to_maintenance_margin_ratio * (abr + 1e-9) * (1.0 + 1e-9)

    def _preview(self, memo: dict, account: int) -> LiquidationPreview | None:
        if account not in memo:
            try:
                memo[account] = self.dex.preview_liquidation(account)
            except Revert:
                memo[account] = None
        return memo[account]

    def _execute(self, account: int, market: int) -> None:
        dex = self.dex
        before = float(dex.size[self.account, market])
        dex.liquidate(account, self.holder, market=market, liquidator_account=self.account)
        self.liquidations += 1
        taken = float(dex.size[self.account, market]) - before
        if self.params.unwind and taken != 0 and dex.vault_account is not None:
            try:
                dex.trade(self.holder, [self.account], market, [-taken])
            except Revert:
                pass  # the vault cannot take it: keep the inventory
