"""A bot that calls crvUSD peg keepers' `update` whenever one can act (PegKeeper.vy: anyone may call; the
caller earns a share of the keeper's profit), paying gas like any other transaction."""

from __future__ import annotations

from functools import partial

import mesa

from defistress.agents.tx import BlockView, Tx


class PegKeeperCaller(mesa.Agent):
    def __init__(self, model: mesa.Model, spec, keepers: list, swap_gas: int):
        super().__init__(model)
        self.holder = spec.id
        self.spec = spec
        self.keepers = keepers  # PegKeeper objects
        self.gas = swap_gas

    def submit(self, view: BlockView) -> list[Tx]:
        txs = []
        for pk in self.keepers:
            kind, amount = pk.action()
            if kind != "none" and amount > 0:
                txs.append(
                    Tx(
                        self.holder,
                        partial(pk.update, self.holder),
                        self.gas,
                        self.spec.priority_fee_gwei,
                        f"peg_keeper_update:{pk.id}",
                    )
                )
        return txs
