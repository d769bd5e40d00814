"""An arbitrageur with limited capital who pulls AMM pools toward the reference price and pays gas.

When a pool's price leaves the no-arbitrage band (reference price ± fee), it trades the pool back to the
band edge, capped by its inventory, and offsets the trade on the outside market at once. That offset is
where liquidation selling in a pool reaches the reference price: it is net selling on the outside market,
which moves the reference through the depth model.
"""

from __future__ import annotations

from functools import partial

import mesa

from defistress.agents.tx import GWEI, BlockView, Tx, refill_gas


class Arbitrageur(mesa.Agent):
    def __init__(self, model: mesa.Model, spec, pools: list, swap_gas: int, eth_price):
        super().__init__(model)
        self.holder = spec.id
        self.spec = spec
        self.pools = pools
        self.gas = swap_gas
        self.eth_price = eth_price

    def submit(self, view: BlockView) -> list[Tx]:
        txs: list[Tx] = []
        if not self.pools:
            return txs
        ref = view.reference
        ledger = self.pools[0].env.ledger
        stables = [t for t in (self.pools[0].p.token1, self.pools[0].p.token0) if t != "ETH"]
        refill_gas(ledger, view.external, self.holder, self.spec.gas_budget_eth, stables[0])
        gas_usd: float | None = (
            None  # USD of one swap's gas, priced when a pool is out of its band (most blocks none is)
        )
        for pool in self.pools:
            t0, t1 = pool.p.token0, pool.p.token1
            fair = ref[t0] / ref[t1]
            price = pool.price()
            band = pool.p.fee + getattr(view.external, "fee", 0.0)
            if price < fair * (1 - band):
                target = fair * (1 - band)
            elif price > fair * (1 + band):
                target = fair * (1 + band)
            else:
                continue
            token_in, amount = pool.amount_in_for_price(target)
            token_out = t1 if token_in == t0 else t0
            cap = ledger.balance(self.holder, token_in) * self.spec.max_trade_share
            amount = min(amount, cap)
            if amount <= 0:
                continue
            out = pool.quote(token_in, amount)
            ext_fee = getattr(view.external, "fee", 0.0)
            if gas_usd is None:
                gas_usd = self.gas * (view.base_fee_gwei + self.spec.priority_fee_gwei) * GWEI * self.eth_price()
            profit = out * ref[token_out] * (1 - ext_fee) - amount * ref[token_in] - gas_usd
            if profit <= self.spec.min_profit_usd:
                continue
            txs.append(
                Tx(
                    self.holder,
                    partial(self._execute, pool, token_in, token_out, amount, view),
                    self.gas,
                    self.spec.priority_fee_gwei,
                    f"arbitrage:{pool.id}",
                )
            )
        return txs

    def _execute(self, pool, token_in: str, token_out: str, amount: float, view: BlockView) -> None:
        out = pool.swap(self.holder, token_in, amount)
        if view.external is not None:
            view.external.sell(self.holder, token_out, out, token_in)
