"""An arbitrageur between LLAMMA and the outside market: what moves borrowers' collateral through their bands.

When the AMM's price leaves the no-arbitrage band around the external price (its fee and the outside taker
fee), it trades the AMM to the band's edge: buying collateral with stablecoin when the AMM is cheap (price
falling: soft liquidation sells borrowers' collateral) or selling collateral into it when it is dear (price
rising: their collateral is bought back), and offsets the trade on the outside market at once. The amount
comes from the AMM's own `get_amount_for_price` (AMM.vy), recomputed when the transaction runs; inventory
and the share of it risked per block cap the trade (capital-limited arbitrage, as in crvUSDrisk).
"""

from __future__ import annotations

from functools import partial

import mesa

from defistress.agents.tx import GWEI, BlockView, Tx, refill_gas


class LlammaArbitrageur(mesa.Agent):
    def __init__(self, model: mesa.Model, spec, markets: list, swap_gas: int, eth_price):
        super().__init__(model)
        self.holder = spec.id
        self.spec = spec
        self.markets = markets  # CrvUsdController objects
        self.gas = swap_gas
        self.eth_price = eth_price
        self.trades = 0

    def _target(self, c, view: BlockView) -> tuple[bool, float] | None:
        """(pump?, AMM price to trade to) when the AMM is outside the no-arbitrage band, else None."""
        amm = c.amm
        ref = view.reference
        ext = ref[amm.p.collateral] / ref[amm.p.stablecoin]
        keep = (1.0 - getattr(view.external, "fee", 0.0)) * (1.0 - amm.dynamic_fee())
        p = amm.get_p()
        if p < ext * keep:
            return True, ext * keep
        if p > ext / keep:
            return False, ext / keep
        return None

    def _sized(self, c, pump: bool, target: float) -> float:
        amm = c.amm
        amount, is_pump = amm.get_amount_for_price(target)
        if is_pump != pump:
            return 0.0
        token_in = amm.p.stablecoin if pump else amm.p.collateral
        return min(amount, amm.env.ledger.balance(self.holder, token_in) * self.spec.max_trade_share)

    def submit(self, view: BlockView) -> list[Tx]:
        if not self.markets:
            return []
        ledger = self.markets[0].env.ledger
        refill_gas(ledger, view.external, self.holder, self.spec.gas_budget_eth, self.markets[0].stablecoin)
        gas_usd = self.gas * (view.base_fee_gwei + self.spec.priority_fee_gwei) * GWEI * self.eth_price()
        ext_fee = getattr(view.external, "fee", 0.0)
        txs = []
        for c in self.markets:
            t = self._target(c, view)
            if t is None:
                continue
            pump, target = t
            amount = self._sized(c, pump, target)
            if amount <= 0:
                continue
            i, j = (0, 1) if pump else (1, 0)
            used, out = c.amm.get_dxdy(i, j, amount)
            tok_in, tok_out = (c.stablecoin, c.collateral) if pump else (c.collateral, c.stablecoin)
            profit = out * view.reference[tok_out] * (1 - ext_fee) - used * view.reference[tok_in] - gas_usd
            if profit <= self.spec.min_profit_usd:
                continue
            txs.append(
                Tx(
                    self.holder,
                    partial(self._execute, c, pump, target, view),
                    self.gas,
                    self.spec.priority_fee_gwei,
                    f"llamma_arbitrage:{c.id}",
                )
            )
        return txs

    def _execute(self, c, pump: bool, target: float, view: BlockView) -> None:
        amount = self._sized(c, pump, target)  # the AMM may have moved since the decision
        if amount <= 0:
            return
        i, j = (0, 1) if pump else (1, 0)
        used, out = c.amm.exchange(self.holder, i, j, amount)
        self.trades += 1
        tok_in, tok_out = (c.stablecoin, c.collateral) if pump else (c.collateral, c.stablecoin)
        if view.external is not None and out > 0:
            view.external.sell(self.holder, tok_out, out, tok_in)
