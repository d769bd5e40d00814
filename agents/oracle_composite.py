"""A composite feed: the product of other oracles' answers, as Aave prices wstETH (stETH/ETH x ETH/USD x the
wstETH exchange rate) or a protocol prices a token quoted in ETH.

price = factor x prod(feeds' prices); `updated_at` is the oldest of the feeds' (the composite is as stale as
its stalest input, as a staleness check on the composite sees it); it publishes in a block where any feed
published, and its response is valid only while every feed's is. Source: BGD Labs' CL synchronicity price
adapters (bgd-labs/cl-synchronicity-price-adapter: a price from two Chainlink feeds, e.g. WBTC/BTC x BTC/USD);
Aave's wstETH adapters used a stETH/ETH feed inside until June 2023 (bgd-labs/aave-proposals
AaveV2-V3PriceFeedsUpdate_20230613, "Price feeds operational update Pt2 - stETH").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mesa

from defistress.agents.oracles import Oracle


class CompositeOracle(Oracle):
    """factor x the product of `feeds`' latest answers (the feeds are updated before it each block)."""

    def __init__(
        self,
        model: mesa.Model,
        oracle_id: str,
        asset: str,
        feeds: Sequence[Oracle],
        reference: Callable[[], float],
        factor: float = 1.0,
    ):
        self.feeds = list(feeds)
        self.factor = float(factor)
        super().__init__(model, oracle_id, asset, self._product, reference)
        self.updated_at = min(f.updated_at for f in self.feeds)
        self.prev_updated_at = self.updated_at
        self._seen = [f.updates for f in self.feeds]

    def _product(self) -> float:
        p = self.factor
        for f in self.feeds:
            p *= f.price
        return p

    def update(self, block: int, seconds: float):
        seen = [f.updates for f in self.feeds]
        self.ok = all(f.ok for f in self.feeds)
        if seen == self._seen:
            return None
        self._seen = seen
        ev = self.publish(block, seconds, self._product(), "composite")
        self.updated_at = min(f.updated_at for f in self.feeds)
        return ev
