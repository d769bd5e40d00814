"""The StableSwap invariant in float64 token units: D, y and spot prices, solved by Newton's method as in
Curve's Vyper code.

Invariant with `A` meaning "A · n^(n-1)" as the factory pools store it (Ann = A · n):
    Ann · Σx + D = Ann · D + D^(n+1) / (n^n · Πx)
Source: curve-stablecoin contracts/Stableswap.vy (the crvUSD factory plain pool, v6.0.1), functions `get_D`,
`get_y`, `get_y_D`, `_get_p`; the same iterations as curve-contract's pools. Amounts are token units (the
contract's 1e18 fixed point and its "-1 wei" rounding guards are dropped; rate multipliers are 1 for
plain tokens), so results agree with the contract to float rounding, not to the wei.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Newton iterations allowed before giving up (the contracts use 255)
MAX_ITER = 255
#: convergence: relative change below this (the contracts stop at a change of 1 wei)
REL_TOL = 1e-15


class NoConvergence(ArithmeticError):
    """Newton's method did not converge (the contract would `raise`)."""


def get_D(xp: Sequence[float] | np.ndarray, amp: float) -> float:
    """Invariant D of balances `xp` (token units) at amplification `amp` (Stableswap.vy `get_D`)."""
    xp = [float(v) for v in xp]  # plain floats: a few Newton steps on numpy scalars cost more than the math
    n = len(xp)
    s = sum(xp)
    if s == 0.0:
        return 0.0
    if min(xp) <= 0:
        raise ValueError(f"stableswap: every balance must be positive to define D, got {xp}")
    d = s
    ann = amp * n
    for _ in range(MAX_ITER):
        d_p = d
        for x in xp:
            d_p = d_p * d / (x * n)
        d_prev = d
        d = (ann * s + d_p * n) * d / ((ann - 1.0) * d + (n + 1) * d_p)
        if abs(d - d_prev) <= REL_TOL * d:
            return d
    raise NoConvergence(f"get_D did not converge for balances {xp}, A={amp}")


def get_y(i: int, j: int, x: float, xp: Sequence[float] | np.ndarray, amp: float, d: float | None = None) -> float:
    """New balance of coin j when coin i's balance is set to `x`, keeping D (Stableswap.vy `get_y`)."""
    xp = [float(v) for v in xp]
    n = len(xp)
    if i == j or not (0 <= i < n and 0 <= j < n):
        raise ValueError(f"stableswap get_y: bad coin indices i={i}, j={j} for {n} coins")
    if d is None:
        d = get_D(xp, amp)
    ann = amp * n
    c = d
    s_ = 0.0
    for k in range(n):
        if k == j:
            continue
        _x = x if k == i else xp[k]
        s_ += _x
        c = c * d / (_x * n)
    return _solve_y(c * d / (ann * n), s_ + d / ann, d)


def get_y_D(amp: float, i: int, xp: Sequence[float] | np.ndarray, d: float) -> float:
    """Balance of coin i that brings the invariant to `d`, other balances fixed (Stableswap.vy `get_y_D`)."""
    xp = [float(v) for v in xp]
    n = len(xp)
    ann = amp * n
    c = d
    s_ = 0.0
    for k in range(n):
        if k == i:
            continue
        s_ += xp[k]
        c = c * d / (xp[k] * n)
    return _solve_y(c * d / (ann * n), s_ + d / ann, d)


def _solve_y(c: float, b: float, d: float) -> float:
    """Newton on y² + (b − D)·y = c: y ← (y² + c) / (2y + b − D), started at D."""
    y = d
    for _ in range(MAX_ITER):
        y_prev = y
        y = (y * y + c) / (2.0 * y + b - d)
        if abs(y - y_prev) <= REL_TOL * max(y, 1e-300):
            return y
    raise NoConvergence("get_y did not converge")


def spot_prices(xp: Sequence[float] | np.ndarray, amp: float, d: float | None = None) -> np.ndarray:
    """Marginal price of every coin k in units of coin 0 (dx_0/dx_k), from the invariant's gradient:
    p_k = (Ann + Dr/x_k) / (Ann + Dr/x_0), Dr = D^(n+1)/(n^n·Πx). For two coins this is Stableswap.vy
    `_get_p` (ANN·x0 + Dr·x0/x1) / (ANN·x0 + Dr)."""
    xp = [float(v) for v in xp]
    n = len(xp)
    if d is None:
        d = get_D(xp, amp)
    ann = amp * n
    dr = d / n**n
    for x in xp:
        dr = dr * d / x
    g0 = ann + dr / xp[0]
    return np.array([(ann + dr / x) / g0 for x in xp])
