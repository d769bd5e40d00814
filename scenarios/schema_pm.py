"""Scenario tables for the options venue, its agent populations, multi-venue accounts and the margin regime.

Imported by scenarios/schema.py (which owns the unions of protocol and agent specs). Nested `params`
tables are validated by the parameter classes of the protocol or agent they configure, so an error names
the key path (e.g. `protocols.options.params.liquidation`) and the allowed values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from defistress.scenarios.schema_base import Distribution, Strict, _validated


class ListingSpec(Strict):
    """Option series listed at the start: every strike (as moneyness of the start price) x every expiry."""

    moneyness: list[float] = Field(
        default_factory=lambda: [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3], min_length=1, description="strike / start price"
    )
    expiry_days: list[float] = Field(default_factory=lambda: [7.0, 30.0], min_length=1)

    @model_validator(mode="after")
    def _check(self):
        bad = [m for m in self.moneyness if not 0.05 <= m <= 20]
        if bad:
            raise ValueError(f"listings.moneyness: allowed 0.05..20, got {bad}")
        bad = [d for d in self.expiry_days if not 0 < d <= 3650]
        if bad:
            raise ValueError(f"listings.expiry_days: allowed (0, 3650] days, got {bad}")
        return self


class OptionsSpec(Strict):
    """An options venue (Derive/Deribit style): options, perps and spot collateral margined together by a
    model of protocols.margin. `params` sets protocols.options.OptionsVenueParams fields."""

    id: str = Field(min_length=1)
    kind: Literal["options"] = "options"
    oracles: dict[str, str] = Field(description="underlying -> oracle id (spot for marks and settlement)")
    quote: str = "USDC"
    params: dict = Field(default_factory=dict)
    listings: ListingSpec = ListingSpec()
    market_maker_usd: float = Field(
        50e6, gt=0, description="cash of the liquidity account that takes the other side, USD"
    )
    liquidates_into: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        p = self.venue_params()
        if p.quote != self.quote:
            raise ValueError(f"protocols.{self.id}.params.quote: {p.quote!r} must equal quote {self.quote!r}")
        return self

    def venue_params(self):
        from defistress.protocols.options import OptionsVenueParams

        return _validated(OptionsVenueParams, {"quote": self.quote, **self.params}, f"protocols.{self.id}.params")

    def collateral_assets(self) -> list[str]:
        return [self.quote, *self.oracles]

    def issued_assets(self) -> list[str]:
        return []

    def market_assets(self) -> list[str]:
        return list(self.oracles)

    @property
    def assets(self) -> dict[str, None]:
        return {self.quote: None, **{a: None for a in self.oracles}}


#: agent kind -> (module, params class) of the options venue's populations
OPTION_POPULATIONS = {
    "option_writers": ("defistress.agents.option_agents", "OptionWritersParams"),
    "delta_hedgers": ("defistress.agents.option_agents", "DeltaHedgersParams"),
    "protection_buyers": ("defistress.agents.option_agents", "ProtectionBuyersParams"),
}


class OptionPopulationSpec(Strict):
    """A vectorised population on an options venue; `params` sets the population's params class
    (agents.option_agents: OptionWritersParams, DeltaHedgersParams, ProtectionBuyersParams)."""

    kind: Literal["option_writers", "delta_hedgers", "protection_buyers"]
    id: str = Field(min_length=1)
    protocol: str
    params: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        self.population_params()
        return self

    def population_params(self):
        import importlib

        mod, cls = OPTION_POPULATIONS[self.kind]
        klass = getattr(importlib.import_module(mod), cls)
        data = dict(self.params)
        if "id" in klass.model_fields:
            data.setdefault("id", self.id)
        return _validated(klass, data, f"agents.{self.id}.params")


class MultiVenueSpec(Strict):
    """Accounts that hold positions on several protocols at once: collateral and a stablecoin loan on a
    lending market, a short perp on a perp DEX and puts on an options venue (a hedged book)."""

    kind: Literal["multi_venue"] = "multi_venue"
    id: str = "hedged"
    accounts: int = Field(gt=0, le=1_000_000)
    lending: str = Field(description="lending protocol id: collateral long + stablecoin debt")
    perps: str = Field(description="perps protocol id: the short perp hedge")
    options: str | None = Field(None, description="options protocol id: protective puts (none: no options leg)")
    asset: str = Field("ETH", description="the underlying: lending collateral, perp market, option underlying")
    debt: str = Field("USDC", description="stablecoin borrowed on the lending market")
    size_usd: Distribution = Distribution(
        distribution="lognormal", median=100_000, sigma=1.0, min=1_000, max=50_000_000
    )
    hedge_ratio: Distribution = Distribution(distribution="uniform", low=0.3, high=1.0)
    put_ratio: Distribution = Distribution(distribution="uniform", low=0.0, high=0.5)
    put_moneyness: float = Field(0.85, gt=0.05, le=2, description="put strike / start price")
    put_expiry_days: float = Field(30.0, gt=0, le=3650)
    im_multiple: float = Field(1.5, ge=1.0, le=20, description="capital posted = this x initial margin of the regime")
    gas_eth_per_account: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _check(self):
        for name in ("hedge_ratio", "put_ratio"):
            d = getattr(self, name)
            lo = d.low if d.distribution == "uniform" else (d.value if d.distribution == "constant" else d.min)
            if lo is not None and lo < 0:
                raise ValueError(f"agents.{self.id}.{name}: allowed >= 0")
        return self


class MarginSpec(Strict):
    """The margin regime of multi-venue accounts: `silo` (each protocol margins what it holds) or
    `portfolio` (a margin coordinator, Euler-EVC style, margins the whole book and liquidates across venues).
    `coordinator` sets protocols.coordinator.CoordinatorParams; `keeper` sets
    agents.coordinator_keeper.CoordinatorKeeperParams (used in the portfolio regime)."""

    regime: Literal["silo", "portfolio"] = "silo"
    coordinator: dict = Field(default_factory=dict)
    keeper: dict = Field(default_factory=dict)
    keeper_capital_usd: float = Field(20e6, gt=0, description="stablecoin the coordinator's keeper starts with, USD")
    keeper_gas_eth: float = Field(50.0, gt=0, description="ETH the keeper holds for gas")

    @model_validator(mode="after")
    def _check(self):
        self.coordinator_params()
        self.keeper_params()
        return self

    def coordinator_params(self):
        from defistress.protocols.coordinator import CoordinatorParams

        return _validated(CoordinatorParams, self.coordinator, "margin.coordinator")

    def keeper_params(self):
        from defistress.agents.coordinator_keeper import CoordinatorKeeperParams

        return _validated(CoordinatorKeeperParams, {"id": "coordinator-keeper", **self.keeper}, "margin.keeper")
