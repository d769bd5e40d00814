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
from defistress.protocols.amm import ConstantProductPool
from defistress.protocols.lending import (
    CLOSE_FACTOR_HF_THRESHOLD,
    DEFAULT_LIQUIDATION_CLOSE_FACTOR,
    MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD,
    LendingMarket,
)

#: key of the liquidators' per-block shared figures in `BlockView.extra`
_MEMO = "liquidator-shared"


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
            seen, watch = self._seen.get(m.id), self._watch.get(m.id)
            if seen is None or seen.size != hf.size:
                seen = self._seen[m.id] = np.full(hf.size, -1, dtype=np.int64)
                watch = None
            # only rows unhealthy at the last look can have recovered, so the (n,) array is read and written at
            # those rows alone (masked writes over 100k rows, three liquidators, every block, were the cost)
            if watch is not None and watch.size:
                seen[watch[~(hf[watch] < 1.0)]] = -1
            rows = self._candidates(m, hf, view)
            first = seen[rows]
            fresh = first < 0
            first[fresh] = view.block
            seen[rows[fresh]] = view.block
            self._watch[m.id] = rows
            ready = rows[view.block - first >= self.spec.latency_blocks]
            if ready.size == 0:
                continue
            ready, coll_idx, debt_idx, skip, cover = self._ranked(m, ready, view, ledger)
            committed: dict[str, float] = {}
            live = ((coll_idx >= 0) & ~skip).tolist()
            for k in range(ready.size):
                if len(txs) >= self.spec.max_tx_per_block:
                    break
                if not live[k]:  # no pair, or `_plan` would return None (see `_hopeless`) ...
                    if coll_idx[k] < 0 or not committed:
                        continue
                    if self._still_hopeless(ledger, m.assets[debt_idx[k]], committed, cover[k]):
                        continue  # ... and still would with the capital committed so far
                coll, debt = m.assets[coll_idx[k]], m.assets[debt_idx[k]]
                tx = self._plan(m, int(ready[k]), coll, debt, view, ledger, committed)
                if tx is not None:
                    txs.append(tx)
        self.attempts += len(txs)
        return txs

    def _candidates(self, m, hf: np.ndarray, view: BlockView) -> np.ndarray:
        """Rows of `m` that are unhealthy and not under an external controller (the controller's to liquidate),
        computed once per block and market state for every liquidator of the block (in `view.extra`)."""
        memo = view.extra.setdefault(_MEMO, {})
        key = ("candidates", id(m), m._cache_key if isinstance(m, LendingMarket) else None, hf.size)
        rows = memo.get(key) if key[2] is not None else None
        if rows is None:
            rows = np.flatnonzero(hf < 1.0)
            rows = rows[~m.controlled[rows]]
            rows.flags.writeable = False
            if key[2] is not None:
                memo[key] = rows
        return rows

    def _ranked(self, m, ready: np.ndarray, view: BlockView, ledger):
        """The rows this liquidator looks at, largest debt first (at most 4 x max_tx_per_block of them), with their
        (collateral, debt) pair, whether `_plan` would turn them down and their close-factor cap (`_hopeless`)."""
        _, debt_usd = m.account_usd()
        k = self.spec.max_tx_per_block * 4
        memo = view.extra.setdefault(_MEMO, {})
        key = ("ranked", id(m), m._cache_key if isinstance(m, LendingMarket) else None, ready.tobytes(), k)
        top = memo.get(key) if key[2] is not None else None
        if top is None:
            top = ready
            if top.size > k:
                top = top[np.argpartition(-debt_usd[top], k - 1)[:k]]
            top = top[np.argsort(-debt_usd[top], kind="stable")]
            if key[2] is not None:
                memo[key] = top
        coll_idx, debt_idx = self._pairs(m, top, ledger, view)
        skip, cover = self._hopeless(m, top, coll_idx, debt_idx, view, ledger)
        return top, coll_idx, debt_idx, skip, cover

    def _pairs(self, m, ready: np.ndarray, ledger, view: BlockView | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The (collateral, debt) pair to liquidate per row: on an Aave-like market the one that pays most at oracle
        prices within what this liquidator can pay (`best_liquidation_pairs`); elsewhere the largest of each.

        On a LendingMarket the pairs without a budget are computed once per block and rows and shared by the
        liquidators of the block (in `view.extra`); a liquidator whose budget covers every row's close-factor cap
        gets exactly those pairs, any other computes its own."""
        if hasattr(m, "best_liquidation_pairs"):
            budget = np.array([self.funding.available(ledger, self.holder, s, 0.0) for s in m.assets]) * m.prices()
            if view is None or not isinstance(m, LendingMarket):
                coll_idx, debt_idx, _ = m.best_liquidation_pairs(ready, budget)
                return coll_idx, debt_idx
            memo = view.extra.setdefault(_MEMO, {})
            key = ("pairs", id(m), m._cache_key, ready.tobytes())
            hit = memo.get(key)
            if hit is None:
                hit = memo[key] = m.liquidation_pairs_and_caps(ready)
            coll_idx, debt_idx, _, cap_max = hit
            if not np.all(budget >= cap_max):  # this budget binds somewhere (or a cap is undefined)
                coll_idx, debt_idx, _ = m.best_liquidation_pairs(ready, budget)
            return coll_idx, debt_idx
        p = m.prices()
        coll_usd = m.coll_scaled[ready] * (m.liq_index * p)
        debt_usd = m.debt_scaled[ready] * (m.borrow_index * p)
        return coll_usd.argmax(axis=1), debt_usd.argmax(axis=1)

    def _hopeless(
        self, m, ready: np.ndarray, coll_idx: np.ndarray, debt_idx: np.ndarray, view, ledger
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows `_plan` would turn down, each row's close-factor cap in debt tokens), computed for all rows at once
        as `_plan` would compute them before anything is committed (most candidates of a crash are accounts whose
        liquidation is not worth the gas; planning each one, three liquidators, every block, was most of a run).

        On a float-precision Aave-like market (`preview` and `max_debt_to_cover` as LendingMarket has them) this is
        `_plan`'s own arithmetic vectorised: the close-factor cap (`max_debt_to_cover`), the repayment within what
        the funding makes available, the seizure capped by the collateral balance and less the protocol fee
        (`preview`), its sale where this liquidator sells (`_sale_value`), the flash-loan fee and gas. A row is
        skipped only when its profit is below the minimum by more than 1e-9 of the amounts involved (so rounding
        can never skip a row `_plan` would take), or nothing is available to pay. Rows without a pair, rows under
        the account model (a collateral flag off or an e-mode category) and other markets: nothing is skipped.
        `_still_hopeless` says whether a skip holds once earlier rows have committed some of the capital.

        The figures that do not depend on the liquidator's capital are computed once per block and rows and shared
        by the liquidators of the block (in `view.extra`); a liquidator whose capital is below some row's cap
        computes its own."""
        out, cover = np.zeros(ready.size, dtype=bool), np.full(ready.size, np.inf)
        lm = LendingMarket
        if (
            ready.size == 0
            or not isinstance(m, lm)
            or type(m).preview is not lm.preview
            or type(m).max_debt_to_cover is not lm.max_debt_to_cover
            or m.precision != "float"
            or self.funding.mode not in ("capital", "flash-loan", "both")
        ):
            return out, cover
        mode = self.funding.mode
        avail = np.array([self.funding.available(ledger, self.holder, s, 0.0) for s in m.assets])
        memo = view.extra.setdefault(_MEMO, {})
        key = (
            "screen",
            id(m),
            m._cache_key,
            ready.tobytes(),
            coll_idx.tobytes(),
            debt_idx.tobytes(),
            self.gas,
            self.spec.min_profit_usd,
            mode,
            id(self.funding.lender),
            tuple((id(q), q.reserves()) for q in self.pools),
            tuple(view.reference.items()),
            view.base_fee_gwei,
            getattr(view.external, "fee", 0.0),
            float(self.eth_price()),
            self.holder if mode == "both" else None,  # a partly flash-funded plan depends on this holder's balance
        )
        hit = memo.get(key)
        if hit is None:
            shared_avail = avail if mode == "both" else np.full(avail.size, np.inf)
            hit = memo[key] = self._screen(m, ready, coll_idx, debt_idx, view, ledger, shared_avail)
        skip, cover, plain = hit
        own = avail[debt_idx]
        if mode == "capital" and not np.all(own[plain] >= cover[plain]):  # the capital binds: its own figures
            skip, cover, plain = self._screen(m, ready, coll_idx, debt_idx, view, ledger, avail)
        return skip | (plain & (own <= 0)), cover

    def _screen(
        self, m, ready: np.ndarray, coll_idx: np.ndarray, debt_idx: np.ndarray, view, ledger, avail_by_asset
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_hopeless`'s figures with `avail_by_asset` (A,) tokens available per debt asset: (skip, cap, rows
        screened)."""
        out, cover = np.zeros(ready.size, dtype=bool), np.full(ready.size, np.inf)
        screened = coll_idx >= 0
        if m._coll_on is not None or m._emode is not None:  # rows under the account model are not screened
            screened &= ~np.isin(ready, m._special_rows(ready))
        if not screened.any():
            return out, cover, screened
        plain = screened
        ready, ci, dj = ready[plain], coll_idx[plain], debt_idx[plain]  # the pair `_plan` is given
        p, ref = m.prices(), view.reference
        # max_debt_to_cover, vectorised
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
        # what the funding makes available before anything is committed, per debt asset
        avail = np.asarray(avail_by_asset, dtype=float)[dj]
        # preview, vectorised
        bonus = m.bonus[ci]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            repay = np.minimum(avail, cap)
            balance = m.coll_scaled[ready, ci] * m.liq_index[ci]
            seized = repay * p[dj] / p[ci] * bonus
            over = seized > balance
            seized = np.where(over, balance, seized)
            repay = np.where(over, balance * p[ci] / p[dj] / bonus, repay)
            seized = seized - (seized - seized / bonus) * m.fee[ci]  # to the liquidator, after the protocol fee
            # the flash loan and its fee (agents.funding)
            if self.funding.mode == "capital":
                flash_fee = np.zeros(repay.size)
            else:
                flash_fee = np.array(
                    [
                        self.funding.fee(self.funding.flash_amount(ledger, self.holder, m.assets[j], r, 0.0))
                        for j, r in zip(dj, repay.tolist())
                    ]
                )
            proceeds = self._sale_values(m, ci, dj, seized, view)
            ref_debt = np.array([ref.get(a, 1.0) for a in m.assets])[dj]
            cost = (repay + flash_fee) * ref_debt
        gas_usd = self.gas * view.base_fee_gwei * GWEI * self.eth_price()
        gross = proceeds - cost - gas_usd
        slack = 1e-9 * (np.abs(proceeds) + np.abs(cost) + abs(gas_usd)) + 1e-9
        # NaN compares False: planned
        out[plain] = (gross + slack <= self.spec.min_profit_usd) | (avail <= 0)
        cover[plain] = cap
        return out, cover, plain

    def _still_hopeless(self, ledger, debt: str, committed: dict[str, float], cap: float) -> bool:
        """A row `_hopeless` skipped with nothing committed is still one `_plan` turns down now that `committed` of
        the capital is promised: nothing is committed in its debt asset, or the funding does not depend on it
        (flash loans only), or the capital left still covers the row's close-factor cap (the repayment is the cap
        either way)."""
        c = committed.get(debt, 0.0)
        if c == 0.0 or self.funding.mode == "flash-loan":
            return True
        if self.funding.mode != "capital":
            return False
        return self.funding.available(ledger, self.holder, debt, 0.0) >= cap and (
            self.funding.available(ledger, self.holder, debt, c) >= cap
        )

    def _sale_values(self, m, ci: np.ndarray, dj: np.ndarray, amount: np.ndarray, view) -> np.ndarray:
        """`_sale_value` of each row's seized collateral (`amount` tokens of asset ci sold for asset dj), USD."""
        ref = view.reference
        out = np.empty(amount.size)
        for i, j in {(int(x), int(y)) for x, y in zip(ci, dj)}:
            rows = (ci == i) & (dj == j)
            coll, debt = m.assets[i], m.assets[j]
            x = amount[rows]
            if i == j:
                out[rows] = x * ref.get(coll, 1.0)
                continue
            pool = self._pool_for(coll, debt)
            if pool is not None and type(pool).quote is not ConstantProductPool.quote:
                out[rows] = [pool.quote(coll, float(v)) * ref.get(debt, 1.0) for v in x.tolist()]
            elif pool is not None:  # ConstantProductPool.quote, vectorised
                r_in, r_out = pool._oriented(coll)
                a = x * (1.0 - pool.p.fee)
                out[rows] = np.where(x > 0, a * r_out / (r_in + a), 0.0) * ref.get(debt, 1.0)
            else:
                out[rows] = x * ref.get(coll, 0.0) * (1.0 - getattr(view.external, "fee", 0.0))
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
