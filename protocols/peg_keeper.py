"""crvUSD peg keepers and the aggregated crvUSD price they (and the monetary policy) read.

PegKeeper (curve-stablecoin contracts/stabilizer/PegKeeper.vy, v1 of 2023, `update`): at most every
ACTION_DELAY (15 min), if the pool holds more of the other stablecoin than of crvUSD (crvUSD above peg) and
the aggregated price is ≥ 1, it deposits (difference)/5 crvUSD from its reserve into the pool (its debt
grows); if the pool holds more crvUSD (below peg) and the price is ≤ 1, it withdraws (difference)/5 of its
debt. The update must not lower its profit (LP value above debt); the caller gets `caller_share` of the
profit made, in LP tokens. The reserve it deposits from is the debt ceiling the factory minted to it.

AggregateStablePrice (contracts/price_oracles/AggregateStablePrice2.vy `_price`): the pools' EMA prices of
crvUSD averaged with weights TVL_i · exp(−(e_i − e_min)), e_i = (p_i − p_avg)² / sigma², p_avg the
TVL-weighted mean; TVL is the pool's LP supply (the contract smooths it over TVL_MA_TIME; not here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from defistress.protocols.base import Env, Exposure, Revert
from defistress.protocols.events import Generic
from defistress.protocols.stableswap import StableSwapPool

#: PegKeeper.vy ACTION_DELAY (seconds)
ACTION_DELAY_S = 15 * 60
#: PegKeeper.vy PROFIT_THRESHOLD: 1 LP token of slack in the profit check
PROFIT_THRESHOLD = 1.0
#: AggregateStablePrice2.vy constructor sigma used for crvUSD (1e15 = 0.001)
AGG_SIGMA = 0.001


class AggregateStablePrice:
    """USD per crvUSD aggregated over stableswap pools that pair it with another stablecoin."""

    def __init__(self, pools: list[StableSwapPool], stablecoin: str = "crvUSD", sigma: float = AGG_SIGMA):
        self.pools = [p for p in pools if stablecoin in p.p.coins]
        self.stablecoin = stablecoin
        self.sigma = sigma
        self.id = f"agg:{stablecoin}"

    @property
    def price(self) -> float:
        if not self.pools:
            return 1.0
        prices = np.array([self._pool_price(p) for p in self.pools])
        tvl = np.array([p.total_supply() for p in self.pools])
        if tvl.sum() <= 0:
            return 1.0
        p_avg = float((prices * tvl).sum() / tvl.sum())
        e = (prices - p_avg) ** 2 / self.sigma**2
        w = tvl * np.exp(-(e - e.min()))
        return float((w * prices).sum() / w.sum())

    def _pool_price(self, pool: StableSwapPool) -> float:
        """EMA price of the stablecoin in the pool's other coin (is_inverse when it is coin 0)."""
        k = pool.p.coins.index(self.stablecoin)
        return 1.0 / pool.price_oracle(1) if k == 0 else pool.price_oracle(k)


@dataclass(frozen=True)
class PegKeeperParams:
    """id (ledger holder), the pool and stablecoin, debt ceiling (stablecoin units), caller share of profit."""

    id: str
    stablecoin: str = "crvUSD"
    ceiling: float = 25e6
    caller_share: float = 0.2
    action_delay_s: float = ACTION_DELAY_S

    def __post_init__(self) -> None:
        if not self.ceiling >= 0 or not 0.0 <= self.caller_share <= 1.0:
            raise ValueError(f"peg keeper {self.id}: ceiling >= 0 and caller_share in [0, 1] needed")


class PegKeeper:
    """One peg keeper acting on one two-coin stableswap pool (PegKeeper.vy, equal-decimals version)."""

    def __init__(self, params: PegKeeperParams, pool: StableSwapPool, price, env: Env, debt: float = 0.0):
        if params.stablecoin not in pool.p.coins or pool.n != 2:
            raise ValueError(
                f"peg keeper {params.id}: pool {pool.id} must be a two-coin pool holding {params.stablecoin}"
            )
        if debt > params.ceiling:
            raise ValueError(f"peg keeper {params.id}: debt {debt} above its ceiling {params.ceiling}")
        self.p = params
        self.id = params.id
        self.pool = pool
        self.price_source = price
        self.env = env
        self.i = pool.p.coins.index(params.stablecoin)
        self.debt = float(debt)
        self.last_change = -math.inf
        self.updates = 0

    def fund(self, reason: str = "pegkeeper_ceiling") -> None:
        """The factory mints the unused ceiling to the keeper (its reserve to deposit from)."""
        self.env.ledger.mint(self.p.stablecoin, self.id, self.p.ceiling - self.debt, reason)

    def _profit(self) -> float:
        """LP tokens held above the debt's LP value (PegKeeper.vy `_calc_profit`)."""
        lp_debt = self.debt / self.pool.get_virtual_price() + PROFIT_THRESHOLD
        return max(self.env.ledger.balance(self.id, self.pool.lp) - lp_debt, 0.0)

    def action(self) -> tuple[str, float]:
        """What `update` would do now: ("provide" | "withdraw" | "none", stablecoin amount)."""
        if self.env.clock.seconds < self.last_change + self.p.action_delay_s:
            return "none", 0.0
        b = self.pool.balances()
        pegged, peg = b[self.i], b[1 - self.i]
        p_agg = float(self.price_source.price)
        if peg > pegged and p_agg >= 1.0:
            return "provide", min((peg - pegged) / 5.0, self.env.ledger.balance(self.id, self.p.stablecoin))
        if pegged > peg and p_agg <= 1.0:
            return "withdraw", min((pegged - peg) / 5.0, self.debt)
        return "none", 0.0

    def update(self, caller: str) -> float:
        """PegKeeper.vy `update`: provide or withdraw, check profit did not fall, pay the caller its share (LP)."""
        kind, amount = self.action()
        if kind == "none" or amount <= 0:
            raise Revert(f"{self.id}: nothing to do (delay, balance or aggregated price)")
        before = self._profit()
        amounts = [0.0, 0.0]
        amounts[self.i] = amount
        if kind == "provide":
            self.pool.add_liquidity(self.id, amounts)
            self.debt += amount
        else:
            self.pool.remove_liquidity_imbalance(self.id, amounts)
            self.debt -= amount
        self.last_change = self.env.clock.seconds
        after = self._profit()
        if after < before - 1e-9 * max(before, 1.0):
            raise Revert(f"{self.id}: peg unprofitable")
        reward = (after - before) * self.p.caller_share
        if reward > 0:
            self.env.ledger.transfer(self.pool.lp, self.id, caller, reward)
        self.updates += 1
        self.env.emit(
            Generic(
                self.env.clock.block,
                self.id,
                "peg_keeper_update",
                {"action": kind, "amount": amount, "debt": self.debt},
            )
        )
        return reward

    # a peg keeper has no borrowers: the MarginProtocol surface is empty
    def health(self) -> np.ndarray:
        return np.zeros(0)

    def liquidatable(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def accrue(self, dt_seconds: float) -> None:
        """Nothing accrues: the keeper acts only when called."""

    def metrics(self) -> dict[str, float]:
        return {"debt_usd": 0.0, "pegkeeper_debt": self.debt, "pool_price": self.pool.get_p(), "updates": self.updates}

    def exposures(self) -> list[Exposure]:
        return [
            Exposure("holds", self.pool.lp, self.env.ledger.balance(self.id, self.pool.lp)),
            Exposure("issues", self.p.stablecoin, self.debt),
        ]
