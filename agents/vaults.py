"""A vectorised population of CDP vault owners: one agent owning thousands of vaults.

At set-up each vault draws a size (collateral USD) and a collateral ratio; the collateral comes to the
population's wallet, is locked, and the CDP mints the drawn stablecoin to the wallet. Most of it is
spent into the market (moved to the CDP's circulating holder, from which pools, lenders and keepers
draw); a share stays in the wallet for repayments. Each block, attentive owners whose health (ratio
over the liquidation ratio) has been below their alarm level for the reaction delay repay debt.
"""

from __future__ import annotations

from functools import partial

import mesa
import numpy as np

from defistress.agents.tx import BlockView, Tx


def circulating(cdp_id: str) -> str:
    """Ledger holder of a CDP's stablecoin spent into the market."""
    return f"{cdp_id}:circulating"


class VaultPopulation(mesa.Agent):
    def __init__(self, model: mesa.Model, spec, cdp, rng: np.random.Generator, block_seconds: float, fund):
        super().__init__(model)
        self.spec = spec
        self.cdp = cdp
        self.holder = spec.id
        n = spec.accounts
        price = cdp.price()
        size = spec.size_usd.draw(rng, n)
        ratio = spec.collateral_ratio.draw(rng, n)
        ink = size / price
        debt = np.maximum(size / ratio, cdp.p.dust)  # dss vat.frob: no vault below dust
        safe = debt <= ink * cdp.spot
        ink, debt, ratio = ink[safe], debt[safe], ratio[safe]
        fund(cdp.collateral, self.holder, float(ink.sum()))
        self.vaults = cdp.open_vaults(ink, debt)
        ledger = cdp.env.ledger
        self.wallet = debt * spec.wallet_share
        ledger.transfer(cdp.stablecoin, self.holder, circulating(cdp.id), float(debt.sum() - self.wallet.sum()))
        ledger.mint("ETH", self.holder, spec.gas_eth_per_account * len(ink), "genesis_gas")
        m = len(ink)
        self.target = ratio / cdp.p.liquidation_ratio
        self.attentive = rng.random(m) < spec.attentive_share
        self.alarm = spec.alarm_ratio.draw(rng, m)
        self.delay_blocks = int(np.ceil(spec.reaction_delay / block_seconds))
        self.below_since = np.full(m, -1, dtype=np.int64)

    def submit(self, view: BlockView) -> list[Tx]:
        hf = self.cdp.health()[self.vaults]
        alarmed = self.attentive & (hf < self.alarm)
        self.below_since[~alarmed] = -1
        self.below_since[alarmed & (self.below_since < 0)] = view.block
        ready = np.flatnonzero(alarmed & (view.block - self.below_since >= self.delay_blocks) & (self.wallet > 0))
        ready = ready[: self.spec.max_users_per_block]
        return [
            Tx(
                self.holder,
                partial(self._repay, ready[i : i + self.spec.users_per_tx]),
                self.spec.repay_gas * len(ready[i : i + self.spec.users_per_tx]),
                self.spec.priority_fee_gwei,
                "repay",
            )
            for i in range(0, ready.size, self.spec.users_per_tx)
        ]

    def _repay(self, local: np.ndarray) -> None:
        """Repay enough to restore each vault's original ratio, within its wallet."""
        cdp = self.cdp
        vaults = self.vaults[local]
        debt = cdp.debt()[vaults]
        hf = cdp.health()[vaults]
        ratio = np.divide(hf, self.target[local], out=np.ones_like(hf), where=np.isfinite(hf))
        wanted = np.maximum(debt * (1.0 - ratio), 0.0)
        amounts = np.minimum(wanted, self.wallet[local])
        keep = amounts > 0
        if keep.any():
            paid = cdp.repay(vaults[keep], amounts[keep])
            self.wallet[local[keep]] -= paid
            self.below_since[local[keep]] = -1
