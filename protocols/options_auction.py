"""Derive (Lyra v2) Dutch-auction liquidation maths, vectorised (derivexyz/v2-core src/liquidation/DutchAuction.sol).

Sign conventions follow this repo, not Solidity: `equity` is the account's mark-to-market value incl. cash (Derive
`markToMarket`), `mm` is the positive maintenance requirement, so Derive's signed maintenance margin is
`equity - mm` and its buffer margin `BM = (equity - mm) - mm * buffer_pct` (negative while liquidatable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PHASES = ("none", "fast", "slow", "insolvent")


@dataclass(frozen=True)
class AuctionSchedule:
    """Solvent and insolvent auction parameters (docs/margin-methods.md 1.7, Derive mainnet)."""

    starting_mtm_percentage: float = 0.95  # SolventAuctionParams.startingMtMPercentage
    fast_auction_cutoff: float = 0.70  # fastAuctionCutoffPercentage
    fast_auction_s: float = 900.0  # fastAuctionLength, 15 min
    slow_auction_s: float = 43_200.0  # slowAuctionLength, 12 h
    insolvent_auction_s: float = 3_600.0  # insolvent totalSteps x coolDown, 60 min
    liquidator_fee_rate: float = 0.10  # liquidatorFeeRate
    buffer_margin_percentage: float = 0.15  # bufferMarginPercentage


def buffer_margin(equity, mm, buffer_pct: float) -> np.ndarray:
    """BM = MM + (MM - MtM) * bufferPct with Derive's signed MM = equity - mm (DutchAuction.sol
    _getMarginAndMarkToMarket): BM = equity - mm * (1 + bufferPct)."""
    equity, mm = np.asarray(equity, dtype=np.float64), np.asarray(mm, dtype=np.float64)
    return equity - mm * (1.0 + buffer_pct)


def discount(elapsed_s, s: AuctionSchedule) -> np.ndarray:
    """Share of MtM a bidder pays after `elapsed_s` of a solvent auction (DutchAuction.sol _getDiscountPercentage):
    fast d = start - (start - cutoff) t/fast; slow d = cutoff (1 - (t - fast)/slow); 0 after both."""
    t = np.maximum(np.asarray(elapsed_s, dtype=np.float64), 0.0)
    fast = s.starting_mtm_percentage - (s.starting_mtm_percentage - s.fast_auction_cutoff) * t / s.fast_auction_s
    slow = s.fast_auction_cutoff * (1.0 - (t - s.fast_auction_s) / s.slow_auction_s)
    return np.where(
        t < s.fast_auction_s, fast, np.where(t > s.fast_auction_s + s.slow_auction_s, 0.0, np.maximum(slow, 0.0))
    )


def phase(elapsed_s: float, insolvent: bool, s: AuctionSchedule) -> str:
    """'fast', 'slow' or 'insolvent' for an ongoing auction."""
    if insolvent or elapsed_s > s.fast_auction_s + s.slow_auction_s:
        return "insolvent"
    return "fast" if elapsed_s < s.fast_auction_s else "slow"


def max_fraction(equity, bm, d, reserved_cash=0.0) -> np.ndarray:
    """Largest share of the portfolio a bid at discount d may buy, restoring BM to 0 (DutchAuction.sol
    _getMaxProportion; docs/margin-methods.md 1.7): f = BM / (BM - MtM d - R (1 - d)), clipped to [0, 1]; 1 if BM >= 0
    would already terminate. R is cash that stays with the account (0 here: bids take a share of cash too)."""
    equity, bm, d = (np.asarray(x, dtype=np.float64) for x in (equity, bm, d))
    den = bm - equity * d - np.asarray(reserved_cash, dtype=np.float64) * (1.0 - d)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(den < 0, bm / np.where(den < 0, den, -1.0), 1.0)
    return np.clip(np.where(bm >= 0, 0.0, f), 0.0, 1.0)


def start_fee(equity, bm, s: AuctionSchedule) -> np.ndarray:
    """Fee charged to the account at a solvent auction's start, to the security module (DutchAuction.sol
    _getLiquidationFee): f_max(d = 1) * |MtM| * liquidatorFeeRate."""
    equity = np.asarray(equity, dtype=np.float64)
    return max_fraction(equity, bm, 1.0) * np.abs(equity) * s.liquidator_fee_rate


def insolvent_payout(lower_bound_usd, elapsed_insolvent_s, s: AuctionSchedule) -> np.ndarray:
    """What the security module pays a bidder for the whole portfolio: 0 rising to |BM at insolvency| over
    `insolvent_auction_s` (DutchAuction.sol _getInsolventAuctionPayout stepSize*step, made continuous here)."""
    t = np.clip(np.asarray(elapsed_insolvent_s, dtype=np.float64) / s.insolvent_auction_s, 0.0, 1.0)
    return np.abs(np.asarray(lower_bound_usd, dtype=np.float64)) * t


@dataclass(frozen=True)
class AuctionState:
    """A snapshot of one account's auction (USD amounts, seconds)."""

    account: int
    phase: str  # none | fast | slow | insolvent
    elapsed_s: float
    discount: float  # share of MtM paid by a bidder (0 when insolvent)
    equity_usd: float
    mm_usd: float
    buffer_margin_usd: float
    bid_price_usd: float  # equity * discount (solvent) or -payout for the whole portfolio (insolvent)
    max_fraction: float
    payout_usd: float  # security-module payout for the whole portfolio (insolvent phase)


