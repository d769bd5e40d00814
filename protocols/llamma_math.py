"""LLAMMA band math, vectorised over bands: oracle band edges, the band invariant and its price.

Source: curve-stablecoin contracts/AMM.vy (the crvUSD LLAMMA, Vyper 0.3.10 version of December 2023 that the
January 2024 markets run): `_p_oracle_up`, `_get_y0`, `_get_p`, the (f + x)(g + y) = Inv invariant of
`calc_swap_out`, and `_p_current_band`. Amounts are token units (float64), prices stablecoin per collateral;
the contract's 1e18 fixed point is dropped, so results match it to float rounding, not to the wei.

    p_oracle_up(n)   = base_price · ((A − 1)/A)^n          (upper edge of band n when p = p_oracle)
    p_oracle_down(n) = p_oracle_up(n + 1)
    f = A · y0 · p_o² / p_o_up,  g = (A − 1) · y0 · p_o_up / p_o,  Inv = (f + x)(g + y)
    p (AMM price in the band) = (f + x) / (g + y)
    p_current_down(n) = p_o³ / p_o_up(n)²,  p_current_up(n) = p_current_down(n + 1)
"""

from __future__ import annotations

import numpy as np


def band_ratio(A: float) -> float:
    """(A − 1)/A: the ratio of a band's lower to upper oracle edge."""
    return (A - 1.0) / A


def p_oracle_up(n, base_price: float, A: float):
    """Upper oracle edge of band(s) n (AMM.vy `_p_oracle_up`)."""
    return base_price * band_ratio(A) ** np.asarray(n, dtype=float)


def get_y0(x, y, p_o: float, p_o_up, A: float):
    """Collateral the band would hold with no stablecoin at p = p_oracle = p_o_up (AMM.vy `_get_y0`): the
    positive root of p_o·A·y0² − y0·(p_o_up/p_o·(A−1)·x + p_o²/p_o_up·A·y) − x·y = 0."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    b = p_o_up * (A - 1.0) * x / p_o + A * p_o**2 / p_o_up * y
    disc = b * b + 4.0 * A * p_o * x * y
    both = (x > 0) & (y > 0)
    return np.where(both, (b + np.sqrt(disc)) / (2.0 * A * p_o), b / (A * p_o))


def band_invariant(x, y, p_o: float, p_o_up, A: float):
    """(y0, f, g, Inv) of band(s) holding x stablecoin and y collateral at oracle price p_o."""
    y0 = get_y0(x, y, p_o, p_o_up, A)
    f = A * y0 * p_o**2 / p_o_up
    g = (A - 1.0) * y0 * p_o_up / p_o
    return y0, f, g, (f + x) * (g + y)


def band_price(x, y, p_o: float, p_o_up, A: float):
    """AMM price inside a band (AMM.vy `_get_p`), with the contract's special cases: an empty band is
    priced mid-band, a band with only collateral at its bottom, one with only stablecoin at its top."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    p_down = p_o**3 / p_o_up**2
    p_up = p_o**3 / (p_o_up * band_ratio(A)) ** 2
    _, f, g, _ = band_invariant(x, y, p_o, p_o_up, A)
    with np.errstate(divide="ignore", invalid="ignore"):
        mixed = (f + x) / (g + y)
    out = np.where(x == 0, np.where(y == 0, p_down * A / (A - 1.0), p_down), np.where(y == 0, p_up, mixed))
    return out
