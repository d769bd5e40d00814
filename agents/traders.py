"""A vectorised population of perp traders on one `PerpDex`: one agent owning thousands of accounts.

Set-up: each account trades one market (drawn by `market_weights`), long with probability `long_share`, with a
lognormal notional (USD) and a lognormal leverage clipped to [min, max] and to 1/IMF_eff (the DEX's OI-scaled
initial margin), so every account opens at or above initial margin. Positions open at the oracle price. A
liquidity-vault account (HLP-style market maker, holder "{id}:vault") takes each market's net residual, so that
longs and shorts balance inside the DEX; it becomes the DEX's vault (the counterparty of later reductions and
excluded from the funding imbalance) unless the DEX already has one. Collateral, spare wallets and the vault's
collateral are minted (genesis) so that the ledger sees every later movement.

Each block, attentive accounts whose health has stayed below their alarm level for `reaction_delay_blocks`
top up margin from their wallet to reach `restore_multiple` × their alarm level; accounts whose wallet cannot
cover that reduce their positions against the vault at the oracle price. Each kind of action is one batched
Tx whose gas is the per-user gas times the number of users in it.
"""

from __future__ import annotations

from functools import partial

import mesa
import numpy as np
from pydantic import BaseModel, Field, model_validator

from defistress.agents.tx import BlockView, Tx
from defistress.protocols.base import Revert
from defistress.protocols.bounds import (
    MAX_ACCOUNTS,
    MAX_BLOCKS,
    MAX_GAS,
    MAX_GWEI,
    MAX_VALUE,
    PARAMS_CONFIG,
    Float,
    Int,
    Share,
)
from defistress.protocols.events import UserAction


class _Strict(BaseModel):
    model_config = PARAMS_CONFIG


class Lognormal(_Strict):
    """A lognormal draw per account (median, sigma of the log), clipped to [min, max]."""

    median: Float = Field(gt=0, le=MAX_VALUE, description="median of the draw, in the field's unit")
    sigma: Float = Field(0.5, ge=0, le=10, description="standard deviation of the log of the draw (unitless)")
    min: Float | None = Field(
        None, gt=0, le=MAX_VALUE, description="draws below this are raised to it, in the field's unit"
    )
    max: Float | None = Field(
        None, gt=0, le=MAX_VALUE, description="draws above this are lowered to it, in the field's unit"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"lognormal: 'max' ({self.max}) must be >= 'min' ({self.min})")
        return self

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = self.median * np.exp(self.sigma * rng.standard_normal(n))
        return np.clip(x, 0.0 if self.min is None else self.min, MAX_VALUE if self.max is None else self.max)


class TraderParams(_Strict):
    """A population of perp traders (behavioural defaults are modelling assumptions, not protocol values)."""

    id: str = Field("traders", min_length=1, description="ledger holder of the population's USDC")
    accounts: Int = Field(gt=0, le=MAX_ACCOUNTS, description="number of accounts (1..5,000,000)")
    market_weights: dict[str, Share] = Field(description="asset -> share of accounts trading that market (sum 1)")
    long_share: Float = Field(0.5, ge=0, le=1, description="share of accounts that are long [assumption]")
    leverage: Lognormal = Field(
        Lognormal(median=5.0, sigma=0.6, min=1.0, max=50.0),
        description="notional / collateral per account (unitless) [assumption]",
    )
    size_usd: Lognormal = Field(
        Lognormal(median=5_000.0, sigma=1.5, min=50.0, max=20e6),
        description="position notional per account, USD [assumption]",
    )
    attentive_share: Float = Field(0.3, ge=0, le=1, description="share of users who defend their margin [assumption]")
    alarm_health_low: Float = Field(
        1.2, gt=0, le=100, description="alarm levels are uniform on [low, high] (health, unitless) [assumption]"
    )
    alarm_health_high: Float = Field(
        2.0, gt=0, le=100, description="upper end of the alarm levels (health, unitless) [assumption]"
    )
    restore_multiple: Float = Field(
        1.5, ge=1, le=100, description="users restore health to this x alarm (unitless) [assumption]"
    )
    reaction_delay_blocks: Int = Field(
        75, ge=0, le=MAX_BLOCKS, description="blocks below alarm before acting (75 = 15 min) [assumption]"
    )
    wallet_share: Float = Field(
        0.5, ge=0, le=100, description="spare USDC per user, share of its collateral [assumption]"
    )
    top_up_gas: Int = Field(100_000, gt=0, le=MAX_GAS, description="gas units per user in a batched top-up")
    reduce_gas: Int = Field(200_000, gt=0, le=MAX_GAS, description="gas units per user in a batched reduction")
    priority_fee_gwei: Float = Field(2.0, ge=0, le=MAX_GWEI, description="tip per gas unit, gwei")
    max_users_per_block: Int = Field(
        400, ge=1, le=MAX_ACCOUNTS, description="attentive users who can act in one block [assumption]"
    )
    vault_leverage: Float = Field(
        2.0, gt=0, le=100, description="vault collateral = residual notional / this (unitless) [assumption]"
    )

    @model_validator(mode="after")
    def _check(self):
        w = self.market_weights
        if not w or min(w.values()) < 0 or not np.isclose(sum(w.values()), 1.0):
            raise ValueError(f"{self.id}.market_weights: shares must be >= 0 and sum to 1, got {w}")
        if self.alarm_health_high < self.alarm_health_low:
            raise ValueError(
                f"{self.id}: alarm_health_high ({self.alarm_health_high}) must be >= "
                f"alarm_health_low ({self.alarm_health_low})"
            )
        return self


