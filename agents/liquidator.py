"""Liquidators of lending markets: capital, gas budget, minimum profit, latency; they compete in blocks.

Each block a liquidator looks at accounts that have been liquidatable for at least its latency, picks
the largest debt and collateral of each, previews the liquidation, values the seized collateral at what
the venue would pay for it, and submits a transaction when the profit after gas beats its minimum. Its
priority fee bids a share of the expected profit (a gas war). The transaction liquidates and sells the
seized collateral in the same call (an atomic liquidate-and-swap, as MEV liquidators do); if another
liquidator got there first the call reverts and the gas is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import mesa
import numpy as np

from defistress.agents.funding import CAPITAL, Funding
from defistress.agents.tx import GWEI, BlockView, Tx, refill_gas


class Liquidator(mesa.Agent):
    def __init__(
        self,
        model: mesa.Model,
        holder: str,
        spec,
        markets: list,
        pools: list,
        liquidation_gas: int,
        eth_price,
        funding: Funding = CAPITAL,
    ):
        super().__init__(model)
        self.holder = holder
        self.funding = funding  # own capital, flash loans or both (agents.funding)
        self.spec = spec
        self.markets = markets
        self.pools = pools
        self.gas = liquidation_gas
        self.eth_price = eth_price  # callable: USD per ETH now
        self._seen: dict[str, np.ndarray] = {}  # block each account was first seen unhealthy, or -1
        self._watch: dict[str, np.ndarray] = {}  # rows whose `_seen` entry is >= 0 (unhealthy at the last look)
        self.attempts = 0

    def _pool_for(self, sell: str, buy: str):
        for pool in self.pools:
            if {pool.p.token0, pool.p.token1} == {sell, buy}:
                return pool
        return None

    def submit(self, view: BlockView) -> list[Tx]:
        txs: list[Tx] = []
        ledger = self.markets[0].env.ledger if self.markets else None
        if ledger is not None:
            quote = max(ledger.tokens(), key=lambda t: ledger.balance(self.holder, t) * view.reference.get(t, 0.0))
            refill_gas(ledger, view.external, self.holder, self.spec.gas_budget_eth, quote)
        for m in self.markets:
            hf = m.health()
            unhealthy = hf < 1.0
            seen, watch = self._seen.get(m.id), self._watch.get(m.id)
            if seen is None or seen.size != hf.size:
                seen = self._seen[m.id] = np.full(hf.size, -1, dtype=np.int64)
                watch = None
            # only rows unhealthy at the last look can have recovered, so the (n,) array is read and written at
            # those rows alone (masked writes over 100k rows, three liquidators, every block, were the cost)
            if watch is not None and watch.size:
                seen[watch[~unhealthy[watch]]] = -1
            rows = np.flatnonzero(unhealthy)
            rows = rows[~m.controlled[rows]]  # rows under an external controller are the controller's to liquidate
            first = seen[rows]
            fresh = first < 0
            first[fresh] = view.block
            seen[rows[fresh]] = view.block
            self._watch[m.id] = rows
            ready = rows[view.block - first >= self.spec.latency_blocks]
            if ready.size == 0:
                continue
            _, debt_usd = m.account_usd()
            k = self.spec.max_tx_per_block * 4
            if ready.size > k:
                ready = ready[np.argpartition(-debt_usd[ready], k - 1)[:k]]
            ready = ready[np.argsort(-debt_usd[ready], kind="stable")]
            p = m.prices()
            coll_usd = m.coll_scaled[ready] * (m.liq_index * p)
            debt_usd_by_asset = m.debt_scaled[ready] * (m.borrow_index * p)
            committed: dict[str, float] = {}
            for k, a in enumerate(ready):
                if len(txs) >= self.spec.max_tx_per_block:
                    break
                tx = self._plan(m, int(a), coll_usd[k], debt_usd_by_asset[k], view, ledger, committed)
                if tx is not None:
                    txs.append(tx)
        self.attempts += len(txs)
        return txs

    def _plan(self, m, a, coll_usd, debt_usd, view, ledger, committed):
        coll = m.assets[int(coll_usd.argmax())]
        debt = m.assets[int(debt_usd.argmax())]
        available = self.funding.available(ledger, self.holder, debt, committed.get(debt, 0.0))
        if available <= 0:
            return None
        pv = m.preview(a, coll, debt, min(available, np.inf))
        if pv.debt_to_repay <= 0 or pv.debt_to_repay > available * (1 + 1e-12):
            return None
        flash = self.funding.flash_amount(ledger, self.holder, debt, pv.debt_to_repay, committed.get(debt, 0.0))
        ref = view.reference
        proceeds_usd = self._sale_value(coll, debt, pv.collateral_seized, ref, view)
        cost_usd = (pv.debt_to_repay + self.funding.fee(flash)) * ref.get(debt, 1.0)
        eth_usd = self.eth_price()
        base_gas_usd = self.gas * view.base_fee_gwei * GWEI * eth_usd
        gross = proceeds_usd - cost_usd - base_gas_usd
        if gross <= self.spec.min_profit_usd:
            return None
        tip = min(self.spec.max_priority_fee_gwei, self.spec.profit_share_to_gas * gross / (self.gas * GWEI * eth_usd))
        committed[debt] = committed.get(debt, 0.0) + pv.debt_to_repay - flash
        action: Callable[[], object] = partial(self._execute, m, a, coll, debt, pv.debt_to_repay, view)
        if flash > 0:  # borrow, liquidate, sell, repay: one transaction (agents.funding)
            quote = partial(self._quote, m, a, coll, debt, pv.debt_to_repay, view)
            action = partial(self.funding.execute, ledger, self.holder, debt, flash, action, quote)
        return Tx(
            self.holder,
            action,
            self.gas,
            tip,
            f"liquidate:{m.id}",
            private=self.spec.private_orderflow,
        )

    def _sale_value(self, coll: str, debt: str, amount: float, ref: dict, view) -> float:
        """USD value of `amount` of seized collateral where this liquidator would sell it."""
        if coll == debt:
            return amount * ref.get(coll, 1.0)
        pool = self._pool_for(coll, debt)
        if pool is not None:
            return pool.quote(coll, amount) * ref.get(debt, 1.0)
        fee = getattr(view.external, "fee", 0.0)
        return amount * ref.get(coll, 0.0) * (1.0 - fee)

    def _quote(self, m, account: int, coll: str, debt: str, amount: float, view: BlockView) -> tuple[float, float]:
        """(debt tokens the liquidation pays, debt tokens the sale of its seizure returns) at execution prices."""
        pv = m.preview(account, coll, debt, amount)
        if coll == debt:
            return pv.debt_to_repay, pv.collateral_seized
        pool = self._pool_for(coll, debt)
        if pool is not None:
            return pv.debt_to_repay, pool.quote(coll, pv.collateral_seized)
        ref = view.reference
        fee = getattr(view.external, "fee", 0.0)
        return pv.debt_to_repay, pv.collateral_seized * ref.get(coll, 0.0) / ref.get(debt, 1.0) * (1.0 - fee)

    def _execute(self, m, account: int, coll: str, debt: str, amount: float, view: BlockView) -> None:
        ev = m.liquidate(account, coll, debt, amount, self.holder)
        if coll == debt:
            return
        pool = self._pool_for(coll, debt)
        if pool is not None:
            pool.swap(self.holder, coll, ev.collateral_seized)
        elif view.external is not None:
            view.external.sell(self.holder, coll, ev.collateral_seized, debt)
