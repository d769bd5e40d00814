"""The keeper of a margin coordinator: it liquidates principals whose coordinated health stays below 1.

At set-up it opens one row on each venue that needs one (perp DEX, options venue) with `row_capital_usd` of its
stablecoin and registers them with the coordinator (`register_liquidator`); the rest of its stablecoin stays in
its wallet to repay lending debt. Each block it submits one transaction per principal that has been unhealthy
for `latency_blocks` (worst health first); the transaction calls `coordinator.liquidate(i, holder)` and, if
`unwind`, closes the positions it took on the perp DEX against the vault and sells seized tokens on the outside
market in the same call. It is the controller's appointed liquidator, so it bids a fixed priority fee.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import mesa
import numpy as np
from pydantic import BaseModel, Field

from defistress.agents.tx import BlockView, Tx
from defistress.protocols.base import Revert
from defistress.protocols.bounds import MAX_GAS, MAX_GWEI, MAX_USD, PARAMS_CONFIG, Bool, Float, Int


class CoordinatorKeeperParams(BaseModel):
    """Capital, gas and timing of the coordinator's keeper."""

    model_config = PARAMS_CONFIG

    id: str = Field("coordinator-keeper", min_length=1, description="ledger holder (owner of its venue rows)")
    quote: str = Field("USDC", min_length=1, description="stablecoin of its capital")
    row_capital_usd: Float = Field(
        100_000.0, ge=0, le=MAX_USD, description="stablecoin put into each venue row at set-up, USD [assumption]"
    )
    # design choice: a cross-venue liquidation touches two or three venues, each about a lending liquidation's
    # 500,000 gas (scenario-sketch liquidation_gas)
    gas: Int = Field(
        1_200_000, gt=0, le=MAX_GAS, description="gas units per coordinator liquidation [assumption: 2-3 venues]"
    )
    latency_blocks: Int = Field(
        1, ge=0, le=10_000, description="blocks a principal must stay unhealthy before liquidation [assumption]"
    )
    max_tx_per_block: Int = Field(5, ge=1, le=1000, description="liquidations sent per block [assumption]")
    priority_fee_gwei: Float = Field(
        2.0, ge=0, le=MAX_GWEI, description="fixed tip, gwei (no gas war: sole liquidator) [assumption]"
    )
    unwind: Bool = Field(True, description="close taken perp positions on the vault, sell seized tokens")


class CoordinatorKeeper(mesa.Agent):
    def __init__(self, model: mesa.Model, params: CoordinatorKeeperParams, coordinator, eth_price: Callable[[], float]):
        """Opens its venue rows from its ledger balance of `quote` (mint it there first) and registers them."""
        super().__init__(model)
        self.params = params
        self.holder = params.id
        self.coordinator = coordinator
        self.eth_price = eth_price  # callable: USD per ETH now (gas accounting of the caller)
        self.rows: dict[str, int | None] = {
            v: a.open_liquidator_row(self.holder, params.row_capital_usd) for v, a in coordinator.adaptors.items()
        }
        coordinator.register_liquidator(self.holder, self.rows)
        self.first_seen = np.zeros(0, dtype=np.int64)  # block each principal was first seen unhealthy, or -1
        self.attempts = 0
        self.liquidations = 0

    def submit(self, view: BlockView) -> list[Tx]:
        pr = self.params
        health = self.coordinator.screened_health()  # exact below 1, where the keeper looks
        n = health.size
        if self.first_seen.size != n:
            grown = np.full(n, -1, dtype=np.int64)
            k = min(n, self.first_seen.size)
            grown[:k] = self.first_seen[:k]
            self.first_seen = grown
        bad = health < 1.0
        self.first_seen[~bad] = -1
        self.first_seen[bad & (self.first_seen < 0)] = view.block
        ready = np.flatnonzero(bad & (view.block - self.first_seen >= pr.latency_blocks))
        ready = ready[np.argsort(health[ready], kind="stable")][: pr.max_tx_per_block]
        txs = [
            Tx(
                self.holder,
                partial(self._execute, int(i), view),
                pr.gas,
                pr.priority_fee_gwei,
                f"liquidate:{self.coordinator.id}#{int(i)}",
            )
            for i in ready
        ]
        self.attempts += len(txs)
        return txs

    def _execute(self, principal: int, view: BlockView) -> list:
        led = self.coordinator.env.ledger
        tokens = [t for t in led.tokens() if t != self.params.quote]
        before = {t: led.balance(self.holder, t) for t in tokens}
        events = self.coordinator.liquidate(principal, self.holder)
        self.liquidations += 1
        if self.params.unwind:
            self._unwind(view, before)
        return events

    def _unwind(self, view: BlockView, before: dict[str, float]) -> None:
        """Close perp positions taken into its DEX row against the vault; sell seized tokens for the quote."""
        for v, a in self.coordinator.adaptors.items():
            row, dex = self.rows.get(v), a.venue
            if row is None or getattr(dex, "vault_account", None) is None or not hasattr(dex, "size"):
                continue
            for m in np.flatnonzero(dex.size[row] != 0):
                try:
                    dex.trade(self.holder, [row], int(m), [-float(dex.size[row, m])])
                except Revert:
                    pass  # the vault cannot take it: keep the inventory
        if view.external is None:
            return
        led = self.coordinator.env.ledger
        for t, b in before.items():
            gained = led.balance(self.holder, t) - b
            if gained > 0:
                view.external.sell(self.holder, t, gained, self.params.quote)
