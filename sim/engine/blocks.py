"""Block building: order transactions by priority fee, include them under the gas limit, execute, charge gas.

Agents' transactions with a tip at least the background users' tip go first (highest tip first, then
submission order, so ties break deterministically); then the background users' gas; then the rest if
room is left. Transactions that do not fit are dropped (no gas paid; agents may resubmit next block).
Every included transaction pays gas · (base fee + tip): the base fee is burned, the tip goes to the
block builder (EIP-1559). An action that raises `Revert` leaves protocol state unchanged and still pays,
unless it was sent privately (Flashbots-style relay): then a failing transaction is simply not included.
"""

from __future__ import annotations

from dataclasses import dataclass

from defistress.agents.tx import GWEI, Tx
from defistress.protocols.base import Env, Revert
from defistress.protocols.events import Reverted
from defistress.protocols.ledger import InsufficientBalance

BUILDER = "block-builder"


@dataclass
class BlockStats:
    included: int = 0
    reverted: int = 0
    dropped: int = 0
    gas_used: float = 0.0
    agent_gas: float = 0.0
    background_gas: float = 0.0
    tips_eth: float = 0.0
    base_fee_burned_eth: float = 0.0


def build_block(
    txs: list[Tx],
    env: Env,
    base_fee_gwei: float,
    gas_limit: float,
    background_gas: float,
    background_tip_gwei: float,
    gas_token: str = "ETH",
) -> BlockStats:
    """Include and execute `txs` in one block; returns what happened (gas units, ETH)."""
    stats = BlockStats()
    for seq, tx in enumerate(txs):
        tx.seq = seq
    ordered = sorted(txs, key=lambda t: (-t.priority_fee_gwei, t.seq))
    room = float(gas_limit)
    bg_done = False
    for tx in ordered:
        if not bg_done and tx.priority_fee_gwei < background_tip_gwei:
            stats.background_gas = min(background_gas, room)
            room -= stats.background_gas
            bg_done = True
        if tx.gas > room:
            stats.dropped += 1
            continue
        if env.ledger.balance(tx.sender, gas_token) < tx.cost_eth(base_fee_gwei):
            stats.dropped += 1
            continue
        if tx.private:  # a relay simulates first and includes only what succeeds
            try:
                tx.action()
            except (Revert, InsufficientBalance):
                stats.dropped += 1
                continue
            _charge(tx, env, base_fee_gwei, gas_token, stats)
        else:
            _charge(tx, env, base_fee_gwei, gas_token, stats)
            try:
                tx.action()
            except (Revert, InsufficientBalance) as exc:
                stats.reverted += 1
                env.emit(
                    Reverted(
                        env.clock.block, tx.sender, tx.sender, tx.label, str(exc)[:200], tx.cost_eth(base_fee_gwei)
                    )
                )
        room -= tx.gas
        stats.agent_gas += tx.gas
        stats.included += 1
    if not bg_done:
        stats.background_gas = min(background_gas, room)
    stats.gas_used = stats.agent_gas + stats.background_gas
    return stats


def _charge(tx: Tx, env: Env, base_fee_gwei: float, gas_token: str, stats: BlockStats) -> None:
    """Take gas from the sender: burn the base fee, pay the tip to the builder."""
    base = tx.gas * base_fee_gwei * GWEI
    tip = tx.gas * tx.priority_fee_gwei * GWEI
    env.ledger.burn(gas_token, tx.sender, base, "eip1559_base_fee")
    env.ledger.transfer(gas_token, tx.sender, BUILDER, tip)
    stats.tips_eth += tip
    stats.base_fee_burned_eth += base
