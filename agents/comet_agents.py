"""Agents of a Compound III (Comet) liquidation: absorbers and collateral buyers.

- `CometAbsorber` calls `absorb` on accounts that have been liquidatable for its latency. Comet pays no
  token reward for absorbing: it records liquidator points (gas x base fee, Comet.absorb), which
  governance may reimburse. The absorber acts when the reimbursement it expects, less the gas it pays,
  is no worse than `max_loss_usd` per transaction (a protocol keeper accepts a loss; a bot does not).
- `CollateralBuyer` buys absorbed collateral with the base asset at the store front discount while reserves
  are below target (`buyCollateral`) and sells it on a pool or the outside market in the same
  transaction, optionally absorbing first, as compound-finance/comet's OnChainLiquidator does (absorb, flash
  loan, buyCollateral, swap, repay). It pays from its capital, a flash loan or both (agents.funding).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import mesa
import numpy as np

from defistress.agents.funding import CAPITAL, Funding
from defistress.agents.tx import GWEI, BlockView, Tx, refill_gas

#: shares of the largest purchase a buyer compares (it picks the most profitable: slippage grows with size)
PURCHASE_SHARES = (1.0, 0.5, 0.25, 0.1, 0.05)


class _Watch:
    """First block each account was seen liquidatable, per protocol (the latency clock)."""

    def __init__(self) -> None:
        self.seen: dict[str, np.ndarray] = {}

    def ready(self, comet, block: int, latency: int) -> np.ndarray:
        rows = comet.liquidatable()
        seen = self.seen.get(comet.id)
        if seen is None or seen.size != comet.n_accounts:
            old = seen
            seen = self.seen[comet.id] = np.full(comet.n_accounts, -1, dtype=np.int64)
            if old is not None:
                seen[: min(old.size, seen.size)] = old[: min(old.size, seen.size)]
        mask = np.zeros(comet.n_accounts, dtype=bool)
        mask[rows] = True
        seen[~mask] = -1
        fresh = rows[seen[rows] < 0]
        seen[fresh] = block
        return rows[block - seen[rows] >= latency]


class CometAbsorber(mesa.Agent):
    """Absorbs liquidatable accounts of Comet markets for liquidator points."""

    def __init__(self, model: mesa.Model, holder: str, spec, comets: list, eth_price):
        super().__init__(model)
        self.holder = holder
        self.spec = spec
        self.comets = comets
        self.eth_price = eth_price
        self._watch = _Watch()
        self.attempts = 0

    def gas_for(self, n_accounts: int) -> int:
        """Gas units of one absorb of `n_accounts` accounts."""
        return int(self.spec.absorb_gas_base + self.spec.absorb_gas_per_account * n_accounts)

    def submit(self, view: BlockView) -> list[Tx]:
        txs: list[Tx] = []
        eth = self.eth_price()
        for c in self.comets:
            ready = self._watch.ready(c, view.block, self.spec.latency_blocks)
            if ready.size == 0:
                continue
            _, debt_usd = c.account_usd()
            ready = ready[np.argsort(-debt_usd[ready], kind="stable")]
            k = self.spec.max_accounts_per_tx
            for start in range(0, ready.size, k):
                if len(txs) >= self.spec.max_tx_per_block:
                    break
                rows = ready[start : start + k]
                gas = self.gas_for(rows.size)
                cost = gas * (view.base_fee_gwei + self.spec.priority_fee_gwei) * GWEI * eth
                reward = self.spec.points_reimbursement * gas * view.base_fee_gwei * GWEI * eth
                if reward - cost < -self.spec.max_loss_usd:
                    break
                txs.append(
                    Tx(
                        self.holder,
                        partial(c.absorb, self.holder, rows, view.base_fee_gwei, gas),
                        gas,
                        self.spec.priority_fee_gwei,
                        f"absorb:{c.id}",
                        private=self.spec.private_orderflow,
                    )
                )
        self.attempts += len(txs)
        return txs


class CollateralBuyer(mesa.Agent):
    """Buys Comet's absorbed collateral at its discount and sells it in the same transaction."""

    def __init__(
        self,
        model: mesa.Model,
        holder: str,
        spec,
        comets: list,
        pools: list,
        eth_price,
        funding: Funding = CAPITAL,
    ):
        super().__init__(model)
        self.holder = holder
        self.spec = spec
        self.comets = comets
        self.pools = pools
        self.eth_price = eth_price
        self.funding = funding
        self._watch = _Watch()
        self.attempts = 0

    def absorb_gas(self, n_accounts: int) -> int:
        """Gas units of absorbing `n_accounts` accounts in the purchase transaction."""
        return int(self.spec.absorb_gas_base + self.spec.absorb_gas_per_account * n_accounts)

    def _pool_for(self, sell: str, buy: str):
        for pool in self.pools:
            if {pool.p.token0, pool.p.token1} == {sell, buy}:
                return pool
        return None

    def _proceeds(self, asset: str, base: str, amount: float, view: BlockView) -> float:
        """Base tokens the sale of `amount` of `asset` returns at the pool or the outside market now."""
        if amount <= 0:
            return 0.0
        pool = self._pool_for(asset, base)
        if pool is not None:
            return float(pool.quote(asset, amount))
        ref = view.reference
        fee = getattr(view.external, "fee", 0.0)
        return amount * ref.get(asset, 0.0) / ref.get(base, 1.0) * (1.0 - fee)

    def submit(self, view: BlockView) -> list[Tx]:
        txs: list[Tx] = []
        if not self.comets:
            return txs
        ledger = self.comets[0].env.ledger
        refill_gas(ledger, view.external, self.holder, self.spec.gas_budget_eth, self.comets[0].base)
        eth = self.eth_price()
        for c in self.comets:
            absorb = np.zeros(0, dtype=np.int64)
            if self.spec.absorb_first:
                absorb = self._watch.ready(c, view.block, self.spec.latency_blocks)[: self.spec.max_accounts_per_tx]
            extra = c.coll[absorb].sum(axis=0) if absorb.size else np.zeros(len(c.assets))
            reserves_after = c.reserves() - self._absorb_cost(c, absorb)
            committed = 0.0
            first = True
            for j in range(1, len(c.assets)):
                if len(txs) >= self.spec.max_tx_per_block:
                    break
                plan = self._plan(c, j, extra[j], reserves_after, committed, view, eth, absorb if first else None)
                if plan is None:
                    continue
                tx, spend_own = plan
                committed += spend_own
                first = False
                txs.append(tx)
        self.attempts += len(txs)
        return txs

    def _absorb_cost(self, c, rows: np.ndarray) -> float:
        """Base the reserves pay to absorb `rows` now (sum of basePaidOut)."""
        if rows.size == 0:
            return 0.0
        p = c.prices()
        old = c.present_value(c.principal[rows])
        credit = (c.coll[rows] * p) @ c.liquidation_factor / p[0]
        return float((np.maximum(old + credit, 0.0) - old).sum())

    def _plan(self, c, j: int, extra: float, reserves_after: float, committed: float, view, eth, absorb):
        asset, base = c.assets[j], c.base
        if reserves_after >= 0 and reserves_after >= c.p.target_reserves:
            return None
        stock = c.collateral_reserves(asset) + extra
        if stock <= 0:
            return None
        ledger = c.env.ledger
        p = c.prices()
        discount = c.p.store_front_price_factor * (1.0 - c.liquidation_factor[j])
        max_base = stock * p[j] * (1.0 - discount) / p[0]  # base that buys all of it (quoteCollateral inverted)
        max_base = min(max_base, self.funding.available(ledger, self.holder, base, committed))
        if max_base <= 0:
            return None
        n_abs = 0 if absorb is None else int(absorb.size)
        gas = int(self.spec.buy_gas + (self.absorb_gas(n_abs) if n_abs else 0))
        gas_usd = gas * view.base_fee_gwei * GWEI * eth
        ref_base = view.reference.get(base, 1.0)
        options = []  # (profit USD, base spent, collateral bought, flash-borrowed) per purchase size
        for share in PURCHASE_SHARES:
            spend = max_base * share
            amount = spend * p[0] / (p[j] * (1.0 - discount))
            flash = self.funding.flash_amount(ledger, self.holder, base, spend, committed)
            profit = (self._proceeds(asset, base, amount, view) - spend - self.funding.fee(flash)) * ref_base - gas_usd
            options.append((profit, spend, amount, flash))
        profit, spend, amount, flash = max(options, key=lambda o: o[0])
        if profit <= self.spec.min_profit_usd:
            return None
        tip = min(self.spec.max_priority_fee_gwei, self.spec.profit_share_to_gas * profit / (gas * GWEI * eth))
        body = partial(self._execute, c, asset, spend, amount * (1 - self.spec.max_slippage), view, absorb)
        action: Callable[[], object] = body
        if flash > 0:
            quote = partial(self._quote, c, asset, spend, view, absorb)
            action = partial(self.funding.execute, ledger, self.holder, base, flash, body, quote)
        tx = Tx(self.holder, action, gas, tip, f"buy_collateral:{c.id}", private=self.spec.private_orderflow)
        return tx, spend - flash

    def _quote(self, c, asset: str, spend: float, view: BlockView, absorb) -> tuple[float, float]:
        """(base the purchase pays, base the sale returns) at execution prices; absorbed collateral counts."""
        return spend, self._proceeds(asset, c.base, c.quote_collateral(asset, spend), view)

    def _execute(self, c, asset: str, spend: float, min_amount: float, view: BlockView, absorb) -> None:
        if absorb is not None and absorb.size:
            c.absorb(self.holder, absorb, view.base_fee_gwei, self.absorb_gas(absorb.size))
        got = c.buy_collateral(self.holder, asset, min_amount, spend)
        pool = self._pool_for(asset, c.base)
        if pool is not None:
            pool.swap(self.holder, asset, got)
        elif view.external is not None:
            view.external.sell(self.holder, asset, got, c.base)
