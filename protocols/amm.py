"""Constant-product AMM pool (Uniswap v2 style) with a fee: where liquidators and keepers sell.

x·y = k on reserves after the fee is taken from the input (Uniswap v2 `getAmountOut`:
amountOut = amountIn·(1−fee)·R_out / (R_in + amountIn·(1−fee))). The pool is a ledger holder named by
its id; its reserves are its ledger balances, so they can never drift from the tokens it holds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from defistress.protocols.base import Env, Exposure, Revert
from defistress.protocols.events import Swapped


@dataclass(frozen=True)
class PoolParams:
    """Pool definition; fee is a fraction of the input (Uniswap v2: 0.003)."""

    id: str
    token0: str  # the risky asset, e.g. "ETH"
    token1: str  # the quote asset, e.g. "USDC"
    fee: float = 0.003  # Uniswap v2 UniswapV2Library.getAmountOut: 997/1000
    twap_window_s: float = 1800.0


class ConstantProductPool:
    """A two-token x·y = k pool whose reserves live in the ledger under `params.id`."""

    def __init__(self, params: PoolParams, env: Env):
        if not 0.0 <= params.fee < 1.0:
            raise ValueError(f"pool {params.id}: fee must be in [0, 1), got {params.fee}")
        self.p = params
        self.id = params.id
        self.env = env
        self._twap: deque[tuple[float, float]] = deque()  # (seconds, price) samples

    # --- state -------------------------------------------------------------------------------
    def seed(self, amount0: float, amount1: float, reason: str = "genesis") -> None:
        """Mint initial reserves (token units) into the pool."""
        self.env.ledger.mint(self.p.token0, self.id, amount0, reason)
        self.env.ledger.mint(self.p.token1, self.id, amount1, reason)

    def reserves(self) -> tuple[float, float]:
        """(token0, token1) held by the pool, token units: its ledger balances (`Ledger.balance`, read directly
        from the ledger's books: pools are read about 14 times a block, by agents, metrics and the TWAP)."""
        books, p = self.env.ledger.balances, self.p
        return books[p.token0].get(self.id, 0.0), books[p.token1].get(self.id, 0.0)

    def price(self) -> float:
        """Spot price of token0 in token1 (e.g. USDC per ETH)."""
        r0, r1 = self.reserves()
        return r1 / r0 if r0 > 0 else float("nan")

    # --- trading -------------------------------------------------------------------------------
    def quote(self, token_in: str, amount_in: float) -> float:
        """Output amount (token units) for selling `amount_in` of `token_in`, without trading."""
        r_in, r_out = self._oriented(token_in)
        a = amount_in * (1.0 - self.p.fee)
        return a * r_out / (r_in + a) if amount_in > 0 else 0.0

    def amount_in_for_price(self, target_price: float) -> tuple[str, float]:
        """Token and amount to sell so that the pool price (token1 per token0) moves to `target_price`."""
        r0, r1 = self.reserves()
        k = r0 * r1
        g = 1.0 - self.p.fee
        if target_price < self.price():
            new_r0 = (k / target_price) ** 0.5
            return self.p.token0, max(new_r0 - r0, 0.0) / g
        new_r1 = (k * target_price) ** 0.5
        return self.p.token1, max(new_r1 - r1, 0.0) / g

    def swap(self, trader: str, token_in: str, amount_in: float, min_out: float = 0.0) -> float:
        """Sell `amount_in` of `token_in` from `trader`; returns the output amount sent to `trader`."""
        if amount_in <= 0:
            raise Revert(f"{self.id}: swap amount must be positive")
        out = self.quote(token_in, amount_in)
        if out < min_out:
            raise Revert(f"{self.id}: output {out:.6g} below minimum {min_out:.6g}")
        token_out = self.p.token1 if token_in == self.p.token0 else self.p.token0
        p0 = self.price()
        led = self.env.ledger
        led.transfer(token_in, trader, self.id, amount_in)
        led.transfer(token_out, self.id, trader, out)
        self.env.emit(
            Swapped(self.env.clock.block, self.id, trader, token_in, amount_in, token_out, out, self.price() / p0 - 1.0)
        )
        return out

    def _oriented(self, token_in: str) -> tuple[float, float]:
        r0, r1 = self.reserves()
        if token_in == self.p.token0:
            return r0, r1
        if token_in == self.p.token1:
            return r1, r0
        raise Revert(f"{self.id}: token {token_in!r} not in pool (allowed: {self.p.token0}, {self.p.token1})")

    # --- oracle support ----------------------------------------------------------------------------
    def record(self) -> None:
        """Sample the pool price once per block for the TWAP (call at block end)."""
        now, twap = self.env.clock.seconds, self._twap
        twap.append((now, self.price()))
        start = now - self.p.twap_window_s
        while twap and twap[0][0] < start:
            twap.popleft()

    def twap(self) -> float:
        """Time-weighted average of the per-block price samples over the TWAP window (USD per token0)."""
        if not self._twap:
            return self.price()
        return sum(p for _, p in self._twap) / len(self._twap)

    def exposures(self) -> list[Exposure]:
        r0, r1 = self.reserves()
        return [Exposure("holds", self.p.token0, r0), Exposure("holds", self.p.token1, r1)]