def draw_attention(params, rng: np.random.Generator, n: int):
    """Who defends their margin and when: (attentive mask, alarm health, target health, below-since block = -1),
    from params with attentive_share, alarm_health_low/high and restore_multiple (modelling assumptions)."""
    attentive = rng.random(n) < params.attentive_share
    alarm = rng.uniform(params.alarm_health_low, params.alarm_health_high, n)
    return attentive, alarm, alarm * params.restore_multiple, np.full(n, -1, dtype=np.int64)


class TraderPopulation(mesa.Agent):
    """Accounts on one `PerpDex`; decisions for all of them are array operations."""

    def __init__(self, model: mesa.Model, params: TraderParams, dex, rng: np.random.Generator):
        super().__init__(model)
        self.params = params
        self.dex = dex
        self.holder = params.id
        self.vault_holder = f"{params.id}:vault"
        unknown = [a for a in params.market_weights if a not in dex.market_index]
        if unknown:
            raise ValueError(f"{params.id}.market_weights: no market for {unknown} on {dex.id}; markets: {dex.assets}")
        n, n_m = params.accounts, len(dex.assets)
        names = list(params.market_weights)
        weights = np.array([params.market_weights[a] for a in names])
        pick = rng.choice(len(names), size=n, p=weights / weights.sum())
        market_of = np.array([dex.market_index[a] for a in names])[pick]
        side = np.where(rng.random(n) < params.long_share, 1.0, -1.0)
        notional = params.size_usd.draw(rng, n)
        leverage = params.leverage.draw(rng, n)
        p = dex.prices()
        long_usd = np.bincount(market_of, weights=notional * (side > 0), minlength=n_m)
        short_usd = np.bincount(market_of, weights=notional * (side < 0), minlength=n_m)
        imf = dex.imf_effective(dex.open_interest_usd() + np.maximum(long_usd, short_usd))
        leverage = np.minimum(leverage, 1.0 / imf[market_of])  # open at or above initial margin
        collateral = notional / leverage
        sizes = np.zeros((n + 1, n_m))
        sizes[np.arange(n), market_of] = side * notional / p[market_of]
        sizes[n] = -sizes[:n].sum(axis=0)  # the vault takes the residual
        vault_coll = float(max(np.abs(sizes[n]) @ p / params.vault_leverage, np.abs(sizes[n]) @ (p * imf)))
        self.wallet = collateral * params.wallet_share
        led = dex.env.ledger
        led.mint(dex.quote, self.holder, float(collateral.sum() + self.wallet.sum()), "genesis_collateral")
        if vault_coll > 0:
            led.mint(dex.quote, self.vault_holder, vault_coll, "genesis_vault")
        idx = dex.open_accounts([self.holder] * n + [self.vault_holder], np.append(collateral, vault_coll), sizes)
        self.accounts = idx[:n]
        self.vault = int(idx[n])
        if dex.vault_account is None:
            dex.set_vault(self.vault)
        self.market_of = market_of
        self.leverage = leverage
        self.attentive, self.alarm, self.target_health, self.below_since = draw_attention(params, rng, n)
        self.topped_up_usd = 0.0
        self.reduced_notional_usd = 0.0
        #: the DEX state key of the last `submit` that dated alarms, and its alarm mask (`below_since` set from it)
        self._alarm_key: tuple | None = None
        self._alarmed = np.zeros(0, dtype=bool)

    def health(self) -> np.ndarray:
        return self.dex.health()[self.accounts]

    def submit(self, view: BlockView) -> list[Tx]:
        """One batched top-up Tx and one batched reduce Tx for attentive users who waited out their delay."""
        if not self.attentive.any():
            return []
        acc = self.accounts
        dex = self.dex
        key = dex.state_key()  # what the health factors read
        if key == self._alarm_key:  # the same health factors, the dates already set by the last call
            alarmed = self._alarmed
        else:
            h = dex.health()[acc]
            alarmed = self.attentive & (h < self.alarm)
            self.below_since[~alarmed] = -1
            self.below_since[alarmed & (self.below_since < 0)] = view.block
            self._alarm_key, self._alarmed = key, alarmed
        ready = np.flatnonzero(alarmed & (view.block - self.below_since >= self.params.reaction_delay_blocks))
        ready = ready[: self.params.max_users_per_block]
        if ready.size == 0:
            return []
        eq = self.dex.equity()[acc[ready]]
        need = np.maximum(self.target_health[ready] * self.dex.maintenance_requirement()[acc[ready]] - eq, 0.0)
        top = ready[self.wallet[ready] > 0]
        cut = ready[(self.wallet[ready] < need) & (eq > 0)]
        txs = []
        pr = self.params
        if top.size:
            txs.append(
                Tx(
                    self.holder,
                    partial(self._top_up, top),
                    pr.top_up_gas * top.size,
                    pr.priority_fee_gwei,
                    f"top_up:{self.dex.id}",
                )
            )
        if cut.size:
            txs.append(
                Tx(
                    self.holder,
                    partial(self._reduce, cut),
                    pr.reduce_gas * cut.size,
                    pr.priority_fee_gwei,
                    f"reduce:{self.dex.id}",
                )
            )
        return txs

    def _need(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        acc = self.accounts[local]
        eq = self.dex.equity()[acc]
        mmr = self.dex.maintenance_requirement()[acc]
        return acc, eq, np.maximum(self.target_health[local] * mmr - eq, 0.0)

    def _top_up(self, local: np.ndarray) -> None:
        """Deposit from each user's wallet what restores its target health (as much as the wallet holds)."""
        acc, _, need = self._need(local)
        amounts = np.minimum(need, self.wallet[local])
        keep = amounts > 0
        if not keep.any():
            return
        total = self.dex.deposit(self.holder, acc[keep], amounts[keep])
        self.wallet[local[keep]] -= amounts[keep]
        self.topped_up_usd += total
        self.below_since[local[keep & (amounts >= need)]] = -1
        self._alarm_key = None  # the dates changed here: the next submit dates afresh
        env = self.dex.env
        env.emit(UserAction(env.clock.block, self.holder, "top_up", int(keep.sum()), self.dex.quote, total))

    def _reduce(self, local: np.ndarray) -> None:
        """Scale positions by equity / (target · MMR) against the vault at the oracle price (health = target)."""
        acc, eq, need = self._need(local)
        mmr = self.dex.maintenance_requirement()[acc]
        keep = (need > 0) & (eq > 0) & (mmr > 0)
        if not keep.any():
            return
        acc, local = acc[keep], local[keep]
        k = np.clip(eq[keep] / (self.target_health[local] * mmr[keep]), 0.0, 1.0)
        sizes = self.dex.size[acc]
        traded, users, last_error = 0.0, 0, None
        for m in range(sizes.shape[1]):
            rows = np.flatnonzero(sizes[:, m] != 0)
            if rows.size == 0:
                continue
            try:  # markets are filled one by one; a market the vault cannot take is skipped
                traded += self.dex.trade(self.holder, acc[rows], m, -sizes[rows, m] * (1.0 - k[rows]))
                users += rows.size
            except Revert as exc:
                last_error = exc
        if users == 0 and last_error is not None:
            raise last_error
        self.reduced_notional_usd += traded
        self.below_since[local] = -1
        env = self.dex.env
        env.emit(UserAction(env.clock.block, self.holder, "reduce", users, self.dex.quote, traded))
