"""Hard liquidators of crvUSD markets: they close loans whose full health is below zero when the position's
stablecoin and collateral (sold outside at the reference price less the taker fee) beat the debt by more than
gas and their minimum profit; they pay the rest of the debt in stablecoin (Controller.vy `liquidate`) and sell
the collateral outside at once to restore their capital. A loan worth less than its debt is left alone: that
is crvUSD's bad debt (nothing writes it off).
"""

from __future__ import annotations

from functools import partial

import mesa
import numpy as np

from defistress.agents.tx import GWEI, BlockView, Tx, refill_gas


class LlammaLiquidator(mesa.Agent):
    def __init__(self, model: mesa.Model, holder: str, spec, markets: list, liquidation_gas: int, eth_price):
        super().__init__(model)
        self.holder = holder
        self.spec = spec
        self.markets = markets  # CrvUsdController objects
        self.gas = liquidation_gas
        self.eth_price = eth_price

    def submit(self, view: BlockView) -> list[Tx]:
        if not self.markets:
            return []
        ledger = self.markets[0].env.ledger
        refill_gas(ledger, view.external, self.holder, self.spec.gas_budget_eth, self.markets[0].stablecoin)
        gas_usd = self.gas * (view.base_fee_gwei + self.spec.priority_fee_gwei) * GWEI * self.eth_price()
        ext_fee = getattr(view.external, "fee", 0.0)
        txs = []
        for c in self.markets:
            rows = c.liquidatable()
            if not len(rows):
                continue
            x, y = c.amm.get_sum_xy(rows)
            debt = c.debt()[rows]
            ref = view.reference
            value_usd = x * ref[c.stablecoin] + y * ref[c.collateral] * (1 - ext_fee)
            profit = value_usd - debt * ref[c.stablecoin] - gas_usd
            capital = ledger.balance(self.holder, c.stablecoin)
            for k in np.argsort(-profit)[: self.spec.max_tx_per_block]:
                if profit[k] <= self.spec.min_profit_usd:
                    break
                need = max(debt[k] - x[k], 0.0)
                if need > capital:
                    continue
                capital -= need
                txs.append(
                    Tx(
                        self.holder,
                        partial(self._execute, c, int(rows[k]), view),
                        self.gas,
                        self.spec.priority_fee_gwei,
                        f"llamma_liquidation:{c.id}",
                        private=self.spec.private_orderflow,
                    )
                )
        return txs

    def _execute(self, c, row: int, view: BlockView) -> None:
        ev = c.liquidate(self.holder, row)
        if view.external is not None and ev.collateral_seized > 0:
            view.external.sell(self.holder, c.collateral, ev.collateral_seized, c.stablecoin)
