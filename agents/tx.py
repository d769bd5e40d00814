"""Transactions that agents submit, and the read-only view of the block they decide in.

An agent never changes protocol state directly in the decide phase: it returns `Tx` objects whose
`action` calls protocol methods. The block builder (sim.blocks) orders them by priority fee, includes
them under the block gas limit, runs each action, and charges gas even when the action reverts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GWEI = 1e-9  # ETH per gwei


@dataclass
class Tx:
    """One transaction: who sends it, what it does, its gas (units) and its priority fee (gwei/gas)."""

    sender: str
    action: Callable[[], Any]
    gas: int
    priority_fee_gwei: float
    label: str
    seq: int = 0
    private: bool = False  # sent through a private relay (Flashbots-style): not included if it would revert

    def cost_eth(self, base_fee_gwei: float) -> float:
        """Gas cost in ETH at the given base fee (EIP-1559: base + priority per gas unit)."""
        return self.gas * (base_fee_gwei + self.priority_fee_gwei) * GWEI


@dataclass
class BlockView:
    """What every agent may see when it decides: time, gas price and the public market.

    `reference` is the off-chain (CEX) price in USD per token that arbitrageurs and liquidators can
    trade at; protocols never read it. `external` trades with the outside market (sim.market.External).
    """

    block: int
    seconds: float
    base_fee_gwei: float
    reference: dict[str, float]
    external: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class Actor:
    """Mixin for strategic agents: a ledger holder id and a `submit` hook called once per block."""

    holder: str

    def submit(self, view: BlockView) -> list[Tx]:  # pragma: no cover - interface
        return []


#: refill gas when the ETH balance falls below this share of the budget
GAS_REFILL_SHARE = 0.25


def refill_gas(ledger, external, holder: str, budget_eth: float, pay_with: str) -> None:
    """Buy ETH back up to `budget_eth` on the outside market when below a quarter of it (off-chain)."""
    have = ledger.balance(holder, "ETH")
    if external is None or have >= GAS_REFILL_SHARE * budget_eth or pay_with == "ETH":
        return
    p_eth, p_pay = external.market.price("ETH"), external.market.price(pay_with)
    amount = min((budget_eth - have) * p_eth / p_pay / (1.0 - external.fee), ledger.balance(holder, pay_with))
    if amount > 0:
        external.sell(holder, pay_with, amount, "ETH")
