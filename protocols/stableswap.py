"""A Curve StableSwap pool (n coins, amplification A, fee, admin fee, EMA price oracle) whose balances live in
the ledger under its id; usable as a venue (arbitrageurs, liquidators) and as an oracle source.

Exchange, prices and the oracle follow curve-stablecoin contracts/Stableswap.vy (the crvUSD factory plain
pool, v6.0.1): `exchange` / `get_dy` (fee taken from the output, ADMIN_FEE = 50 % of it leaves the pool's
balances), `get_p` (spot dx_0/dx_1), `_ma_price` / `price_oracle` (EMA of the spot price with
`ma_exp_time`, 866 s = 10 min half-life at deployment), `add_liquidity`, `remove_liquidity_imbalance`,
`calc_token_amount` and `get_virtual_price` (imbalance fee fee·n/(4(n−1))). The invariant math is in
stableswap_math.py. Balances are float64 token units; the LP token is the ledger token "<id>:lp".

Venue surface shared with amm.ConstantProductPool (coins[0] and coins[1] are its token0 / token1):
`price()` is token0 priced in token1, `twap()` is the same orientation read from the EMA oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from defistress.protocols.base import Env, Exposure, Revert
from defistress.protocols.events import Swapped
from defistress.protocols.stableswap_math import get_D, get_y, spot_prices

#: Stableswap.vy ADMIN_FEE = 5000000000 / FEE_DENOMINATOR 1e10: half of every fee goes to the admin
ADMIN_FEE = 0.5
#: Stableswap.vy initialize: ma_exp_time = 866 (= 600 / ln 2, seconds)
MA_EXP_TIME_S = 866.0
#: Stableswap.vy _ma_price: the last price entering the EMA is capped at 2 (coin 0 units)
LAST_PRICE_CAP = 2.0


@dataclass(frozen=True)
class StableSwapParams:
    """Pool definition: coins (ledger tokens), A (as the factory stores it, A·n^(n−1)), fee (fraction of the
    output; 0.0001 = the crvUSD pools' 1e6 / 1e10) and the EMA time of its price oracle (seconds)."""

    id: str
    coins: tuple[str, ...]
    A: float = 500.0
    fee: float = 0.0001
    admin_fee: float = ADMIN_FEE
    ma_exp_time_s: float = MA_EXP_TIME_S

    def __post_init__(self) -> None:
        if len(self.coins) < 2 or len(set(self.coins)) != len(self.coins):
            raise ValueError(f"stableswap {self.id}: coins must be 2 or more distinct tokens, got {self.coins}")
        if not 1.0 <= self.A <= 1e6:
            raise ValueError(f"stableswap {self.id}: A must be in [1, 1e6] (Stableswap.vy MAX_A), got {self.A}")
        if not 0.0 <= self.fee <= 0.5:
            raise ValueError(f"stableswap {self.id}: fee must be in [0, 0.5] (MAX_FEE), got {self.fee}")
        if not 0.0 <= self.admin_fee <= 1.0:
            raise ValueError(f"stableswap {self.id}: admin_fee must be in [0, 1], got {self.admin_fee}")
        if not self.ma_exp_time_s > 0:
            raise ValueError(f"stableswap {self.id}: ma_exp_time_s must be > 0, got {self.ma_exp_time_s}")

    # the venue surface of amm.PoolParams
    @property
    def token0(self) -> str:
        return self.coins[0]

    @property
    def token1(self) -> str:
        return self.coins[1]


@dataclass
class _Oracle:
    """Per coin k ≥ 1: last spot price and its EMA (coin 0 per coin k), and when they were saved (seconds)."""

    last: np.ndarray
    ema: np.ndarray
    t: float = 0.0


class StableSwapPool:
    """An n-coin StableSwap pool; its balances are its ledger balances under `params.id`."""

    def __init__(self, params: StableSwapParams, env: Env):
        self.p = params
        self.id = params.id
        self.env = env
        self.n = len(params.coins)
        self.lp = f"{params.id}:lp"
        self.admin = f"{params.id}:admin"
        self._oracle = _Oracle(np.ones(self.n - 1), np.ones(self.n - 1), env.clock.seconds)

    # --- state -------------------------------------------------------------------------------------
    def seed(self, balances: list[float], lp_holders: dict[str, float] | None = None, reason: str = "genesis") -> None:
        """Mint initial balances (token units) into the pool and LP tokens worth D (virtual price 1) to the
        LP holders (by share of D; default all to "<id>:lps"); the oracle starts at the spot price."""
        if len(balances) != self.n:
            raise ValueError(f"stableswap {self.id}: {self.n} balances needed, got {len(balances)}")
        for coin, b in zip(self.p.coins, balances):
            self.env.ledger.mint(coin, self.id, b, reason)
        d = self.D()
        holders = lp_holders or {f"{self.id}:lps": 1.0}
        total = sum(holders.values())
        for h, share in holders.items():
            self.env.ledger.mint(self.lp, h, d * share / total, reason)
        spot = self.spot()[1:]
        self._oracle = _Oracle(spot.copy(), spot.copy(), self.env.clock.seconds)

    def balances(self) -> np.ndarray:
        led = self.env.ledger
        return np.array([led.balance(self.id, c) for c in self.p.coins])

    def reserves(self) -> tuple[float, float]:
        b = self.balances()
        return float(b[0]), float(b[1])

    def total_supply(self) -> float:
        """LP tokens outstanding."""
        return self.env.ledger.total(self.lp)

    def D(self) -> float:
        return get_D(self.balances(), self.p.A)

    def get_virtual_price(self) -> float:
        """D per LP token (Stableswap.vy `get_virtual_price`)."""
        return self.D() / self.total_supply()

    def spot(self) -> np.ndarray:
        """Marginal price of every coin in units of coin 0 (coin 0 itself: 1)."""
        return spot_prices(self.balances(), self.p.A)

    def get_p(self) -> float:
        """Stableswap.vy `get_p`: price of coin 1 in coin 0 (e.g. crvUSD in USDC for coins [USDC, crvUSD])."""
        return float(self.spot()[1])

    def price(self) -> float:
        """Venue surface: token0 (coin 0) priced in token1 (coin 1)."""
        return 1.0 / self.get_p()

    # --- the EMA oracle ----------------------------------------------------------------------------
    def price_oracle(self, k: int = 1) -> float:
        """EMA of coin k's price in coin 0 at the current time (Stableswap.vy `_ma_price`)."""
        o = self._oracle
        dt = self.env.clock.seconds - o.t
        if dt <= 0:
            return float(o.ema[k - 1])
        alpha = math.exp(-dt / self.p.ma_exp_time_s)
        return float(min(o.last[k - 1], LAST_PRICE_CAP) * (1.0 - alpha) + o.ema[k - 1] * alpha)

    def _save_p(self, xp: np.ndarray, d: float) -> None:
        """Stableswap.vy `save_p`: store the new spot price and the EMA up to now."""
        ema = np.array([self.price_oracle(k) for k in range(1, self.n)])
        self._oracle.last = spot_prices(xp, self.p.A, d)[1:]
        self._oracle.ema = ema
        self._oracle.t = self.env.clock.seconds

    def twap(self) -> float:
        """Venue surface (oracle source 'twap:VENUE'): token0 in token1 from the EMA oracle, 1 / price_oracle()."""
        return 1.0 / self.price_oracle(1)

    def record(self) -> None:
        """Nothing to sample per block: the EMA is advanced lazily by the clock (kept for the venue surface)."""

    # --- trading -----------------------------------------------------------------------------------
    def index(self, token: str) -> int:
        try:
            return self.p.coins.index(token)
        except ValueError:
            raise Revert(f"{self.id}: token {token!r} not in pool (allowed: {list(self.p.coins)})") from None

    def _trade(self, i: int, j: int, dx: float, xp: np.ndarray | None = None) -> tuple[float, float, np.ndarray, float]:
        """(dy to the trader, admin fee, balances at the invariant after the trade, D) for dx of coin i."""
        xp = self.balances() if xp is None else xp
        d = get_D(xp, self.p.A)
        x = xp[i] + dx
        y = get_y(i, j, x, xp, self.p.A, d)
        dy = xp[j] - y
        dy_fee = dy * self.p.fee
        after = xp.copy()
        after[i], after[j] = x, y
        return dy - dy_fee, dy_fee * self.p.admin_fee, after, d

    def get_dy(self, i: int, j: int, dx: float) -> float:
        """Output of coin j for dx of coin i, fee taken (Stableswap.vy `get_dy`)."""
        if dx <= 0:
            return 0.0
        return self._trade(i, j, dx)[0]

    def exchange(self, trader: str, i: int, j: int, dx: float, min_dy: float = 0.0) -> float:
        """Sell dx of coin i for coin j (Stableswap.vy `exchange`); returns dy sent to `trader`."""
        if dx <= 0:
            raise Revert(f"{self.id}: exchange amount must be positive")
        if i == j or not (0 <= i < self.n and 0 <= j < self.n):
            raise Revert(f"{self.id}: bad coin indices i={i}, j={j} (pool has {self.n} coins)")
        p0 = self.price()
        dy, admin, after, d = self._trade(i, j, dx)
        if dy < min_dy:
            raise Revert(f"{self.id}: output {dy:.6g} below minimum {min_dy:.6g}")
        led = self.env.ledger
        ci, cj = self.p.coins[i], self.p.coins[j]
        led.transfer(ci, trader, self.id, dx)
        led.transfer(cj, self.id, trader, dy)
        if admin > 0:
            led.transfer(cj, self.id, self.admin, admin)
        self._save_p(after, d)
        self.env.emit(Swapped(self.env.clock.block, self.id, trader, ci, dx, cj, dy, self.price() / p0 - 1.0))
        return dy

    # venue surface (token0 / token1 = coins 0 / 1)
    def quote(self, token_in: str, amount_in: float) -> float:
        """Output (token units) for selling `amount_in` of `token_in` against the other of coins 0 / 1."""
        i = self.index(token_in)
        return self.get_dy(i, 1 - i if i < 2 else 0, amount_in)

    def swap(self, trader: str, token_in: str, amount_in: float, min_out: float = 0.0) -> float:
        i = self.index(token_in)
        return self.exchange(trader, i, 1 - i if i < 2 else 0, amount_in, min_out)

    def amount_in_for_price(self, target_price: float) -> tuple[str, float]:
        """Token and amount to sell so that `price()` (token0 in token1) moves to `target_price` (fees
        included: the fee stays in the pool, as in `exchange`); solved with Brent's method."""
        xp = self.balances()
        now = 1.0 / spot_prices(xp, self.p.A)[1]
        if math.isclose(now, target_price, rel_tol=1e-12):
            return self.p.token0, 0.0
        i = 0 if target_price < now else 1
        j = 1 - i

        def gap(a: float) -> float:
            dy, admin, _, _ = self._trade(i, j, a, xp)
            b = xp.copy()
            b[i] += a
            b[j] -= dy + admin
            return 1.0 / spot_prices(b, self.p.A)[1] - target_price

        hi = xp[i]
        while np.sign(gap(hi)) == np.sign(gap(0.0)):
            hi *= 4.0
            if hi > 1e6 * xp.sum():
                return self.p.coins[i], hi  # the target is beyond reach: push as far as allowed
        return self.p.coins[i], float(brentq(gap, 0.0, hi, xtol=1e-12 * xp.sum(), rtol=1e-12))

    # --- liquidity (peg keepers) --------------------------------------------------------------------
    def calc_token_amount(self, amounts: list[float], is_deposit: bool) -> float:
        """LP tokens minted for a deposit / burned for a withdrawal of `amounts` (Stableswap.vy
        `calc_token_amount`, with the imbalance fee)."""
        return self._liquidity(np.asarray(amounts, float), is_deposit)[0]

    def _liquidity(self, amounts: np.ndarray, is_deposit: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """(LP amount, new balances kept by the pool, admin fees) of an imbalanced deposit / withdrawal."""
        old = self.balances()
        d0 = get_D(old, self.p.A)
        new = old + amounts if is_deposit else old - amounts
        if np.any(new <= 0):
            raise Revert(f"{self.id}: withdrawal of {amounts.tolist()} exceeds balances {old.tolist()}")
        d1 = get_D(new, self.p.A)
        base_fee = self.p.fee * self.n / (4 * (self.n - 1))
        ideal = d1 * old / d0
        fees = base_fee * np.abs(ideal - new)
        admin = fees * self.p.admin_fee
        d2 = get_D(new - fees, self.p.A)
        supply = self.total_supply()
        lp = supply * (d2 - d0) / d0 if is_deposit else supply * (d0 - d2) / d0
        return float(lp), new - admin, admin

    def add_liquidity(self, holder: str, amounts: list[float], min_mint: float = 0.0) -> float:
        """Deposit `amounts` of each coin from `holder`; mints LP tokens to it (Stableswap.vy `add_liquidity`)."""
        amt = np.asarray(amounts, float)
        lp, _, admin = self._liquidity(amt, True)
        if lp < min_mint:
            raise Revert(f"{self.id}: LP {lp:.6g} below minimum {min_mint:.6g}")
        led = self.env.ledger
        for coin, a, f in zip(self.p.coins, amt, admin):
            if a > 0:
                led.transfer(coin, holder, self.id, a)
            if f > 0:
                led.transfer(coin, self.id, self.admin, f)
        led.mint(self.lp, holder, lp, "lp_deposit")
        b = self.balances()
        self._save_p(b, get_D(b, self.p.A))
        return lp

    def remove_liquidity_imbalance(self, holder: str, amounts: list[float], max_burn: float = math.inf) -> float:
        """Withdraw exactly `amounts` to `holder`, burning its LP tokens (Stableswap.vy
        `remove_liquidity_imbalance`); returns the LP burned."""
        amt = np.asarray(amounts, float)
        lp, _, admin = self._liquidity(amt, False)
        if lp > max_burn:
            raise Revert(f"{self.id}: would burn {lp:.6g} LP, above the maximum {max_burn:.6g}")
        led = self.env.ledger
        if led.balance(holder, self.lp) < lp * (1 - 1e-12):
            raise Revert(f"{self.id}: {holder} holds {led.balance(holder, self.lp):.6g} LP, needs {lp:.6g}")
        led.burn(self.lp, holder, min(lp, led.balance(holder, self.lp)), "lp_withdrawal")
        for coin, a, f in zip(self.p.coins, amt, admin):
            if a > 0:
                led.transfer(coin, self.id, holder, a)
            if f > 0:
                led.transfer(coin, self.id, self.admin, f)
        b = self.balances()
        self._save_p(b, get_D(b, self.p.A))
        return lp

    def exposures(self) -> list[Exposure]:
        return [Exposure("holds", c, float(b)) for c, b in zip(self.p.coins, self.balances())]
