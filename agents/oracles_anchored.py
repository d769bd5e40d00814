"""Compound's Open Price Feed of 2020-2021: a reporter's signed price (Coinbase Pro), posted on chain by a
poster, is stored only if it lies within an anchor band around a Uniswap v2 time-weighted average price;
otherwise the post is guarded and the old price stays.

Source: compound-finance/open-oracle contracts/Uniswap/UniswapAnchoredView.sol: postPriceInternal stores
the reporter price when isWithinAnchor (anchor / reporter in [1 - tolerance, 1 + tolerance], the
upperBoundAnchorRatio / lowerBoundAnchorRatio of the constructor) and emits PriceGuarded otherwise;
fetchAnchorPrice / pokeWindowValues average the Uniswap cumulative price since the old observation, and on
a post at least `anchorPeriod` after the new observation the new one becomes the old (so the TWAP spans
between one and two anchor periods). The cumulative price is integrated here from the anchor source each
block (Uniswap v2's price0CumulativeLast accrues the price before each block's trades).

The poster posts when the reporter price moved more than `deviation` from the stored price or when
`heartbeat_s` passed (the poster's price-deltas), and keeps posting every block while guarded. A scheduled
deviation of the reporter (`schedule`: (seconds, multiplier) points, linear in between, 1 outside)
models a venue-specific spike such as DAI's on Coinbase Pro on 26 November 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mesa
import numpy as np

from defistress.agents.oracles import Oracle
from defistress.protocols.events import Generic


class AnchoredOracle(Oracle):
    """UniswapAnchoredView for one symbol: `price` is the stored (last accepted) price, USD per token."""

    def __init__(
        self,
        model: mesa.Model,
        oracle_id: str,
        asset: str,
        read: Callable[[], float],
        anchor: Callable[[], float],
        reference: Callable[[], float],
        tolerance: float = 0.2,
        anchor_period_s: float = 1800.0,
        deviation: float = 0.01,
        heartbeat_s: float = 3600.0,
        schedule: Sequence[tuple[float, float]] = (),
    ):
        if not 0.0 < tolerance < 1.0:
            raise ValueError(f"anchor tolerance must be in (0, 1), got {tolerance}")
        self.schedule_t = np.array([t for t, _ in schedule], dtype=float)
        self.schedule_m = np.array([m for _, m in schedule], dtype=float)
        if self.schedule_t.size and np.any(np.diff(self.schedule_t) < 0):
            raise ValueError("reporter schedule times must not decrease")
        super().__init__(model, oracle_id, asset, read, reference)
        self.read_anchor = anchor
        self.upper = 1.0 + tolerance  # UniswapAnchoredView.upperBoundAnchorRatio
        self.lower = 1.0 - tolerance  # lowerBoundAnchorRatio
        self.anchor_period_s = anchor_period_s
        self.deviation = deviation
        self.heartbeat_s = heartbeat_s
        self.price = self.reporter_price(0.0)  # the view is deployed with the reporter's first post accepted
        self.acc = 0.0  # cumulative anchor price x seconds
        self.last_anchor = float(anchor())
        self.last_t = 0.0
        self.old_obs = (0.0, 0.0)  # (timestamp, accumulator): the constructor sets both observations at deploy
        self.new_obs = (0.0, 0.0)
        self.guarded = 0
        self.last_anchor_twap = self.last_anchor

    def multiplier(self, seconds: float) -> float:
        """The scheduled reporter deviation at `seconds` (1 outside the schedule)."""
        if self.schedule_t.size == 0 or seconds < self.schedule_t[0] or seconds > self.schedule_t[-1]:
            return 1.0
        return float(np.interp(seconds, self.schedule_t, self.schedule_m))

    def reporter_price(self, seconds: float) -> float:
        """What the reporter signs now: its source price times the scheduled deviation."""
        return float(self.read()) * self.multiplier(seconds)

    def is_within_anchor(self, reporter: float, anchor: float) -> bool:
        """UniswapAnchoredView.isWithinAnchor: anchor / reporter inside [lower, upper]."""
        if reporter <= 0:
            return False
        ratio = anchor / reporter
        return self.lower <= ratio <= self.upper

    def _integrate(self, seconds: float) -> None:
        if seconds > self.last_t:
            self.acc += self.last_anchor * (seconds - self.last_t)
            self.last_t = seconds
        self.last_anchor = float(self.read_anchor())

    def anchor_price(self, seconds: float) -> float:
        """fetchAnchorPrice: rotate the observations if an anchor period passed, then the TWAP since the old
        one (the spot anchor when no time has passed, where the contract would require it)."""
        t_new, _ = self.new_obs
        if seconds - t_new >= self.anchor_period_s:
            self.old_obs = self.new_obs
            self.new_obs = (seconds, self.acc)
        t_old, acc_old = self.old_obs
        if seconds <= t_old:
            return self.last_anchor
        return (self.acc - acc_old) / (seconds - t_old)

    def update(self, block: int, seconds: float):
        self._integrate(seconds)
        r = self.reporter_price(seconds)
        moved = abs(r / self.price - 1.0) > self.deviation
        if not (moved or seconds - self.updated_at >= self.heartbeat_s):
            return None
        anchor = self.anchor_price(seconds)
        self.last_anchor_twap = anchor
        if self.is_within_anchor(r, anchor):
            return self.publish(block, seconds, r, "reporter")
        self.guarded += 1
        return Generic(
            block, self.id, "price_guarded", {"asset": self.asset, "reporter_price": r, "anchor_price": anchor}
        )
