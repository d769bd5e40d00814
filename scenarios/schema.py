"""The scenario file schema: pydantic models for every table of a scenario TOML.

Unknown keys are errors (extra="forbid"); every bound is declared on its field so that an error names
the key path and the allowed range; cross-field checks (liquidation threshold above LTV, oracles that
exist, venues whose tokens exist) run after the fields. The JSON Schema is published with
`defistress schema` and in `scenarios/schema.json`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from defistress.scenarios.schema_base import Distribution, Strict, _validated
from defistress.scenarios.schema_books import BookSpec, LendingAssetExtras, LendingExtras, MixedBorrowersSpec
from defistress.scenarios.schema_pm import MarginSpec, MultiVenueSpec, OptionPopulationSpec, OptionsSpec
from defistress.scenarios.units import Seconds


# --- run -------------------------------------------------------------------------------------------
class PublishedOutcome(Strict):
    """A real-world figure to compare a replay with (shown as a scorecard in summary.json and the report)."""

    metric: str = Field(min_length=1, description="summary metric name, e.g. 'maker_bad_debt_usd'")
    value: float
    source: str = Field(min_length=1)


class RunSpec(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    block_seconds: float = Field(12.0, gt=0, le=3600, description="seconds per block (Ethereum: 12)")
    duration: Seconds = Field(86400.0, gt=0, le=90 * 86400, description="simulated time, e.g. '24h'")
    seed: int = Field(0, ge=0, description="default seed when none is given on the command line")
    published: list[PublishedOutcome] = Field(default_factory=list)
    check_conservation_every: int = Field(0, ge=0, description="blocks between ledger checks (0: at the end only)")


# --- market ----------------------------------------------------------------------------------------
class JumpSpec(Strict):
    """Merton jumps: Poisson arrivals, log-normal jump sizes (mean and stdev of log(1+jump))."""

    intensity_per_year: float = Field(ge=0, le=1000)
    mean: float = Field(ge=-2, le=2)
    stdev: float = Field(ge=0, le=2)


class AssetSpec(Strict):
    """A market asset: risky (price, volatility) or a stablecoin (peg)."""

    symbol: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    price: float | None = Field(None, gt=0, description="initial reference price, USD")
    volatility: float = Field(0.0, ge=0, le=20, description="annualised volatility of log price")
    drift: float = Field(0.0, ge=-50, le=50, description="annualised drift of log price")
    jumps: JumpSpec | None = None
    peg: float | None = Field(None, gt=0, description="peg in USD: makes this asset a stablecoin")
    peg_reversion_per_hour: float = Field(2.0, ge=0, le=1000, description="OU mean-reversion speed, 1/h")
    peg_volatility: float = Field(0.002, ge=0, le=5, description="annualised volatility of the peg deviation")

    @model_validator(mode="after")
    def _price_or_peg(self):
        if self.price is not None and self.peg is not None:
            raise ValueError(f"asset {self.symbol}: give 'price' (risky asset) or 'peg' (stablecoin), not both")
        return self

    @property
    def is_stable(self) -> bool:
        return self.peg is not None

    @property
    def initial_price(self) -> float:
        """Start of the simulated path (a replayed asset's path comes from its data instead)."""
        if self.peg is not None:
            return float(self.peg)
        return float(self.price) if self.price is not None else 1.0


class DepthSpec(Strict):
    """Square-root impact of net selling on the reference price, recovering exponentially."""

    usd_for_1pct: float = Field(gt=0, description="unrecovered net USD sold that moves the price by 1%")
    recovery_half_life: Seconds = Field(1800.0, gt=0, description="half-life of the impact, e.g. '30m'")


class ReplaySpec(Strict):
    """Replay of real prices from a CSV in the format of the historic data folder."""

    file: str = Field(min_length=1, description="path relative to the scenario file or to scenarios/historic/data")
    format: Literal["ohlc_long", "coinapi_10min"] = "ohlc_long"
    symbols: dict[str, str] = Field(description="scenario asset -> series symbol, e.g. {ETH = 'ETH-USDT'}")
    start: str | None = Field(None, description="first candle (ISO UTC) to replay; default the file's first")
    fill: Literal["hold", "linear"] = Field(
        "hold", description="how blocks inside a candle are priced: hold the last close, or interpolate closes"
    )


class MarketSpec(Strict):
    assets: list[AssetSpec] = Field(min_length=1)
    correlation: list[list[float]] | None = Field(None, description="correlation of the risky assets, in order")
    depth: dict[str, DepthSpec] = Field(default_factory=dict)
    replay: ReplaySpec | None = None
    external_fee: float = Field(0.0005, ge=0, lt=0.1, description="taker fee on the outside (CEX) market")

    @model_validator(mode="after")
    def _check(self):
        symbols = [a.symbol for a in self.assets]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"market.assets: duplicate symbols in {symbols}")
        risky = [a.symbol for a in self.assets if not a.is_stable]
        if self.correlation is not None:
            c = np.asarray(self.correlation, dtype=float)
            if c.shape != (len(risky), len(risky)):
                raise ValueError(
                    f"market.correlation: must be {len(risky)}x{len(risky)} for the risky assets {risky}, "
                    f"got shape {c.shape}"
                )
            if not np.allclose(c, c.T) or not np.allclose(np.diag(c), 1.0) or np.any(np.abs(c) > 1):
                raise ValueError("market.correlation: must be symmetric with unit diagonal and entries in [-1, 1]")
            if np.linalg.eigvalsh(c).min() < -1e-10:
                raise ValueError("market.correlation: must be positive semi-definite")
        replayed = set(self.replay.symbols) if self.replay is not None else set()
        for a in self.assets:
            if a.price is None and a.peg is None and a.symbol not in replayed:
                raise ValueError(
                    f"market.assets.{a.symbol}: give 'price' (risky), 'peg' (stablecoin), "
                    "or replay it in market.replay.symbols"
                )
        for sym in self.depth:
            if sym not in symbols:
                raise ValueError(f"market.depth.{sym}: unknown asset; allowed: {symbols}")
        if self.replay is not None:
            for sym in self.replay.symbols:
                if sym not in symbols:
                    raise ValueError(f"market.replay.symbols.{sym}: unknown asset; allowed: {symbols}")
        return self

    def asset(self, symbol: str) -> AssetSpec:
        return next(a for a in self.assets if a.symbol == symbol)


