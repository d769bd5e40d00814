"""LLAMMA: the crvUSD lending-liquidating AMM. Borrowers' collateral sits in bands of geometric prices; as the
oracle price falls through a borrower's bands, arbitrageurs buy the collateral for stablecoin (soft
liquidation), and sell it back as the price rises.

State is vectorised: bands are arrays (x: stablecoin, y: collateral, total shares) indexed from `lo`; each
borrower owns shares in up to MAX_TICKS consecutive bands from its n1 (a (users, 50) array). A borrower's
amounts are its share of each band's reserves, so a trade changes band arrays only, never per-user rows.

Source: curve-stablecoin contracts/AMM.vy (December 2023, the version behind the January 2024 markets):
`limit_p_o` (oracle-change dynamic fee, MAX_P_O_CHG, PREV_P_O_DELAY), `_rate_mul` / `_base_price` (the band
grid grows with the interest rate), `deposit_range`, `withdraw`, `calc_swap_out` (the band walk of
`exchange`), `get_xy_up` (`get_x_down` / `get_y_up`), `_get_xy`, `get_amount_for_price`. Float token units;
DEAD_SHARES and wei rounding are dropped. The AMM's tokens are its ledger balances under `holder`; fees to
the admin leave for `fee_holder` at once, so the AMM's balances are exactly the sum of its bands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from defistress.protocols.base import Env, PriceSource, Revert
from defistress.protocols.events import Swapped
from defistress.protocols.llamma_math import band_invariant, band_price, band_ratio, p_oracle_up

#: AMM.vy MAX_TICKS: most bands one borrower may span, and most non-empty bands one trade may cross
MAX_TICKS = 50
#: AMM.vy MAX_SKIP_TICKS: empty bands a trade may skip
MAX_SKIP_TICKS = 1024
#: AMM.vy PREV_P_O_DELAY (s) and MAX_P_O_CHG: the oracle may move at most 25 % per 2 minutes
PREV_P_O_DELAY_S = 120.0
MAX_P_O_CHG = 1.25


@dataclass(frozen=True)
class LlammaParams:
    """One market's AMM: A (band width 1/A), BASE_PRICE (stablecoin per collateral at band 0 before
    interest), fee and admin fee (fractions: 0.006 and 0 in the January 2024 books)."""

    id: str
    collateral: str
    stablecoin: str = "crvUSD"
    A: int = 100
    base_price: float = 2000.0
    fee: float = 0.006
    admin_fee: float = 0.0

    def __post_init__(self) -> None:
        if not 2 <= self.A <= 10_000:
            raise ValueError(f"llamma {self.id}: A must be an integer in [2, 10000], got {self.A}")
        if not self.base_price > 0:
            raise ValueError(f"llamma {self.id}: base_price must be > 0, got {self.base_price}")
        if not 0.0 <= self.fee < 1.0 or not 0.0 <= self.admin_fee <= 1.0:
            raise ValueError(
                f"llamma {self.id}: fee in [0, 1) and admin_fee in [0, 1], got {self.fee}, {self.admin_fee}"
            )


@dataclass(frozen=True)
class Trade:
    """Result of a band walk: amounts in/out (token units), the bands touched (first, count), their new
    reserves, the admin fee (input token) and the final active band."""

    pump: bool
    in_amount: float
    out_amount: float
    start: int
    new_x: np.ndarray
    new_y: np.ndarray
    admin_fee: float
    active_band: int
    p_o: float


class Llamma:
    """The AMM of one crvUSD market (AMM.vy), vectorised over bands and borrowers."""

    def __init__(self, params: LlammaParams, oracle: PriceSource, env: Env, holder: str, fee_holder: str):
        self.p = params
        self.oracle = oracle
        self.env = env
        self.holder = holder
        self.fee_holder = fee_holder
        A = params.A
        self.ratio = band_ratio(A)
        self.sqrt_band_ratio = math.sqrt(A / (A - 1.0))
        self.max_oracle_dn_pow = (A / (A - 1.0)) ** 50
        # bands
        self.lo = 0
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.ts = np.zeros(0)
        self.active_band = 0
        self.min_band = 0
        self.max_band = 0
        # borrowers
        self.n1 = np.zeros(0, dtype=np.int64)
        self.nb = np.zeros(0, dtype=np.int64)  # bands per borrower (N)
        self.shares = np.zeros((0, MAX_TICKS))
        # interest (AMM.vy rate, rate_mul, rate_time) and the oracle limiter (old_p_o, old_dfee, prev_p_o_time)
        self.rate = 0.0
        self.rate_mul = 1.0
        self.rate_time = env.clock.seconds
        p0 = float(oracle.price)
        self.old_p_o, self.old_dfee, self.prev_p_o_time = p0, 0.0, env.clock.seconds
        self._ver_bands = 0  # bumped when band reserves change
        self._ver_shares = 0  # bumped when shares or the band array layout change
        self._cache: dict = {}
        #: called after every exchange with (band indices, Δx, Δy, oracle price): soft-liquidation accounting
        self.trade_listeners: list[Callable[[np.ndarray, np.ndarray, np.ndarray, float], None]] = []

    # --- bands -------------------------------------------------------------------------------------
    def ensure_bands(self, n_from: int, n_to: int) -> None:
        """Grow the band arrays to cover bands n_from..n_to (new bands are empty)."""
        lo, hi = self.lo, self.lo + len(self.x) - 1
        if len(self.x) and n_from >= lo and n_to <= hi:
            return
        new_lo = min(n_from, lo) if len(self.x) else n_from
        new_hi = max(n_to, hi) if len(self.x) else n_to
        size = new_hi - new_lo + 1
        off = lo - new_lo
        for name in ("x", "y", "ts"):
            a = np.zeros(size)
            old = getattr(self, name)
            a[off : off + len(old)] = old
            setattr(self, name, a)
        self.lo = new_lo
        self.touch()

    def _reserve(self, n0: int, step: int, length: int) -> None:
        a, b = (n0, n0 + step * (length - 1)) if step > 0 else (n0 + step * (length - 1), n0)
        self.ensure_bands(a, b)

    def band_x(self, n) -> np.ndarray:
        return self.x[np.asarray(n) - self.lo]

    def band_y(self, n) -> np.ndarray:
        return self.y[np.asarray(n) - self.lo]

    # --- interest and prices -----------------------------------------------------------------------
    def get_rate_mul(self) -> float:
        """1 + ∫rate dt (AMM.vy `_rate_mul`)."""
        return self.rate_mul * (1.0 + self.rate * (self.env.clock.seconds - self.rate_time))

    def set_rate(self, rate_per_s: float) -> float:
        """New interest rate per second (AMM.vy `set_rate`, called by the controller); returns rate_mul."""
        self.rate_mul = self.get_rate_mul()
        self.rate_time = self.env.clock.seconds
        self.rate = float(rate_per_s)
        return self.rate_mul

    def base_price(self) -> float:
        """Price of band 0 now: BASE_PRICE grows with rate_mul (AMM.vy `_base_price`)."""
        return self.p.base_price * self.get_rate_mul()

    def p_oracle_up(self, n):
        return p_oracle_up(n, self.base_price(), self.p.A)

    def p_oracle_down(self, n):
        return p_oracle_up(np.asarray(n) + 1, self.base_price(), self.p.A)

    def _limit_p_o(self, p: float) -> tuple[float, float]:
        """(limited oracle price, dynamic fee) (AMM.vy `limit_p_o`): within PREV_P_O_DELAY of the last
        write the price may move at most MAX_P_O_CHG, and a fee of (1 − r³) for a move by r (decaying
        over the delay) keeps the AMM from losing to the jump."""
        dt = PREV_P_O_DELAY_S - min(PREV_P_O_DELAY_S, self.env.clock.seconds - self.prev_p_o_time)
        if dt <= 0:
            return p, 0.0
        old = self.old_p_o
        if p > old:
            ratio = old / p
            if ratio < 1.0 / MAX_P_O_CHG:
                p, ratio = old * MAX_P_O_CHG, 1.0 / MAX_P_O_CHG
        else:
            ratio = p / old
            if ratio < 1.0 / MAX_P_O_CHG:
                p, ratio = old / MAX_P_O_CHG, 1.0 / MAX_P_O_CHG
        return p, min((1.0 + self.old_dfee - ratio**3) * dt / PREV_P_O_DELAY_S, 1.0 - 1e-18)

    def price_oracle(self) -> float:
        """Oracle price as the AMM uses it (AMM.vy `price_oracle`)."""
        return self._limit_p_o(float(self.oracle.price))[0]

    def _price_oracle_w(self) -> tuple[float, float]:
        """Read and store the limited oracle price (AMM.vy `_price_oracle_w`, run by every exchange)."""
        p, dfee = self._limit_p_o(float(self.oracle.price))
        self.prev_p_o_time, self.old_p_o, self.old_dfee = self.env.clock.seconds, p, dfee
        return p, dfee

    def dynamic_fee(self) -> float:
        """max(fee, oracle-change fee) (AMM.vy `dynamic_fee`)."""
        return max(self.p.fee, self._limit_p_o(float(self.oracle.price))[1])

    def get_p(self) -> float:
        """AMM price in the active band (AMM.vy `get_p`), stablecoin per collateral."""
        n = self.active_band
        self.ensure_bands(n, n)
        return float(band_price(self.band_x(n), self.band_y(n), self.price_oracle(), self.p_oracle_up(n), self.p.A))

    # --- borrowers' liquidity ------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.n1)

    def add_users(self, n: int) -> np.ndarray:
        """Room for n more borrowers (empty rows); returns their indices."""
        start = self.n_users
        self.n1 = np.concatenate([self.n1, np.zeros(n, dtype=np.int64)])
        self.nb = np.concatenate([self.nb, np.zeros(n, dtype=np.int64)])
        self.shares = np.vstack([self.shares, np.zeros((n, MAX_TICKS))])
        self.touch()
        return np.arange(start, start + n)

    def _user_bands(self, users=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(band index per (user, tick), tick in range mask, array position) for users (default all)."""
        u = slice(None) if users is None else users
        n1, nb = self.n1[u], self.nb[u]
        k = np.arange(MAX_TICKS)
        bands = n1[:, None] + k[None, :]
        mask = k[None, :] < nb[:, None]
        pos = np.clip(bands - self.lo, 0, max(len(self.x) - 1, 0))
        return bands, mask, pos

    def user_fractions(self, users=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fraction of each band a user owns, array positions, band numbers), each (users, MAX_TICKS); trades
        do not change shares, so this is cached until a deposit or withdrawal."""
        if users is None:
            hit = self._cache.get("frac")
            if hit is not None and hit[0] == self._ver_shares:
                return hit[1]
            out = self._user_fractions(None)
            self._cache["frac"] = (self._ver_shares, out)
            return out
        return self._user_fractions(users)

    def _user_fractions(self, users) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bands, mask, pos = self._user_bands(users)
        sh = self.shares if users is None else self.shares[users]
        ts = self.ts[pos]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(mask & (ts > 0), sh / ts, 0.0)
        return frac, pos, bands

    def get_sum_xy(self, users=None) -> tuple[np.ndarray, np.ndarray]:
        """Stablecoin and collateral every borrower owns now (AMM.vy `get_sum_xy`), token units."""
        key = (self._ver_bands, self._ver_shares)
        hit = self._cache.get("sum_xy")
        if users is None and hit is not None and hit[0] == key:
            return hit[1]
        frac, pos, _ = self.user_fractions(users)
        out = (frac * self.x[pos]).sum(axis=1), (frac * self.y[pos]).sum(axis=1)
        if users is None:
            self._cache["sum_xy"] = (key, out)
        return out

    def touch(self, shares: bool = True) -> None:
        """Band reserves (and shares) changed: drop cached per-user figures."""
        self._ver_bands += 1
        if shares:
            self._ver_shares += 1

    def deposit_range(self, user: int, amount: float, n1: int, n2: int) -> None:
        """Put `amount` collateral evenly into bands n1..n2 for `user` (AMM.vy `deposit_range`; the controller
        moves the tokens). Bands must be above the active band (no stablecoin in them)."""
        nb = n2 - n1 + 1
        if not 1 <= nb <= MAX_TICKS:
            raise Revert(f"{self.p.id}: deposit into {nb} bands; allowed 1..{MAX_TICKS}")
        if self.nb[user] > 0:
            raise Revert(f"{self.p.id}: user #{user} already has liquidity")
        self.ensure_bands(min(n1, self.active_band), n2)
        if n1 <= self.active_band and np.any(self.band_x(np.arange(n1, self.active_band + 1)) > 0):
            raise Revert(
                f"{self.p.id}: deposit below the current band (bands {n1}..{self.active_band} hold stablecoin)"
            )
        sl = slice(n1 - self.lo, n2 - self.lo + 1)
        if np.any(self.x[sl] > 0):
            raise Revert(f"{self.p.id}: band not empty (deposit below the current band)")
        y = amount / nb
        with np.errstate(divide="ignore", invalid="ignore"):
            ds = np.where(self.y[sl] > 0, self.ts[sl] * y / self.y[sl], y)
        self.ts[sl] += ds
        self.y[sl] += y
        self.n1[user], self.nb[user] = n1, nb
        self.shares[user, :] = 0.0
        self.shares[user, :nb] = ds
        self.touch()
        self.min_band = min(self.min_band, n1)
        self.max_band = max(self.max_band, n2)
        if n1 <= self.active_band:  # AMM.vy deposit_range: autoskip empty bands down to just above the deposit
            self.active_band = n1 - 1

    def withdraw(self, user: int, frac: float = 1.0) -> tuple[float, float]:
        """Remove `frac` of a borrower's shares (AMM.vy `withdraw`); returns (stablecoin, collateral) taken
        out of the bands (the controller moves the tokens)."""
        if self.nb[user] == 0:
            raise Revert(f"{self.p.id}: user #{user} has no deposits")
        nb = int(self.nb[user])
        sl = slice(int(self.n1[user]) - self.lo, int(self.n1[user]) - self.lo + nb)
        ds = self.shares[user, :nb] * frac
        ts = self.ts[sl]
        with np.errstate(divide="ignore", invalid="ignore"):
            part = np.where(ts > 0, ds / ts, 0.0)
        dx, dy = self.x[sl] * part, self.y[sl] * part
        self.x[sl] -= dx
        self.y[sl] -= dy
        self.ts[sl] -= ds
        empty = self.ts[sl] <= 1e-12 * np.maximum(ts, 1e-300)
        self.x[sl][empty] = 0.0  # the last withdrawal of a band takes its dust with it
        self.y[sl][empty] = 0.0
        self.ts[sl][empty] = 0.0
        self.shares[user, :nb] -= ds
        if frac >= 1.0:
            self.shares[user, :] = 0.0
            self.nb[user] = 0
        self.touch()
        return float(dx.sum()), float(dy.sum())

    # --- what a position is worth (controller health) ----------------------------------------------
    def band_xy_up(self, use_y: bool) -> np.ndarray:
        """Per band: what the whole band is worth in collateral if the price went up through it (use_y), or in
        stablecoin if it went down (AMM.vy `get_xy_up`: trade to p_oracle at constant p_o, then adiabatically
        to the band edge). The contract's sum is linear in a user's share, so a user's value is its share of
        these (computed once per band, cached until the bands, the oracle or the rate change)."""
        A = self.p.A
        p_o = self.price_oracle()
        key = (use_y, self._ver_bands, p_o, self.get_rate_mul(), self.active_band)
        hit = self._cache.get("xy_up")
        if hit is not None and hit[0] == key:
            return hit[1]
        bands = self.lo + np.arange(len(self.x))
        n_act = self.active_band
        x = np.where(bands <= n_act, self.x, 0.0)
        y = np.where(bands >= n_act, self.y, 0.0)
        live = (x > 0) | (y > 0)
        val = np.zeros(len(bands))
        if live.any():
            x, y, bands = x[live], y[live], bands[live]
            p_up = self.p_oracle_up(bands)
            p_dn = p_up * self.ratio
            sbr = self.sqrt_band_ratio
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                p_mid = p_o**2 / p_dn * p_o / p_up
                above = p_o > p_up  # band below the oracle: all to collateral, then down adiabatically
                below = p_o < p_dn
                # one coin only, band entirely above or below the oracle: no in-band math needed
                y_eq = np.where(y > 0, y, x / p_mid)
                x_eq = np.where(x > 0, x, y * p_mid)
                simple = np.where(above, y_eq if use_y else y_eq * p_up / sbr, x_eq * sbr / p_up if use_y else x_eq)
                # a band holding both coins, or the oracle inside the band
                y0, f, g, inv = band_invariant(x, y, p_o, p_up, A)
                if use_y:
                    y_o_in = A * y0 * (p_o - p_dn) / p_o
                    x_o_in = np.maximum(inv / (g + y_o_in), f) - f
                    heavy = np.where(
                        above,
                        np.maximum(inv / f, g) - g,
                        np.where(
                            below, (np.maximum(inv / g, f) - f) * sbr / p_up, y_o_in + x_o_in / np.sqrt(p_up * p_o)
                        ),
                    )
                else:
                    y_o_in = A * y0 * (p_o - p_dn) / p_o
                    x_o_in = np.maximum(inv / (g + y_o_in), f) - f
                    heavy = np.where(
                        above,
                        (np.maximum(inv / f, g) - g) * p_up / sbr,
                        np.where(below, np.maximum(inv / g, f) - f, x_o_in + y_o_in * np.sqrt(p_dn * p_o)),
                    )
                one_coin = (x == 0) | (y == 0)
                val[live] = np.where(one_coin & (above | below), simple, heavy)
        self._cache["xy_up"] = (key, val)
        return val

    def get_xy_up(self, use_y: bool, users=None) -> np.ndarray:
        """Per borrower: its share of `band_xy_up` over its bands (AMM.vy `get_y_up` / `get_x_down`)."""
        frac, pos, _ = self.user_fractions(users)
        if frac.size == 0:
            return np.zeros(frac.shape[0])
        return (frac * self.band_xy_up(use_y)[pos]).sum(axis=1)

    def get_x_down(self, users=None) -> np.ndarray:
        return self.get_xy_up(False, users)

    def get_y_up(self, users=None) -> np.ndarray:
        return self.get_xy_up(True, users)

    # --- trading -----------------------------------------------------------------------------------
    def _window(self, pump: bool, p_o: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bands a trade may visit from the active band (AMM.vy `calc_swap_out` loop bounds): stop at
        max_band / min_band, 50 bands after the first non-empty one, 50 bands beyond the oracle, or after
        MAX_TICKS + MAX_SKIP_TICKS steps. Returns (bands, x, y) with the contract's zeroing of the coin not
        traded in bands past the active one."""
        step = 1 if pump else -1
        n0 = self.active_band
        length = MAX_TICKS + MAX_SKIP_TICKS
        edge = self.max_band if pump else self.min_band
        if (edge - n0) * step >= 0:
            length = min(length, (edge - n0) * step + 1)
        self._reserve(n0, step, length)
        bands = n0 + step * np.arange(length)
        x = self.band_x(bands).copy()
        y = self.band_y(bands).copy()
        if pump:
            x[1:] = 0.0
        else:
            y[1:] = 0.0
        ratio = self.p_oracle_up(bands) / p_o
        far = (
            np.flatnonzero(ratio < 1.0 / self.max_oracle_dn_pow)
            if pump
            else np.flatnonzero(ratio > self.max_oracle_dn_pow)
        )
        last = length - 1
        if len(far):
            last = min(last, int(far[0]))
        nonempty = np.flatnonzero((x > 0) | (y > 0))
        if len(nonempty):
            last = min(last, int(nonempty[0]) + MAX_TICKS - 1)
        return bands[: last + 1], x[: last + 1], y[: last + 1]

    def calc_swap_out(self, pump: bool, in_amount: float, p_o: float, dyn_fee: float) -> Trade:
        """The band walk of an exchange (AMM.vy `calc_swap_out`), vectorised: every band's full-conversion
        input, their running sum, and a partial last band. pump: stablecoin in, collateral out (price up)."""
        fee = max(self.p.fee, dyn_fee)
        antifee = 1.0 / (1.0 - fee)
        bands, x, y = self._window(pump, p_o)
        p_up = self.p_oracle_up(bands)
        with np.errstate(divide="ignore", invalid="ignore"):
            _, f, g, inv = band_invariant(x, y, p_o, p_up, self.p.A)
            if pump:
                dest = np.where((y > 0) & (g > 0), inv / g - f - x, 0.0)  # stablecoin to empty the band
            else:
                dest = np.where((x > 0) & (f > 0), inv / f - g - y, 0.0)  # collateral to empty the band
        dest = np.maximum(dest, 0.0)
        need = dest * antifee
        cum = np.cumsum(need)
        hit = np.flatnonzero(cum >= in_amount)
        new_x, new_y = x.copy(), y.copy()
        admin_fee = self.p.admin_fee
        k_end = int(hit[0]) if len(hit) else len(bands) - 1
        full = slice(0, k_end if len(hit) else len(bands))
        fee_paid = (need[full] - dest[full]) * admin_fee
        if pump:
            new_x[full] = x[full] + need[full] - fee_paid
            new_y[full] = np.where(need[full] > 0, 0.0, y[full])
            out = float(np.where(need[full] > 0, y[full], 0.0).sum())
        else:
            new_y[full] = y[full] + need[full] - fee_paid
            new_x[full] = np.where(need[full] > 0, 0.0, x[full])
            out = float(np.where(need[full] > 0, x[full], 0.0).sum())
        admin = float(fee_paid.sum())
        used = float(cum[-1])
        if len(hit):
            used = float(cum[k_end - 1]) if k_end > 0 else 0.0
            k = k_end
            left = in_amount - used
            dest_k = left / antifee
            fee_k = (left - dest_k) * admin_fee
            if pump:
                rest = min(inv[k] / (f[k] + x[k] + dest_k) - g[k], y[k])
                out += y[k] - rest
                new_x[k], new_y[k] = x[k] + left - fee_k, rest
            else:
                rest = min(inv[k] / (g[k] + y[k] + dest_k) - f[k], x[k])
                out += x[k] - rest
                new_x[k], new_y[k] = rest, y[k] + left - fee_k
            admin += fee_k
            used = in_amount
        return Trade(
            pump,
            used,
            max(out, 0.0),
            int(bands[0]),
            new_x[: k_end + 1],
            new_y[: k_end + 1],
            admin,
            int(bands[k_end]),
            p_o,
        )

    def get_dxdy(self, i: int, j: int, amount: float) -> tuple[float, float]:
        """(input used, output) for selling `amount` of coin i (0 stablecoin, 1 collateral) (AMM.vy `get_dxdy`)."""
        _check_ij(self.p.id, i, j)
        if amount <= 0:
            return 0.0, 0.0
        p_o, dfee = self._limit_p_o(float(self.oracle.price))
        t = self.calc_swap_out(i == 0, amount, p_o, dfee)
        return t.in_amount, t.out_amount

    def get_dy(self, i: int, j: int, amount: float) -> float:
        return self.get_dxdy(i, j, amount)[1]

    def exchange(self, trader: str, i: int, j: int, amount: float, min_out: float = 0.0) -> tuple[float, float]:
        """Sell `amount` of coin i (0: stablecoin, 1: collateral) for coin j (AMM.vy `exchange`); tokens move
        through the ledger; returns (input used, output sent to `trader`)."""
        _check_ij(self.p.id, i, j)
        p_o, dfee = self._price_oracle_w()  # the oracle is written even for a zero trade
        if amount <= 0:
            return 0.0, 0.0
        t = self.calc_swap_out(i == 0, amount, p_o, dfee)
        if t.out_amount < min_out:
            raise Revert(f"{self.p.id}: output {t.out_amount:.6g} below minimum {min_out:.6g}")
        if t.out_amount <= 0 or t.in_amount <= 0:
            return 0.0, 0.0
        tok_in, tok_out = (self.p.stablecoin, self.p.collateral) if i == 0 else (self.p.collateral, self.p.stablecoin)
        price0 = self.get_p()
        s = t.start if t.pump else t.active_band
        sl = slice(s - self.lo, s - self.lo + len(t.new_x))
        nx, ny = (t.new_x, t.new_y) if t.pump else (t.new_x[::-1], t.new_y[::-1])
        d_x, d_y = nx - self.x[sl], ny - self.y[sl]
        self.x[sl], self.y[sl] = nx, ny
        self.active_band = t.active_band
        self.touch(shares=False)
        led = self.env.ledger
        led.transfer(tok_in, trader, self.holder, t.in_amount)
        led.transfer(tok_out, self.holder, trader, t.out_amount)
        if t.admin_fee > 0:
            led.transfer(tok_in, self.holder, self.fee_holder, t.admin_fee)
        for listener in self.trade_listeners:
            listener(np.arange(sl.start, sl.stop), d_x, d_y, p_o)
        self.env.emit(
            Swapped(
                self.env.clock.block,
                self.p.id,
                trader,
                tok_in,
                t.in_amount,
                tok_out,
                t.out_amount,
                self.get_p() / price0 - 1.0,
            )
        )
        return t.in_amount, t.out_amount

    def get_amount_for_price(self, p: float) -> tuple[float, bool]:
        """Input needed to move the AMM price to `p` and its direction (AMM.vy `get_amount_for_price`):
        (stablecoin in, True) to pump, (collateral in, False) to dump; fee included."""
        p_o, dfee = self._limit_p_o(float(self.oracle.price))
        n0 = self.active_band
        self.ensure_bands(n0, n0)
        pump = not p < float(band_price(self.band_x(n0), self.band_y(n0), p_o, self.p_oracle_up(n0), self.p.A))
        bands, _, _ = self._window(pump, p_o)
        x, y = self.band_x(bands), self.band_y(bands)  # get_amount_for_price reads both coins of every band
        p_up_o = self.p_oracle_up(bands)
        p_down = p_o**3 / p_up_o**2
        p_up = p_down / self.ratio**2
        with np.errstate(divide="ignore", invalid="ignore"):
            _, f, g, inv = band_invariant(x, y, p_o, p_up_o, self.p.A)
            nonempty = (x > 0) | (y > 0)
            inside = np.flatnonzero((p <= p_up) & (p >= p_down))
            if pump:
                full = np.where(nonempty, inv / g - f - x, 0.0)
            else:
                full = np.where(nonempty, inv / f - g - y, 0.0)
        full = np.nan_to_num(np.maximum(full, 0.0))
        if len(inside):
            k = int(inside[0])
            amount = float(full[:k].sum())
            if nonempty[k]:
                ynew = max(math.sqrt(inv[k] / p), g[k]) - g[k]
                xnew = max(inv[k] / (g[k] + ynew), f[k]) - f[k]
                amount += max(xnew - x[k], 0.0) if pump else max(ynew - y[k], 0.0)
        else:
            amount = float(full.sum())
        return amount / (1.0 - max(self.p.fee, dfee)), pump


def _check_ij(pid: str, i: int, j: int) -> None:
    if not ((i == 0 and j == 1) or (i == 1 and j == 0)):
        raise Revert(f"{pid}: wrong coin indices ({i}, {j}); allowed (0, 1) or (1, 0)")