# --- one account on Python floats ----------------------------------------------------------------------------------
# An auction's state is read one account at a time (every ongoing auction, several times a block), where numpy's
# fixed cost per call is most of the work. These are the formulas above on Python floats, operation for operation
# (IEEE doubles either way: the same bits), with numpy's rules where a branch replaces an array function:
# maximum(x, 0) gives +0.0 for -0.0 and keeps NaN; clip(x, 0, 1) keeps -0.0 and NaN.


def _max0(x: float) -> float:
    """np.maximum(x, 0.0) of one float: x where above 0 or NaN, else +0.0."""
    return x if x > 0.0 or x != x else 0.0


def _clip01(x: float) -> float:
    """np.clip(x, 0.0, 1.0) of one float: 0 below, 1 above, else x as it is (-0.0 and NaN too)."""
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def buffer_margin_one(equity: float, mm: float, buffer_pct: float) -> float:
    """`buffer_margin` of one account (USD): equity - mm * (1 + bufferPct)."""
    return equity - mm * (1.0 + buffer_pct)


def discount_one(elapsed_s: float, s: AuctionSchedule) -> float:
    """`discount` after one elapsed time (seconds): fast, slow, then 0 (DutchAuction.sol _getDiscountPercentage)."""
    t = _max0(elapsed_s)
    if t < s.fast_auction_s:
        return s.starting_mtm_percentage - (s.starting_mtm_percentage - s.fast_auction_cutoff) * t / s.fast_auction_s
    if t > s.fast_auction_s + s.slow_auction_s:
        return 0.0
    return _max0(s.fast_auction_cutoff * (1.0 - (t - s.fast_auction_s) / s.slow_auction_s))


def max_fraction_one(equity: float, bm: float, d: float) -> float:
    """`max_fraction` of one account with no reserved cash (DutchAuction.sol _getMaxProportion); the reserved term
    0 x (1 - d) is kept, as it turns den into NaN at an infinite discount."""
    den = bm - equity * d - 0.0 * (1.0 - d)
    if bm >= 0:
        return 0.0
    return _clip01(bm / den if den < 0 else 1.0)


def insolvent_payout_one(lower_bound_usd: float, elapsed_insolvent_s: float, s: AuctionSchedule) -> float:
    """`insolvent_payout` of one account, USD (DutchAuction.sol _getInsolventAuctionPayout, continuous)."""
    return abs(lower_bound_usd) * _clip01(elapsed_insolvent_s / s.insolvent_auction_s)