class ShockSpec(Strict):
    """A scheduled shock: a jump at `at`, and over [at, until] a drift, a volatility multiplier, a
    correlation override, a stablecoin depeg target or extra gas demand."""

    at: Seconds
    until: Seconds | None = None
    asset: str | None = None
    jump: float | None = Field(None, gt=-1, le=10, description="instant return at `at`, e.g. -0.15")
    drift_to: float | None = Field(None, gt=-1, le=10, description="total return added over the window")
    volatility_multiplier: float | None = Field(None, gt=0, le=100)
    correlation: float | None = Field(None, ge=-1, le=1, description="all pairwise correlations in the window")
    depeg_to: float | None = Field(None, gt=0, description="stablecoin price the peg is pulled to in the window")
    gas_demand_multiplier: float | None = Field(None, gt=0, le=100, description="background gas demand x")

    @model_validator(mode="after")
    def _check(self):
        window = ("drift_to", "volatility_multiplier", "correlation", "depeg_to", "gas_demand_multiplier")
        if any(getattr(self, k) is not None for k in window) and self.until is None:
            raise ValueError(
                f"shock at {self.at}s: {', '.join(k for k in window if getattr(self, k) is not None)} needs 'until'"
            )
        if self.until is not None and self.until <= self.at:
            raise ValueError(f"shock: 'until' ({self.until}s) must be after 'at' ({self.at}s)")
        needs_asset = ("jump", "drift_to", "volatility_multiplier", "depeg_to")
        if any(getattr(self, k) is not None for k in needs_asset) and self.asset is None:
            raise ValueError("shock: 'asset' is required for jump, drift_to, volatility_multiplier and depeg_to")
        return self


# --- oracles and venues ----------------------------------------------------------------------------
class OracleFailure(Strict):
    mode: Literal["stale", "floor"]
    at: Seconds = 0.0
    floor_price: float | None = Field(None, gt=0, description="minAnswer in USD for mode 'floor'")

    @model_validator(mode="after")
    def _check(self):
        if self.mode == "floor" and self.floor_price is None:
            raise ValueError("oracle failure mode 'floor' needs 'floor_price'")
        return self


