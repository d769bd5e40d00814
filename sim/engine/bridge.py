"""An intrabar path through OHLC candles, so that an oracle reading per block can see a candle's low and high.

Method (recorded in the run manifest by `describe`): inside each candle the blocks are a grid of block
times; the candle's first block is at its open, its last block at its close, and two distinct interior
blocks, drawn uniformly without replacement from the run's seeded stream, are at its low and its high. The
order of the extremes follows the candle's direction (a rising candle, close >= open, visits its low first;
a falling candle its high first, the usual reading of a candle's path) or, with bridge_order = "random", is
drawn 50/50. Between consecutive anchors log price follows a Brownian bridge pinned at both anchors, with
the per-block volatility of Parkinson's range estimator (sigma_candle^2 = ln(H/L)^2 / (4 ln 2), Parkinson
1980, "The extreme value method for estimating the variance of the rate of return", J. Business 53(1))
spread over the candle's blocks, and the path is clipped to [low, high] so that it never leaves the
candle's range and reaches each extreme exactly once it is an anchor. A candle needs at least four
blocks (open, two extremes, close); coarser blocks are refused with a keyed error.
"""

from __future__ import annotations

import numpy as np

#: blocks a candle must span for the bridge to place open, low, high and close on distinct blocks
MIN_BLOCKS_PER_CANDLE = 4


def describe(order: str) -> dict[str, str]:
    """The method as recorded in the manifest."""
    return {
        "method": "brownian-bridge-through-extremes",
        "anchors": "open at the candle's first block, close at its last, low and high at two interior blocks "
        "drawn uniformly without replacement",
        "order": "candle direction (rising: low first; falling: high first)"
        if order == "direction"
        else "drawn 50/50 per candle",
        "volatility": "Parkinson range estimator per candle, spread over its blocks",
        "clip": "[low, high] of the candle",
        "random_stream": "replay-bridge (derived from the run seed)",
    }


def not_applicable(series, block_seconds: float) -> str | None:
    """Why the bridge cannot step `series` (None when it can): it needs OHLC candles of at least
    MIN_BLOCKS_PER_CANDLE blocks."""
    if not series.is_candles:
        return (
            f"fill 'bridge' needs OHLC candles; format {series.format!r} has one value per row (use 'hold' or 'linear')"
        )
    k = int(series.interval // block_seconds)
    if k < MIN_BLOCKS_PER_CANDLE:
        return (
            f"fill 'bridge' needs at least {MIN_BLOCKS_PER_CANDLE} blocks per candle to visit open, low, high and "
            f"close; {series.interval:g} s candles hold {k} block(s) of {block_seconds:g} s"
        )
    return None


def candle_path(o: float, h: float, lo: float, c: float, k: int, order: str, rng: np.random.Generator) -> np.ndarray:
    """Prices at the k >= 4 block times of one candle: open first, close last, low and high in between."""
    p1, p2 = np.sort(rng.choice(np.arange(1, k - 1), size=2, replace=False))
    low_first = (c >= o) if order == "direction" else bool(rng.random() < 0.5)
    a, b = (lo, h) if low_first else (h, lo)
    pos = np.array([0, p1, p2, k - 1])
    anchors = np.log(np.array([o, a, b, c]))
    x_lo, x_hi = np.log(lo), np.log(h)
    sigma = (x_hi - x_lo) / np.sqrt(4.0 * np.log(2.0)) / np.sqrt(k)  # Parkinson, per block
    x = np.empty(k)
    for (s0, s1), (v0, v1) in zip(zip(pos[:-1], pos[1:]), zip(anchors[:-1], anchors[1:])):
        m = int(s1 - s0)
        w = np.concatenate([[0.0], np.cumsum(sigma * rng.standard_normal(m))])
        j = np.arange(m + 1)
        x[s0 : s1 + 1] = v0 + (v1 - v0) * j / m + (w - j / m * w[-1])  # Brownian bridge pinned at both anchors
    out = np.clip(np.exp(x), lo, h)  # clipped in prices: exp(log(p)) may miss p in the last bit
    out[pos] = (o, a, b, c)  # the anchors exactly as in the file (exp(log(p)) may differ in the last bit)
    return out


def intrabar_path(
    series, block_t: np.ndarray, block_seconds: float, order: str, rng: np.random.Generator, key: str = ""
) -> np.ndarray:
    """Price per block (unix times `block_t`) along the bridge of every candle the blocks fall in.

    Each candle's path is drawn on its own grid of k = interval // block_seconds blocks from the candle's open
    time; a run block takes the grid point of its candle nearest its time. Blocks after the last candle hold
    its close (only reached with after_end = "hold")."""
    t0, dt = series.times, series.interval
    k = int(dt // block_seconds)
    ci = np.searchsorted(t0, block_t, side="right") - 1
    out = np.empty(len(block_t))
    after = block_t >= t0[-1] + dt
    out[after] = series.close[-1]
    live = ~after & (ci >= 0)
    for c in np.unique(ci[live]):  # one draw per candle, in time order, from the run's stream
        path = candle_path(series.open[c], series.high[c], series.low[c], series.close[c], k, order, rng)
        rows = np.flatnonzero(live & (ci == c))
        j = np.clip(np.rint((block_t[rows] - t0[c]) / block_seconds).astype(int), 0, k - 1)
        out[rows] = path[j]
    return out
