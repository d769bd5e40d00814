"""Liquidators of lending markets: capital, gas budget, minimum profit, latency; they compete in blocks.

Each block a liquidator looks at accounts that have been liquidatable for at least its latency, picks for each
the collateral / debt pair that pays most at oracle prices (the market's `best_liquidation_pairs`: close factor,
collateral balance, bonus and fee of the account's terms), previews the liquidation, values the seized
collateral at what the venue would pay for it, and submits a transaction when the profit after gas beats its
minimum. Its priority fee bids a share of the expected profit (a gas war). The transaction liquidates and sells
the seized collateral in the same call (an atomic liquidate-and-swap, as MEV liquidators do); if another
liquidator got there first the call reverts and the gas is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import mesa
import numpy as np

from defistress.agents.funding import CAPITAL, Funding
from defistress.agents.tx import GWEI, BlockView, Tx, refill_gas
from defistress.protocols.lending import (
    CLOSE_FACTOR_HF_THRESHOLD,
    DEFAULT_LIQUIDATION_CLOSE_FACTOR,
    MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD,
    LendingMarket,
)


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
            coll_idx, debt_idx = self._pairs(m, ready, ledger)
            hopeless = self._hopeless(m, ready, coll_idx, debt_idx, view)
            committed: dict[str, float] = {}
            for k, a in enumerate(ready):
                if len(txs) >= self.spec.max_tx_per_block:
                    break
                if coll_idx[k] < 0:
                    continue
                if hopeless[k]:  # `_plan` would return None: its profit bound is below the minimum
                    continue
                tx = self._plan(m, int(a), m.assets[coll_idx[k]], m.assets[debt_idx[k]], view, ledger, committed)
                if tx is not None:
                    txs.append(tx)
        self.attempts += len(txs)
        return txs

    def _pairs(self, m, ready: np.ndarray, ledger) -> tuple[np.ndarray, np.ndarray]:
        """The (collateral, debt) pair to liquidate per row: on an Aave-like market the one that pays most at oracle
        prices within what this liquidator can pay (`best_liquidation_pairs`); elsewhere the largest of each."""
        if hasattr(m, "best_liquidation_pairs"):
            budget = np.array([self.funding.available(ledger, self.holder, s, 0.0) for s in m.assets]) * m.prices()
            coll_idx, debt_idx, _ = m.best_liquidation_pairs(ready, budget)
            return coll_idx, debt_idx
        p = m.prices()
        coll_usd = m.coll_scaled[ready] * (m.liq_index * p)
        debt_usd = m.debt_scaled[ready] * (m.borrow_index * p)
        return coll_usd.argmax(axis=1), debt_usd.argmax(axis=1)

    def _hopeless(self, m, ready: np.ndarray, coll_idx: np.ndarray, debt_idx: np.ndarray, view) -> np.ndarray:
        """Rows whose liquidation cannot beat the minimum profit, from an upper bound computed for all at once
        (most candidates of a crash are accounts whose close-factor half is not worth the gas; planning each one,
        three liquidators, every block, was most of a small run).

        On an Aave-like market `preview` seizes s = repaid · P_debt / P_coll · bonus tokens, at most the collateral
        balance B, with repaid at most the close-factor cap (`max_debt_to_cover`, the same arithmetic vectorised);
        the profit `_plan` computes is at most s · (S − ref_debt · P_coll / (P_debt · bonus)) − gas, where S is what
        a collateral token sells for at the margin: a constant-product pool pays less than its spot price for any
        amount (Uniswap v2 getAmountOut ≤ amount · R_out / R_in), the external venue ref · (1 − fee); the protocol
        fee and a flash-loan fee only lower it. A relative margin of 1e-9 keeps rounding from ever skipping a row
        `_plan` would take. Rows without a pair, rows under the account model (a collateral flag off or an e-mode
        category: their own prices and bonus) and other markets: nothing is skipped."""
        out = np.zeros(ready.size, dtype=bool)
        if type(m).preview is not LendingMarket.preview or ready.size == 0:
            return out
        plain = (coll_idx >= 0) & ~np.isin(ready, m._special_rows(ready))
        if not plain.any():
            return out
        ready, ci, dj = ready[plain], coll_idx[plain], debt_idx[plain]  # the pair `_plan` is given
        p, ref = m.prices(), view.reference
        n_a = len(m.assets)
        sale = np.full((n_a, n_a), np.inf)  # USD per collateral token i sold for debt token j, an upper bound
        for i, j in {(int(x), int(y)) for x, y in zip(ci, dj)}:
            coll, debt = m.assets[i], m.assets[j]
            if i == j:
                sale[i, j] = ref.get(coll, 1.0)
                continue
            pool = self._pool_for(coll, debt)
            if pool is not None:
                r_in, r_out = pool._oriented(coll)
                sale[i, j] = r_out / r_in * ref.get(debt, 1.0) if r_in > 0 else np.inf
            else:
                sale[i, j] = ref.get(coll, 0.0) * (1.0 - getattr(view.external, "fee", 0.0))
        ref_debt = np.array([ref.get(a, 1.0) for a in m.assets])
        reserve_debt = m.debt_scaled[ready, dj] * m.borrow_index[dj]  # tokens of the debt asset
        hf = m.health()[ready]
        if m.rule == "aave-v3.0":
            cap = reserve_debt * np.where(hf > CLOSE_FACTOR_HF_THRESHOLD, DEFAULT_LIQUIDATION_CLOSE_FACTOR, 1.0)
        else:
            reserve_coll_usd = m.coll_scaled[ready, ci] * m.liq_index[ci] * p[ci]
            half = (
                (reserve_coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
                & (reserve_debt * p[dj] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
                & (hf > CLOSE_FACTOR_HF_THRESHOLD)
            )
            _, debt_total_usd = m.account_usd()
            with np.errstate(divide="ignore", invalid="ignore"):
                halved = np.minimum(reserve_debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * debt_total_usd[ready] / p[dj])
            cap = np.where(half, halved, reserve_debt)
        bonus = m.bonus[ci]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            seized = np.minimum(cap * p[dj] / p[ci] * bonus, m.coll_scaled[ready, ci] * m.liq_index[ci])
            margin = sale[ci, dj] - ref_debt[dj] * p[ci] / (p[dj] * bonus)  # USD per seized token
            gain = seized * np.maximum(margin, 0.0)
            scale = seized * (np.abs(sale[ci, dj]) + np.abs(ref_debt[dj] * p[ci] / (p[dj] * bonus)))
        gas_usd = self.gas * view.base_fee_gwei * GWEI * self.eth_price()
        bound = gain - gas_usd + 1e-9 * (scale + abs(gas_usd)) + 1e-9
        out[plain] = bound <= self.spec.min_profit_usd  # NaN bounds compare False: planned
        return out

    def _plan(self, m, a, coll, debt, view, ledger, committed):
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