class OracleSpec(Strict):
    """push: Chainlink-style (deviation threshold + heartbeat); delayed: Maker OSM (price of one hop
    ago); fixed: a constant."""

    id: str = Field(min_length=1)
    kind: Literal["push", "delayed", "fixed"] = "push"
    asset: str
    source: str = Field(
        "reference",
        pattern=r"^(reference|pool:[^:]+|twap:[^:]+)$",
        description="'reference', 'pool:VENUE' (spot) or 'twap:VENUE'",
    )
    deviation: float = Field(0.005, ge=0, le=1, description="publish when the move exceeds this fraction")
    heartbeat: Seconds = Field(3600.0, gt=0)
    delay: Seconds = Field(3600.0, gt=0, description="OSM hop for kind 'delayed' (Maker: 1h)")
    price: float | None = Field(None, gt=0, description="constant price for kind 'fixed'")
    failure: OracleFailure | None = None


class VenueSpec(Strict):
    id: str = Field(min_length=1)
    kind: Literal["constant_product"] = "constant_product"
    pair: tuple[str, str]
    depth_usd: float = Field(gt=0, description="total value of both reserves at the start, USD")
    fee: float = Field(0.003, ge=0, lt=0.1)


# --- protocols ---------------------------------------------------------------------------------------
class InterestSpec(Strict):
    """Kinked utilisation model (Aave v3 DefaultReserveInterestRateStrategy), annual rates."""

    base: float = Field(0.0, ge=0, le=10)
    slope1: float = Field(0.04, ge=0, le=10)
    slope2: float = Field(0.60, ge=0, le=100)
    optimal_utilisation: float = Field(0.90, gt=0, lt=1)


class LendingAssetSpec(LendingAssetExtras):
    """Per-asset risk parameters (Aave v3 reserve config). Defaults: Aave v3 Ethereum WETH."""

    ltv: float = Field(0.825, ge=0, lt=1)
    liquidation_threshold: float = Field(0.86, gt=0, lt=1)
    liquidation_bonus: float = Field(0.05, ge=0, le=0.5, description="0.05 = 105% in Aave's bps notation")
    protocol_fee: float = Field(0.10, ge=0, le=1, description="liquidationProtocolFee: share of the bonus")
    reserve_factor: float = Field(0.15, ge=0, le=1)
    interest: InterestSpec = InterestSpec()
    supply_usd: float = Field(0.0, ge=0, description="lenders' deposits at the start, USD")

    @model_validator(mode="after")
    def _check(self):
        if self.liquidation_threshold <= self.ltv:
            raise ValueError(
                f"liquidation_threshold ({self.liquidation_threshold}) must be greater than ltv ({self.ltv})"
            )
        if self.liquidation_threshold * (1 + self.liquidation_bonus) >= 1.0:
            raise ValueError(
                f"liquidation_threshold x (1 + liquidation_bonus) = "
                f"{self.liquidation_threshold * (1 + self.liquidation_bonus):.4f} "
                "must be below 1 (Aave v3 ReserveConfiguration validation)"
            )
        return self


