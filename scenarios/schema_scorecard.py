"""The scorecard vocabulary: one set of outcome names for every protocol kind, and the published figures a
replay is scored against (`run.published`), each naming which of these metrics it is.

"Liquidation volume" used to mean debt repaid for a lending market but the auction's tab for a CDP; the
vocabulary names each quantity apart:

- collateral liquidated is what left borrowers' accounts, valued at the oracle price when it was seized
  (`collateral_liquidated_oracle_usd`) and at the price it was sold for (`collateral_liquidated_sale_usd`:
  what the liquidator paid in a lending market or perp DEX, the stablecoin raised by a CDP's auctions);
- debt liquidated is the debt taken off accounts by liquidations (a CDP moves a vault's whole `due` to its
  auction at the kick, covered or not); debt repaid is the part of it covered by what liquidators or bidders
  paid; a CDP auction's tab is its debt plus the liquidation penalty.

Figures are computed per protocol, per asset and in total by `defistress.sim.analysis.scorecard`; a per-asset
figure is per collateral asset, except the debt figures (`debt_liquidated_usd`, `debt_repaid_usd`,
`auction_tab_usd`), which are per debt asset (the asset repaid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from defistress.scenarios.schema_base import Strict
from defistress.scenarios.units import MAX_VALUE, Float


@dataclass(frozen=True)
class MetricDef:
    """One scorecard metric: what it measures, its unit, and where it is defined (scopes)."""

    description: str
    unit: str
    #: "total" (the run), "protocol" (one protocol), "asset" (one asset, alone or within a protocol: the collateral
    #: asset, or the debt asset for the debt figures)
    scopes: tuple[str, ...]
    #: how a total is made from protocols: "sum", "min", "max" or "ratio" (a share recomputed from its parts)
    combine: str = "sum"


_ALL = ("total", "protocol", "asset")
#: the scorecard vocabulary, the same for every protocol kind (README "Scorecards" section)
METRICS: dict[str, MetricDef] = {
    "collateral_liquidated_oracle_usd": MetricDef(
        "collateral taken from borrowers by liquidations, valued at the protocol's oracle price when seized "
        "(lending/perps: seized plus protocol fee; CDP: the auction lot at the kick)",
        "USD",
        _ALL,
    ),
    "collateral_liquidated_sale_usd": MetricDef(
        "the same collateral valued at the price it was sold for: what liquidators paid (lending, perps, "
        "crvUSD hard liquidations) or the stablecoin raised by settled auctions (CDP)",
        "USD",
        _ALL,
    ),
    "debt_liquidated_usd": MetricDef(
        "debt taken off accounts by liquidations (CDP: each auction's due, covered or not)", "USD", _ALL
    ),
    "debt_repaid_usd": MetricDef(
        "the part of the debt liquidated covered by what liquidators or bidders paid (CDP: raised, up to the due)",
        "USD",
        _ALL,
    ),
    "auction_tab_usd": MetricDef(
        "stablecoin the CDP's auctions asked for: due x liquidation penalty (the old CDP 'liquidation volume')",
        "USD",
        _ALL,
    ),
    "liquidation_bonus_usd": MetricDef(
        "value borrowers lost to liquidators beyond the debt repaid, at the oracle price (lending, perps)",
        "USD",
        _ALL,
    ),
    "liquidation_events": MetricDef(
        "number of liquidation calls: lending liquidationCall, perp liquidations, CDP bark/bite (each starts "
        "an auction)",
        "count",
        _ALL,
    ),
    "auctions": MetricDef("number of collateral auctions started (CDP kicks, options-venue auctions)", "count", _ALL),
    "auctions_settled": MetricDef("number of collateral auctions that ended within the run", "count", _ALL),
    "zero_bid_auctions": MetricDef(
        "number of settled auctions won with a bid of (almost) nothing (under 1 stablecoin unit)", "count", _ALL
    ),
    "zero_bid_collateral_usd": MetricDef(
        "collateral won by zero bids, valued at the oracle price at settlement", "USD", _ALL
    ),
    "zero_bid_share": MetricDef(
        "zero-bid collateral / all collateral of settled auctions, both at the oracle price at settlement",
        "fraction",
        _ALL,
        combine="ratio",
    ),
    "bad_debt_usd": MetricDef(
        "bad debt at the end: lending deficit and debt above collateral, CDP uncovered system debt after the "
        "surplus, perp losses beyond the insurance fund",
        "USD",
        ("total", "protocol"),
    ),
    "lowest_oracle_price_usd": MetricDef(
        "lowest price an oracle published for the asset during the run", "USD per token", ("asset",), combine="min"
    ),
    "peak_base_fee_gwei": MetricDef("highest base fee of any block", "gwei", ("total",), combine="max"),
}

MetricName = Literal[
    "collateral_liquidated_oracle_usd",
    "collateral_liquidated_sale_usd",
    "debt_liquidated_usd",
    "debt_repaid_usd",
    "auction_tab_usd",
    "liquidation_bonus_usd",
    "liquidation_events",
    "auctions",
    "auctions_settled",
    "zero_bid_auctions",
    "zero_bid_collateral_usd",
    "zero_bid_share",
    "bad_debt_usd",
    "lowest_oracle_price_usd",
    "peak_base_fee_gwei",
]


def scorecard_key(metric: str, protocol: str | None = None, asset: str | None = None) -> str:
    """The flat name of one figure: 'metric', 'metric@protocol', 'metric:asset' or 'metric@protocol:asset'."""
    return metric + (f"@{protocol}" if protocol else "") + (f":{asset}" if asset else "")


class PublishedOutcome(Strict):
    """A real-world figure to score a replay against: which scorecard metric it is, for which protocol and
    asset, its value (and, where sources disagree or round, the published range) and its source."""

    metric: MetricName = Field(description="the scorecard metric the figure is (README 'Scorecards')")
    protocol: str | None = Field(
        None, min_length=1, description="the protocol id it is a figure of (none: the whole run)"
    )
    asset: str | None = Field(
        None,
        min_length=1,
        description="the asset it is a figure of: the collateral (or oracle) asset, or the debt asset for debt "
        "repaid, debt liquidated and auction tab (none: all assets)",
    )
    value: Float = Field(
        ge=-MAX_VALUE, le=MAX_VALUE, description="the published figure, in the metric's unit (USD, count, fraction)"
    )
    low: Float | None = Field(
        None, ge=-MAX_VALUE, le=MAX_VALUE, description="low end of the published range (default: the value)"
    )
    high: Float | None = Field(
        None, ge=-MAX_VALUE, le=MAX_VALUE, description="high end of the published range (default: the value)"
    )
    source: str = Field(min_length=1, description="where the figure was published (title, author, link)")
    note: str = Field("", max_length=500, description="how the figure was read or derived, and its caveats")

    @model_validator(mode="after")
    def _check(self):
        scopes = METRICS[self.metric].scopes
        if self.asset is not None and "asset" not in scopes:
            raise ValueError(f"asset: metric {self.metric!r} has no per-asset figure (scopes: {list(scopes)})")
        if self.asset is None and self.protocol is None and "total" not in scopes:
            raise ValueError(f"asset: metric {self.metric!r} is per asset; name the asset")
        if self.protocol is not None and "protocol" not in scopes and "asset" not in scopes:
            raise ValueError(f"protocol: metric {self.metric!r} is a figure of the whole run, not of a protocol")
        lo = self.value if self.low is None else self.low
        hi = self.value if self.high is None else self.high
        if not lo <= self.value <= hi:
            raise ValueError(f"low/high: the range [{lo:g}, {hi:g}] must contain the value {self.value:g}")
        return self

    @property
    def key(self) -> str:
        return scorecard_key(self.metric, self.protocol, self.asset)

    @property
    def range(self) -> tuple[float, float]:
        """The published range (low, high); a single figure is its own range."""
        return (
            float(self.value if self.low is None else self.low),
            float(self.value if self.high is None else self.high),
        )
