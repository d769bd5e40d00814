"""The block gas market: EIP-1559 base fee and other users' background demand.

Base fee update (EIP-1559): base' = base · (1 + (used − target) / target / 8), target = limit / 2.
Other users want `background_demand · limit` gas at the initial base fee, scaled by shock windows and
falling with price as (base / base0)^−elasticity; they pay `background_priority_gwei`. A replayed gas
series (e.g. Black Thursday's 10-minute mean gas price) sets the base fee directly instead.
"""

from __future__ import annotations

import numpy as np

BASE_FEE_MAX_CHANGE_DENOMINATOR = 8  # EIP-1559
ELASTICITY_MULTIPLIER = 2  # EIP-1559: target = limit / 2
MIN_BASE_FEE_GWEI = 1e-9


class GasMarket:
    """Base fee (gwei) per block and the background gas demand competing with agents."""

    def __init__(self, spec, n_blocks: int, block_seconds: float, shocks=(), replay_gwei: np.ndarray | None = None):
        self.spec = spec
        self.limit = spec.block_gas_limit
        self.target = spec.block_gas_limit / ELASTICITY_MULTIPLIER
        self.base0 = spec.base_fee_gwei
        self.base_fee_gwei = spec.base_fee_gwei if replay_gwei is None else float(replay_gwei[0])
        self.replay = replay_gwei
        t = np.arange(n_blocks) * block_seconds
        self.demand_mult = np.ones(n_blocks)
        for s in shocks:
            if s.gas_demand_multiplier is not None:
                self.demand_mult[(t >= s.at) & (t < s.until)] *= s.gas_demand_multiplier

    def background_gas(self, block: int) -> float:
        """Gas other users want in this block at the current base fee (gas units)."""
        mult = self.demand_mult[min(block, len(self.demand_mult) - 1)]
        price_factor = (self.base_fee_gwei / self.base0) ** (-self.spec.background_price_elasticity)
        return self.limit * self.spec.background_demand * mult * price_factor

    def set_block(self, block: int) -> None:
        """Use the replayed base fee for this block, if any."""
        if self.replay is not None:
            self.base_fee_gwei = float(self.replay[min(block, len(self.replay) - 1)])

    def after_block(self, gas_used: float) -> None:
        """EIP-1559 update from this block's gas used (skipped when the fee is replayed)."""
        if self.replay is not None:
            return
        delta = (gas_used - self.target) / self.target / BASE_FEE_MAX_CHANGE_DENOMINATOR
        self.base_fee_gwei = max(self.base_fee_gwei * (1.0 + delta), MIN_BASE_FEE_GWEI)