class LendingSpec(LendingExtras):
    id: str = Field(min_length=1)
    kind: Literal["lending"] = "lending"
    oracles: dict[str, str] = Field(description="asset -> oracle id")
    liquidates_into: list[str] = Field(default_factory=list, description="venue ids liquidators sell into")
    close_factor_rule: Literal["aave-v3.0", "aave-v3.3"] = "aave-v3.3"
    assets: dict[str, LendingAssetSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        for a in self.assets:
            if a not in self.oracles:
                raise ValueError(
                    f"protocol {self.id}: asset {a} has no oracle in 'oracles' (has: {sorted(self.oracles)})"
                )
        return self


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class CdpSpec(Strict):
    """A Maker-style CDP: one collateral, a minted stablecoin, Liquidations 2.0 or 2020 flip auctions.
    `params` overrides fields of the preset (protocols.cdp.CdpParams), e.g. {surplus_buffer = 1e6}."""

    id: str = Field(min_length=1)
    kind: Literal["cdp"] = "cdp"
    oracles: dict[str, str] = Field(description="collateral asset -> oracle id (Maker: the OSM)")
    preset: Literal["maker-liq2-eth-a", "maker-2020-eth-a", "none"] = "maker-liq2-eth-a"
    params: dict = Field(default_factory=dict)
    liquidates_into: list[str] = Field(default_factory=list, description="venues keepers sell collateral into")

    @model_validator(mode="after")
    def _check(self):
        p = self.cdp_params()
        if list(self.oracles) != [p.collateral]:
            raise ValueError(
                f"protocols.{self.id}.oracles: must name exactly the collateral {p.collateral!r}, "
                f"got {sorted(self.oracles)}"
            )
        return self

    def cdp_params(self):
        from defistress.protocols.cdp import MAKER_2020_ETH_A, MAKER_LIQ2_ETH_A, CdpParams

        base = {"maker-liq2-eth-a": MAKER_LIQ2_ETH_A, "maker-2020-eth-a": MAKER_2020_ETH_A}.get(self.preset)
        data = _deep_merge(base.model_dump() if base is not None else {}, self.params)
        return _validated(CdpParams, data, f"protocols.{self.id}.params")

    def collateral_assets(self) -> list[str]:
        return [self.cdp_params().collateral]

    def issued_assets(self) -> list[str]:
        return [self.cdp_params().stablecoin]

    @property
    def assets(self) -> dict[str, None]:
        p = self.cdp_params()
        return {p.collateral: None, p.stablecoin: None}


class PerpsSpec(Strict):
    """A perp DEX (dYdX v4 style). `params` sets protocols.perps.PerpDexParams fields; its `markets`
    list holds PerpMarketParams tables ({asset = "ETH", initial_margin_fraction = 0.05, ...})."""

    id: str = Field(min_length=1)
    kind: Literal["perps"] = "perps"
    oracles: dict[str, str] = Field(description="market asset -> oracle id (the mark price)")
    quote: str = "USDC"
    params: dict = Field(default_factory=dict)
    liquidates_into: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        markets = [m.asset for m in self.dex_params().markets]
        missing = [a for a in markets if a not in self.oracles]
        if missing:
            raise ValueError(f"protocols.{self.id}.oracles: no oracle for market(s) {missing}")
        return self

    def dex_params(self):
        from defistress.protocols.perps import PerpDexParams

        return _validated(PerpDexParams, self.params, f"protocols.{self.id}.params")

    def collateral_assets(self) -> list[str]:
        return [self.quote]

    def issued_assets(self) -> list[str]:
        return []

    def market_assets(self) -> list[str]:
        return [m.asset for m in self.dex_params().markets]

    @property
    def assets(self) -> dict[str, None]:
        return {self.quote: None, **{a: None for a in self.market_assets()}}


# --- agents ----------------------------------------------------------------------------------------

ProtocolSpec = Annotated[LendingSpec | CdpSpec | PerpsSpec | OptionsSpec, Field(discriminator="kind")]


class BorrowersSpec(Strict):
    """A vectorised population of borrowers on one lending market."""

    kind: Literal["borrowers"] = "borrowers"
    id: str = "borrowers"
    protocol: str
    accounts: int = Field(gt=0, le=5_000_000)
    collateral: dict[str, float] = Field(description="asset -> share of accounts using it as collateral")
    debt: str
    size_usd: Distribution = Distribution(distribution="lognormal", median=20_000, sigma=1.2, min=100, max=50_000_000)
    health_factor: Distribution = Distribution(distribution="lognormal", median=1.6, sigma=0.25, min=1.02, max=10)
    attentive_share: float = Field(0.3, ge=0, le=1)
    alarm_health_factor: Distribution = Distribution(distribution="uniform", low=1.05, high=1.25)
    reaction_delay: Seconds = Field(900.0, ge=0)
    wallet_share: float = Field(0.3, ge=0, le=10, description="spare stablecoins per account, as a share of its debt")
    repay_gas: int = Field(150_000, gt=0)
    max_users_per_block: int = Field(150, ge=1, description="attentive users who can act in one block")
    users_per_tx: int = Field(50, ge=1, description="users batched into one simulated transaction")
    gas_eth_per_account: float = Field(0.05, ge=0, description="ETH each account holds for gas")
    priority_fee_gwei: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _check(self):
        total = sum(self.collateral.values())
        if not np.isclose(total, 1.0) or min(self.collateral.values(), default=0) < 0:
            raise ValueError(f"agents.{self.id}.collateral: shares must be >= 0 and sum to 1, got {total}")
        return self


class LiquidatorSpec(Strict):
    kind: Literal["liquidator"] = "liquidator"
    id: str = "liquidator"
    count: int = Field(1, ge=1, le=1000)
    capital_usd: float = Field(gt=0, description="stablecoin capital per liquidator, USD")
    gas_budget_eth: float = Field(50.0, gt=0, description="ETH per liquidator for gas")
    min_profit_usd: float = Field(50.0, ge=0)
    latency_blocks: int = Field(1, ge=0, le=10_000)
    max_tx_per_block: int = Field(5, ge=1, le=1000)
    profit_share_to_gas: float = Field(0.3, ge=0, le=1, description="share of expected profit bid as priority fee")
    max_priority_fee_gwei: float = Field(500.0, ge=0)
    shared_with: list[str] = Field(default_factory=list, description="protocol ids this liquidator serves")
    private_orderflow: bool = Field(
        True,
        description="send through a private relay: failed attempts pay no gas "
        "(Flashbots, since 2021); false reproduces the public gas wars of 2020",
    )


class ArbitrageurSpec(Strict):
    kind: Literal["arbitrageur"] = "arbitrageur"
    id: str = "arbitrageur"
    venues: list[str] = Field(min_length=1)
    capital_usd: float = Field(gt=0)
    min_profit_usd: float = Field(20.0, ge=0)
    gas_budget_eth: float = Field(50.0, gt=0)
    priority_fee_gwei: float = Field(3.0, ge=0)
    max_trade_share: float = Field(0.25, gt=0, le=1, description="largest trade as a share of capital per block")


class VaultsSpec(Strict):
    """A vectorised population of CDP vault owners."""

    kind: Literal["vaults"] = "vaults"
    id: str = "vaults"
    protocol: str
    accounts: int = Field(gt=0, le=5_000_000)
    size_usd: Distribution = Distribution(
        distribution="lognormal", median=50_000, sigma=1.3, min=1_000, max=100_000_000
    )
    collateral_ratio: Distribution = Distribution(distribution="lognormal", median=2.6, sigma=0.3, min=1.55, max=20)
    attentive_share: float = Field(0.3, ge=0, le=1)
    alarm_ratio: Distribution = Distribution(distribution="uniform", low=1.1, high=1.4)
    reaction_delay: Seconds = Field(1800.0, ge=0)
    wallet_share: float = Field(0.3, ge=0, le=10, description="share of drawn stablecoin kept for repayments")
    repay_gas: int = Field(150_000, gt=0)
    max_users_per_block: int = Field(150, ge=1)
    users_per_tx: int = Field(50, ge=1)
    priority_fee_gwei: float = Field(2.0, ge=0)
    gas_eth_per_account: float = Field(0.05, ge=0)


class KeeperSpec(Strict):
    """Keepers of CDP auctions; `params` sets fields of agents.keeper.KeeperParams."""

    kind: Literal["keeper"] = "keeper"
    id: str = "keeper"
    count: int = Field(1, ge=1, le=1000)
    capital_usd: float = Field(gt=0, description="stablecoin capital per keeper, USD")
    gas_budget_eth: float = Field(50.0, gt=0, description="ETH per keeper for gas")
    shared_with: list[str] = Field(default_factory=list, description="CDP ids the keeper watches (default: all)")
    params: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        self.keeper_params()
        return self

    def keeper_params(self):
        from defistress.agents.keeper import KeeperParams

        return _validated(
            KeeperParams, {"gas_budget_eth": self.gas_budget_eth, **self.params}, f"agents.{self.id}.params"
        )


class TradersSpec(Strict):
    """A vectorised population of perp traders; `params` sets agents.traders.TraderParams fields."""

    kind: Literal["traders"] = "traders"
    id: str = "traders"
    protocol: str
    params: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        self.trader_params()
        return self

    def trader_params(self):
        from defistress.agents.traders import TraderParams

        return _validated(TraderParams, {"id": self.id, **self.params}, f"agents.{self.id}.params")


AgentSpec = Annotated[
    BorrowersSpec
    | LiquidatorSpec
    | ArbitrageurSpec
    | VaultsSpec
    | KeeperSpec
    | TradersSpec
    | OptionPopulationSpec
    | MultiVenueSpec
    | BookSpec
    | MixedBorrowersSpec,
    Field(discriminator="kind"),
]


# --- gas -------------------------------------------------------------------------------------------
class GasReplaySpec(Strict):
    file: str
    column: str = "avgGasDay"
    unit: Literal["wei", "gwei"] = "wei"
    start: str | None = None
    scale: float = Field(1.0, gt=0, le=1000, description="multiplies the replayed gas price (0.1 = ten times cheaper)")


class GasSpec(Strict):
    """EIP-1559 block market: base fee moves by up to 1/8 per block toward a half-full target."""

    block_gas_limit: int = Field(30_000_000, gt=0)
    base_fee_gwei: float = Field(20.0, gt=0)
    background_demand: float = Field(0.5, ge=0, le=2, description="other users' gas demand as a share of the limit")
    background_priority_gwei: float = Field(1.5, ge=0, description="tip other users pay; lower tips queue behind them")
    background_price_elasticity: float = Field(
        1.0, ge=0, le=10, description="other users' demand falls as (base fee / initial base fee)^-elasticity"
    )
    liquidation_gas: int = Field(500_000, gt=0, description="Aave v3 liquidationCall + swap, gas units")
    swap_gas: int = Field(150_000, gt=0)
    eth_price_usd: float = Field(2000.0, gt=0, description="used only when ETH is not a market asset")
    replay: GasReplaySpec | None = None


# --- the scenario ----------------------------------------------------------------------------------
class Scenario(Strict):
    run: RunSpec
    market: MarketSpec
    shocks: list[ShockSpec] = Field(default_factory=list)
    oracles: list[OracleSpec] = Field(default_factory=list)
    venues: list[VenueSpec] = Field(default_factory=list)
    protocols: list[ProtocolSpec] = Field(default_factory=list)
    agents: list[AgentSpec] = Field(default_factory=list)
    gas: GasSpec = GasSpec()
    margin: MarginSpec | None = Field(None, description="margin regime of multi-venue accounts (default: silo)")

    @model_validator(mode="after")
    def _links(self):
        assets = [a.symbol for a in self.market.assets]
        venues = {v.id: v for v in self.venues}
        oracles = {o.id: o for o in self.oracles}
        protocols = {p.id: p for p in self.protocols}
        _unique("oracles", [o.id for o in self.oracles])
        _unique("venues", [v.id for v in self.venues])
        _unique("protocols", [p.id for p in self.protocols])
        _unique("agents", [a.id for a in self.agents])
        for s in self.shocks:
            if s.asset is not None and s.asset not in assets:
                raise ValueError(f"shocks: unknown asset {s.asset!r}; allowed: {assets}")
        for v in self.venues:
            for t in v.pair:
                if t not in assets:
                    raise ValueError(f"venues.{v.id}.pair: unknown asset {t!r}; allowed: {assets}")
        for o in self.oracles:
            if o.asset not in assets:
                raise ValueError(f"oracles.{o.id}.asset: unknown asset {o.asset!r}; allowed: {assets}")
            if o.source != "reference" and o.source.split(":", 1)[1] not in venues:
                raise ValueError(f"oracles.{o.id}.source: unknown venue in {o.source!r}; allowed: {sorted(venues)}")
            if o.kind == "fixed" and o.price is None:
                raise ValueError(f"oracles.{o.id}: kind 'fixed' needs 'price'")
        for p in self.protocols:
            for asset, oid in p.oracles.items():
                if oid not in oracles:
                    raise ValueError(
                        f"protocols.{p.id}.oracles.{asset}: unknown oracle {oid!r}; allowed: {sorted(oracles)}"
                    )
                if oracles[oid].asset != asset:
                    raise ValueError(
                        f"protocols.{p.id}.oracles.{asset}: oracle {oid!r} prices {oracles[oid].asset}, not {asset}"
                    )
            for a in getattr(p, "assets", {}):
                if a not in assets:
                    raise ValueError(f"protocols.{p.id}.assets.{a}: unknown asset; allowed: {assets}")
            for vid in getattr(p, "liquidates_into", []):
                if vid not in venues:
                    raise ValueError(
                        f"protocols.{p.id}.liquidates_into: unknown venue {vid!r}; allowed: {sorted(venues)}"
                    )
        for p in self.protocols:
            if isinstance(p, CdpSpec) and p.cdp_params().stablecoin not in assets:
                raise ValueError(
                    f"protocols.{p.id}: stablecoin {p.cdp_params().stablecoin!r} must be a market asset; "
                    f"allowed: {assets}"
                )
        vault_owners = [a.protocol for a in self.agents if isinstance(a, VaultsSpec)]
        dup = sorted({x for x in vault_owners if vault_owners.count(x) > 1})
        if dup:
            raise ValueError(f"agents: one vaults population per cdp, got several for {dup}")
        for item in [*self.protocols, *self.agents]:  # tables that check their own links (schema_books.py)
            if hasattr(item, "check_links"):
                item.check_links(self)
        for a in self.agents:
            if isinstance(a, BorrowersSpec):
                p = protocols.get(a.protocol)
                if not isinstance(p, LendingSpec):
                    lends = sorted(q.id for q in self.protocols if isinstance(q, LendingSpec))
                    raise ValueError(
                        f"agents.{a.id}.protocol: {a.protocol!r} is not a lending market; allowed: {lends}"
                    )
                for asset in list(a.collateral) + [a.debt]:
                    if asset not in p.assets:
                        raise ValueError(
                            f"agents.{a.id}: asset {asset!r} is not listed in protocols.{p.id}.assets "
                            f"({sorted(p.assets)})"
                        )
            if isinstance(a, VaultsSpec):
                if not isinstance(protocols.get(a.protocol), CdpSpec):
                    cdps = sorted(p.id for p in self.protocols if isinstance(p, CdpSpec))
                    raise ValueError(f"agents.{a.id}.protocol: {a.protocol!r} is not a cdp; allowed: {cdps}")
            if isinstance(a, TradersSpec) and not isinstance(protocols.get(a.protocol), PerpsSpec):
                dexes = sorted(p.id for p in self.protocols if isinstance(p, PerpsSpec))
                raise ValueError(f"agents.{a.id}.protocol: {a.protocol!r} is not a perps protocol; allowed: {dexes}")
            if isinstance(a, KeeperSpec):
                for pid in a.shared_with:
                    if not isinstance(protocols.get(pid), CdpSpec):
                        cdps = sorted(p.id for p in self.protocols if isinstance(p, CdpSpec))
                        raise ValueError(f"agents.{a.id}.shared_with: {pid!r} is not a cdp; allowed: {cdps}")
            if isinstance(a, LiquidatorSpec):
                for pid in a.shared_with:
                    if pid not in protocols:
                        raise ValueError(
                            f"agents.{a.id}.shared_with: unknown protocol {pid!r}; allowed: {sorted(protocols)}"
                        )
            if isinstance(a, OptionPopulationSpec) and not isinstance(protocols.get(a.protocol), OptionsSpec):
                venues_ = sorted(p.id for p in self.protocols if isinstance(p, OptionsSpec))
                raise ValueError(
                    f"agents.{a.id}.protocol: {a.protocol!r} is not an options protocol; allowed: {venues_}"
                )
            if isinstance(a, MultiVenueSpec):
                _check_multi_venue(a, protocols, assets)
            if isinstance(a, ArbitrageurSpec):
                for vid in a.venues:
                    if vid not in venues:
                        raise ValueError(f"agents.{a.id}.venues: unknown venue {vid!r}; allowed: {sorted(venues)}")
        return self

    @property
    def n_blocks(self) -> int:
        return int(round(self.run.duration / self.run.block_seconds))


def _check_multi_venue(a, protocols: dict, assets: list[str]) -> None:
    """A multi-venue population names one protocol of each kind, and its assets must be listed there."""
    for field, kind in (("lending", LendingSpec), ("perps", PerpsSpec), ("options", OptionsSpec)):
        pid = getattr(a, field)
        if pid is None:
            continue
        if not isinstance(protocols.get(pid), kind):
            allowed = sorted(p.id for p in protocols.values() if isinstance(p, kind))
            raise ValueError(
                f"agents.{a.id}.{field}: {pid!r} is not a {kind.model_fields['kind'].default} protocol; "
                f"allowed: {allowed}"
            )
    lend = protocols[a.lending]
    for asset in (a.asset, a.debt):
        if asset not in lend.assets:
            raise ValueError(
                f"agents.{a.id}: asset {asset!r} is not listed in protocols.{lend.id}.assets ({sorted(lend.assets)})"
            )
    if a.asset not in protocols[a.perps].market_assets():
        raise ValueError(
            f"agents.{a.id}.asset: {a.asset!r} is not a market of protocols.{a.perps} "
            f"({protocols[a.perps].market_assets()})"
        )
    if a.options is not None and a.asset not in protocols[a.options].oracles:
        raise ValueError(
            f"agents.{a.id}.asset: {a.asset!r} has no oracle on protocols.{a.options} "
            f"({sorted(protocols[a.options].oracles)})"
        )


def _unique(what: str, ids: list[str]) -> None:
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{what}: duplicate ids {dup}")
