"""Scenario tables for the options venue, its agent populations, multi-venue accounts and the margin regime.

Imported by scenarios/schema.py (which owns the unions of protocol and agent specs). Nested `params`
tables are validated by the parameter classes of the protocol or agent they configure, so an error names
the key path (e.g. `protocols.options.params.liquidation`) and the allowed values.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from defistress.scenarios.schema_base import Distribution, ParamsOf, Strict, _validated
from defistress.scenarios.units import MAX_TOKENS, MAX_USD, Float, Int

#: an id of a scenario object, as in scenarios/schema.py
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class ListingSpec(Strict):
    """Option series listed at the start: every strike (as moneyness of the start price) x every expiry."""

    moneyness: list[Annotated[Float, Field(ge=0.05, le=20)]] = Field(
        [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3],
        min_length=1,
        max_length=200,
        description="strikes as strike / start price, each in 0.05..20 (unitless) [assumption]",
    )
    expiry_days: list[Annotated[Float, Field(gt=0, le=3650)]] = Field(
        [7.0, 30.0],
        min_length=1,
        max_length=50,
        description="expiries in days from the start, each in (0, 3650] [assumption: weekly and monthly]",
    )

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

    id: str = Field(pattern=ID_PATTERN, description="protocol id")
    kind: Literal["options"] = Field("options", description="a portfolio-margined options venue")
    oracles: dict[str, str] = Field(description="underlying -> oracle id (spot for marks and settlement)")
    quote: str = Field("USDC", description="cash token, valued at 1 USD")
    params: Annotated[dict, ParamsOf("defistress.protocols.options:OptionsVenueParams", partial=True)] = Field(
        default_factory=dict, description="fields of protocols.options.OptionsVenueParams (margin model, auction)"
    )
    listings: ListingSpec = Field(ListingSpec(), description="option series listed at the start")
    market_maker_usd: Float = Field(
        50e6,
        gt=0,
        le=MAX_USD,
        description="cash of the liquidity account that takes the other side, USD [assumption]",
    )
    liquidates_into: list[str] = Field(
        default_factory=list, description="venue ids its liquidators sell into (edges of the network graph)"
    )

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

    kind: Literal["option_writers", "delta_hedgers", "protection_buyers"] = Field(
        description="option_writers (sell options), delta_hedgers (short gamma, hedged with perps) or "
        "protection_buyers (buy puts)"
    )
    id: str = Field(pattern=ID_PATTERN, description="agent id (ledger holder of the population)")
    protocol: str = Field(description="id of the options protocol")
    params: Annotated[
        dict,
        ParamsOf(
            "defistress.agents.option_writers:OptionWritersParams",
            "defistress.agents.delta_hedgers:DeltaHedgersParams",
            "defistress.agents.protection_buyers:ProtectionBuyersParams",
            partial=True,
        ),
    ] = Field(
        default_factory=dict,
        description="fields of the population's params class in agents (OptionWritersParams, DeltaHedgersParams "
        "or ProtectionBuyersParams, by kind); accounts is required",
    )

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

    kind: Literal["multi_venue"] = Field("multi_venue", description="accounts spread over several protocols")
    id: str = Field("hedged", pattern=ID_PATTERN, description="agent id (ledger holder of the population)")
    accounts: Int = Field(gt=0, le=1_000_000, description="number of accounts (1..1,000,000)")
    lending: str = Field(description="lending protocol id: collateral long + stablecoin debt")
    perps: str = Field(description="perps protocol id: the short perp hedge")
    options: str | None = Field(None, description="options protocol id: protective puts (none: no options leg)")
    asset: str = Field("ETH", description="the underlying: lending collateral, perp market, option underlying")
    debt: str = Field("USDC", description="stablecoin borrowed on the lending market")
    size_usd: Distribution = Field(
        Distribution(distribution="lognormal", median=100_000, sigma=1.0, min=1_000, max=50_000_000),
        description="lending collateral value per account at the start, USD [assumption]",
    )
    hedge_ratio: Distribution = Field(
        Distribution(distribution="uniform", low=0.3, high=1.0),
        description="short perp notional / collateral value per account (unitless, >= 0) [assumption]",
    )
    put_ratio: Distribution = Field(
        Distribution(distribution="uniform", low=0.0, high=0.5),
        description="puts bought, units per unit of collateral (unitless, >= 0) [assumption]",
    )
    put_moneyness: Float = Field(0.85, gt=0.05, le=2, description="put strike / start price (unitless) [assumption]")
    put_expiry_days: Float = Field(30.0, gt=0, le=3650, description="put expiry, days from the start [assumption]")
    im_multiple: Float = Field(
        1.5, ge=1.0, le=20, description="capital posted = this x initial margin of the regime [assumption]"
    )
    gas_eth_per_account: Float = Field(0.0, ge=0, le=MAX_TOKENS, description="ETH each account holds for gas, tokens")

    @model_validator(mode="after")
    def _check(self):
        for name in ("hedge_ratio", "put_ratio"):
            d = getattr(self, name)
            if d.lowest() < 0:
                raise ValueError(f"agents.{self.id}.{name}: allowed >= 0")
        return self


class MarginSpec(Strict):
    """The margin regime of multi-venue accounts: `silo` (each protocol margins what it holds) or
    `portfolio` (a margin coordinator, Euler-EVC style, margins the whole book and liquidates across venues).
    `coordinator` sets protocols.coordinator.CoordinatorParams; `keeper` sets
    agents.coordinator_keeper.CoordinatorKeeperParams (used in the portfolio regime)."""

    regime: Literal["silo", "portfolio"] = Field(
        "silo", description="silo: each protocol margins what it holds; portfolio: a coordinator margins the book"
    )
    coordinator: Annotated[dict, ParamsOf("defistress.protocols.coordinator:CoordinatorParams")] = Field(
        default_factory=dict, description="fields of protocols.coordinator.CoordinatorParams (portfolio regime)"
    )
    keeper: Annotated[dict, ParamsOf("defistress.agents.coordinator_keeper:CoordinatorKeeperParams")] = Field(
        default_factory=dict, description="fields of agents.coordinator_keeper.CoordinatorKeeperParams"
    )
    keeper_capital_usd: Float = Field(
        20e6, gt=0, le=MAX_USD, description="stablecoin the coordinator's keeper starts with, USD [assumption]"
    )
    keeper_gas_eth: Float = Field(50.0, gt=0, le=MAX_TOKENS, description="ETH the keeper holds for gas, tokens")
    silo_pm_figures: Literal["start", "every_block"] = Field(
        "start",
        description="silo regime: the portfolio-margin columns (regime_pm_mm_usd, regime_netting_credit_usd, "
        "regime_contingency_usd) at the first block only (start: NaN after it, they feed the summary's capital "
        "figures) or every block (every_block: values the whole book once more per block)",
    )

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
