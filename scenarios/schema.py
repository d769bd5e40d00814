"""The scenario file schema: pydantic models for every table of a scenario TOML.

Unknown keys are errors (extra="forbid"); numbers are strict (a boolean is not a number), finite and
bounded by a declared physical ceiling (protocols/bounds.py: 1e15 USD for amounts, prices and capital);
every bound is declared on its field so that an error names the key path and the allowed range;
cross-field checks (liquidation threshold above LTV, oracles that exist, venues whose tokens exist, times
inside the run, accounts that start solvent) run after the fields. Every property has a description with
its unit and, for a default, whether it is a protocol's published parameter (with its source) or a
modelling assumption. The JSON Schema is published with `defistress schema` and in `scenarios/schema.json`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Discriminator, Field, Tag, model_validator

from defistress.scenarios.schema_base import Distribution, ParamsOf, Strict, _validated
from defistress.scenarios.schema_books import BookSpec, LendingAssetExtras, LendingExtras, MixedBorrowersSpec
from defistress.scenarios.schema_compound import (
    BORROWABLE,
    AbsorberSpec,
    AnchoredOracleSpec,
    CollateralBuyerSpec,
    CometSpec,
    CompoundV2Spec,
    FundingFields,
    check_links,
)
from defistress.scenarios.schema_curve import (
    LlammaArbitrageurSpec,
    LlammaLiquidatorSpec,
    LlammaSpec,
    PegKeeperCallerSpec,
    PegKeeperSpec,
    StableSwapSpec,
)
from defistress.scenarios.schema_governance import GovernanceAction, check_governance_links
from defistress.scenarios.schema_oracles import (
    SOURCE_PATTERN,
    CompositeOracleSpec,
    FallbackOracleSpec,
    RoundsOracleSpec,
    check_oracle_links,
    oracle_tag,
)
from defistress.scenarios.schema_pm import MarginSpec, MultiVenueSpec, OptionPopulationSpec, OptionsSpec
from defistress.scenarios.schema_replay import GasReplaySpec, ReplaySpec, check_replay_links
from defistress.scenarios.schema_scorecard import PublishedOutcome
from defistress.scenarios.schema_uncertainty import UncertainInput, Value, check_uncertain
from defistress.scenarios.units import (
    MAX_ACCOUNTS,
    MAX_BLOCKS,
    MAX_GAS,
    MAX_GWEI,
    MAX_SEED,
    MAX_TOKENS,
    MAX_USD,
    MIN_PRICE_USD,
    Bool,
    Float,
    Int,
    Seconds,
    Share,
)

#: longest simulated run, seconds (90 days)
MAX_RUN_SECONDS = 90 * 86400.0
#: a run name: a slug that is safe as a folder name (no path separators, no leading dot)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
#: an id of a scenario object (oracle, venue, protocol, agent): a slug, as it appears in key paths
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


# --- run -------------------------------------------------------------------------------------------
class RunSpec(Strict):
    """Name, clock and seed of the run."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="run name, used in the default run folder runs/<name>-seed<N>: a slug of letters, digits, "
        "'.', '_' and '-' (at most 100 characters, no leading dot)",
    )
    description: str = Field("", max_length=500, description="one line shown by `defistress list` and the report")
    block_seconds: Float = Field(
        12.0,
        ge=0.1,
        le=3600,
        description="seconds per block, 0.1..3600 [published: Ethereum proof-of-stake slot time, 12 s]",
    )
    duration: Seconds = Field(
        86400.0,
        gt=0,
        le=MAX_RUN_SECONDS,
        description="simulated time, seconds or '24h'; at least one block, at most 90 days",
    )
    seed: Int = Field(
        0, ge=0, le=MAX_SEED, description="default seed when none is given on the command line (0..2^63-1)"
    )
    published: list[PublishedOutcome] = Field(
        default_factory=list, description="real-world outcomes a replay is scored against (scorecard metrics)"
    )
    assumed: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, description="inputs a replay assumes (not from data), shown with its scorecard"
    )
    smoke: dict[str, Value] = Field(
        default_factory=dict,
        description="overrides {key = value} of the reduced-size run `defistress replay --smoke` and the tests use",
    )
    check_conservation_every: Int = Field(
        0, ge=0, le=MAX_BLOCKS, description="blocks between ledger conservation checks (0: at the end only)"
    )

    @model_validator(mode="after")
    def _one_block(self):
        if self.duration < self.block_seconds:
            raise ValueError(
                f"run.duration: {self.duration:g} s must hold at least one block of run.block_seconds "
                f"({self.block_seconds:g} s)"
            )
        blocks = round(self.duration / self.block_seconds)
        if blocks > MAX_BLOCKS:
            raise ValueError(
                f"run.duration: {blocks:,} blocks of {self.block_seconds:g} s; allowed at most {MAX_BLOCKS:,} blocks "
                "(lengthen run.block_seconds or shorten run.duration)"
            )
        return self


# --- market ----------------------------------------------------------------------------------------
class JumpSpec(Strict):
    """Merton jumps: Poisson arrivals, log-normal jump sizes (mean and stdev of log(1+jump)) [assumption]."""

    intensity_per_year: Float = Field(ge=0, le=1000, description="expected number of jumps per year (1/year)")
    mean: Float = Field(ge=-2, le=2, description="mean of log(1 + jump), a log-return (unitless)")
    stdev: Float = Field(ge=0, le=2, description="standard deviation of log(1 + jump), a log-return (unitless)")


class AssetSpec(Strict):
    """A market asset: risky (price, volatility) or a stablecoin (peg)."""

    symbol: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="token symbol, e.g. 'ETH' (a key of the run)")
    price: Float | None = Field(
        None,
        ge=MIN_PRICE_USD,
        le=MAX_USD,
        description="initial reference price, USD per token (1e-9..1e15) [scenario input]",
    )
    volatility: Float = Field(
        0.0, ge=0, le=20, description="annualised volatility of the log price (0.7 = 70%/year) [assumption]"
    )
    drift: Float = Field(0.0, ge=-50, le=50, description="annualised drift of the log price (1/year) [assumption]")
    jumps: JumpSpec | None = Field(None, description="Merton jumps on top of the diffusion (none: no jumps)")
    peg: Float | None = Field(
        None,
        ge=MIN_PRICE_USD,
        le=MAX_USD,
        description="peg in USD per token: makes this asset a stablecoin (1.0 for USDC, DAI)",
    )
    peg_reversion_per_hour: Float = Field(
        2.0, ge=0, le=1000, description="Ornstein-Uhlenbeck mean-reversion speed of the peg, 1/hour [assumption]"
    )
    peg_volatility: Float = Field(
        0.002, ge=0, le=5, description="annualised volatility of the peg deviation (unitless) [assumption]"
    )

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
    """Square-root impact of net selling on the reference price, recovering exponentially (Toth et al. 2011)."""

    usd_for_1pct: Float = Field(
        gt=0, le=MAX_USD, description="unrecovered net USD sold that moves the price by 1%, USD [assumption]"
    )
    recovery_half_life: Seconds = Field(
        1800.0, gt=0, description="half-life of the impact, seconds or e.g. '30m' [assumption]"
    )


class MarketSpec(Strict):
    """Reference (off-chain) prices: the assets, their correlation, market depth and an optional replay."""

    assets: list[AssetSpec] = Field(min_length=1, description="every token of the run, risky or stablecoin")
    correlation: list[list[Annotated[Float, Field(ge=-1, le=1)]]] | None = Field(
        None, description="correlation matrix of the risky assets, in the order of market.assets (unitless)"
    )
    depth: dict[str, DepthSpec] = Field(
        default_factory=dict, description="asset -> price impact of net selling (assets not listed: no impact)"
    )
    replay: ReplaySpec | None = Field(None, description="replay real prices instead of simulating them")
    external_fee: Float = Field(
        0.0005,
        ge=0,
        lt=0.1,
        description="taker fee on the outside (CEX) market, fraction of notional [assumption: 5 bps]",
    )

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
        replayed = set(self.replay.replayed_assets()) if self.replay is not None else set()
        for a in self.assets:
            if a.price is None and a.peg is None and a.symbol not in replayed:
                raise ValueError(
                    f"market.assets.{a.symbol}: give 'price' (risky), 'peg' (stablecoin), "
                    "or replay it in market.replay.symbols"
                )
        for sym in self.depth:
            if sym not in symbols:
                raise ValueError(f"market.depth.{sym}: unknown asset; allowed: {symbols}")
        return self

    def asset(self, symbol: str) -> AssetSpec:
        return next(a for a in self.assets if a.symbol == symbol)


class ShockSpec(Strict):
    """A scheduled shock: a jump at `at`, and over [at, until] a drift, a volatility multiplier, a
    correlation override, a stablecoin depeg target or extra gas demand. Times lie inside the run."""

    at: Seconds = Field(description="when the shock starts, seconds from the run's start or e.g. '1h'")
    until: Seconds | None = Field(None, description="end of the shock's window, seconds or e.g. '5h' (after `at`)")
    asset: str | None = Field(None, description="the shocked asset (needed by jump, drift_to, volatility, depeg)")
    jump: Float | None = Field(None, gt=-1, le=10, description="instant return at `at`, e.g. -0.15 for -15%")
    drift_to: Float | None = Field(
        None, gt=-1, le=10, description="total return added over the window, e.g. -0.30 for -30%"
    )
    volatility_multiplier: Float | None = Field(
        None, gt=0, le=100, description="volatility x this over the window (unitless)"
    )
    correlation: Float | None = Field(
        None, ge=-1, le=1, description="all pairwise correlations of risky assets in the window (unitless)"
    )
    depeg_to: Float | None = Field(
        None,
        ge=MIN_PRICE_USD,
        le=MAX_USD,
        description="stablecoin price the peg is pulled to in the window, USD per token",
    )
    gas_demand_multiplier: Float | None = Field(
        None, gt=0, le=100, description="background gas demand x this over the window (unitless)"
    )

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
    """An oracle that stops publishing (stale) or is floored at a minimum answer from a time on."""

    mode: Literal["stale", "floor", "broken"] = Field(
        description="stale: no more updates; floor: answers never go below floor_price (Chainlink minAnswer); "
        "broken: no more updates and the latest response is invalid (a fallback oracle switches away)"
    )
    at: Seconds = Field(0.0, description="when the failure starts, seconds from the run's start or e.g. '2h'")
    floor_price: Float | None = Field(
        None, ge=MIN_PRICE_USD, le=MAX_USD, description="minAnswer in USD per token, for mode 'floor'"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.mode == "floor" and self.floor_price is None:
            raise ValueError("oracle failure mode 'floor' needs 'floor_price'")
        return self


class OracleSpec(Strict):
    """push: Chainlink-style (deviation threshold + heartbeat); delayed: Maker OSM (price of one hop
    ago); fixed: a constant."""

    id: str = Field(pattern=ID_PATTERN, description="oracle id, named by protocols' `oracles` tables")
    kind: Literal["push", "delayed", "fixed"] = Field(
        "push", description="push (Chainlink deviation + heartbeat), delayed (Maker OSM) or fixed (a constant)"
    )
    asset: str = Field(description="the asset it prices (a market asset)")
    source: str = Field(
        "reference",
        pattern=SOURCE_PATTERN,
        description="'reference', 'pool:VENUE' (spot), 'twap:VENUE', 'feed:FEED' (a named replayed series, e.g. one "
        "venue's prices) or 'oracle:ID'",
    )
    deviation: Float = Field(
        0.005,
        ge=0,
        le=1,
        description="publish when the move exceeds this fraction [published: Chainlink ETH/USD 0.5%]",
    )
    heartbeat: Seconds = Field(
        3600.0,
        gt=0,
        description="publish at least this often, seconds [published: Chainlink ETH/USD heartbeat 1 h]",
    )
    delay: Seconds = Field(
        3600.0, gt=0, description="OSM hop for kind 'delayed', seconds [published: Maker OSM hop 1 h]"
    )
    price: Float | None = Field(
        None, ge=MIN_PRICE_USD, le=MAX_USD, description="constant price for kind 'fixed', USD per token"
    )
    failure: OracleFailure | None = Field(None, description="a failure from a time on (none: works throughout)")
    max_age: Seconds | None = Field(
        None, gt=0, description="staleness threshold, seconds: the run logs when the answer gets older (none: off)"
    )


#: an oracle list item: push / delayed / fixed, or a kind of schema_oracles (rounds, composite, fallback, anchored)
OracleItem = Annotated[
    Annotated[OracleSpec, Tag("feed")]
    | Annotated[RoundsOracleSpec, Tag("rounds")]
    | Annotated[CompositeOracleSpec, Tag("composite")]
    | Annotated[FallbackOracleSpec, Tag("fallback")]
    | Annotated[AnchoredOracleSpec, Tag("anchored")],
    Discriminator(oracle_tag),
]


#: an oracle list item: push / delayed / fixed, or Compound's anchored view (schema_compound)


class VenueSpec(Strict):
    """A constant-product AMM pool (Uniswap v2) that liquidators and arbitrageurs trade in."""

    id: str = Field(pattern=ID_PATTERN, description="venue id, named by liquidates_into and oracle sources")
    kind: Literal["constant_product"] = Field("constant_product", description="x*y=k pool (Uniswap v2)")
    pair: tuple[str, str] = Field(description="the two market assets of the pool, e.g. ['ETH', 'USDC']")
    depth_usd: Float = Field(
        gt=0, le=MAX_USD, description="total value of both reserves at the start, USD [assumption]"
    )
    fee: Float = Field(0.003, ge=0, lt=0.1, description="swap fee, fraction of the input [published: Uniswap v2 0.3%]")


def _venue_kind(v) -> str:
    return v.get("kind", "constant_product") if isinstance(v, dict) else getattr(v, "kind", "constant_product")


AnyVenueSpec = Annotated[
    Annotated[VenueSpec, Tag("constant_product")] | Annotated[StableSwapSpec, Tag("stableswap")],
    Discriminator(_venue_kind),
]


# --- protocols ---------------------------------------------------------------------------------------
class InterestSpec(Strict):
    """Kinked utilisation model (Aave v3 DefaultReserveInterestRateStrategy), annual rates. For reference, Aave v3
    Core WETH in 2025: base 0, slope1 2.7%, slope2 80%, optimal 90% (governance.aave.com, ARFC Prime ETH LTV)."""

    base: Float = Field(0.0, ge=0, le=10, description="borrow rate at zero utilisation, per year [published: 0]")
    slope1: Float = Field(
        0.04, ge=0, le=10, description="rate added up to the optimal utilisation, per year [assumption]"
    )
    slope2: Float = Field(
        0.60, ge=0, le=100, description="rate added from optimal to full utilisation, per year [assumption]"
    )
    optimal_utilisation: Float = Field(
        0.90,
        gt=0,
        lt=1,
        description="kink of the curve, fraction [published: Aave v3 WETH 90% since ARFC 2024-01]",
    )


class LendingAssetSpec(LendingAssetExtras):
    """Per-asset risk parameters (Aave v3 reserve config). Defaults: the initial Aave v3 Ethereum WETH set
    (Gauntlet, governance.aave.com/t/10238/22; docs/margin-methods.md 5.1)."""

    ltv: Float = Field(
        0.825, ge=0, lt=1, description="max loan-to-value, fraction [published: initial Aave v3 WETH 82.5%]"
    )
    liquidation_threshold: Float = Field(
        0.86, gt=0, lt=1, description="health factor weight, fraction [published: initial Aave v3 WETH 86%]"
    )
    liquidation_bonus: Float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="liquidator's bonus, fraction of the debt repaid; 0.05 = 10500 in Aave's bps notation "
        "[published: Aave v3 WETH 5%]",
    )
    protocol_fee: Float = Field(
        0.10,
        ge=0,
        le=1,
        description="liquidationProtocolFee: share of the bonus kept by the protocol [published: Aave v3 10%]",
    )
    reserve_factor: Float = Field(
        0.15, ge=0, le=1, description="share of interest kept by the protocol [published: Aave v3 WETH 15%]"
    )
    interest: InterestSpec = Field(InterestSpec(), description="the borrow-rate curve")
    supply_usd: Float = Field(
        0.0, ge=0, le=MAX_USD, description="lenders' deposits at the start, USD (0: what borrowers need)"
    )

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
    """An Aave-v3-like lending market."""

    id: str = Field(pattern=ID_PATTERN, description="protocol id")
    kind: Literal["lending"] = Field("lending", description="an Aave-v3-like lending market")
    oracles: dict[str, str] = Field(description="asset -> oracle id")
    liquidates_into: list[str] = Field(default_factory=list, description="venue ids liquidators sell into")
    close_factor_rule: Literal["aave-v3.0", "aave-v3.3"] = Field(
        "aave-v3.3",
        description="aave-v3.0: 50% per reserve above HF 0.95; aave-v3.3: 100% unless both sides >= $2,000 "
        "[published: aave-v3-core / aave-v3-origin LiquidationLogic]",
    )
    assets: dict[str, LendingAssetSpec] = Field(min_length=1, description="asset -> its reserve parameters")

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

    id: str = Field(pattern=ID_PATTERN, description="protocol id")
    kind: Literal["cdp"] = Field("cdp", description="a Maker-style collateralised debt position engine")
    oracles: dict[str, str] = Field(description="collateral asset -> oracle id (Maker: the OSM)")
    preset: Literal["maker-liq2-eth-a", "maker-2020-eth-a", "none"] = Field(
        "maker-liq2-eth-a",
        description="published parameter set: Maker ETH-A under Liquidations 2.0, ETH-A of March 2020 (flip), "
        "or none (CdpParams defaults)",
    )
    params: Annotated[dict, ParamsOf("defistress.protocols.cdp:CdpParams", partial=True)] = Field(
        default_factory=dict, description="fields of protocols.cdp.CdpParams overriding the preset"
    )
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

    id: str = Field(pattern=ID_PATTERN, description="protocol id")
    kind: Literal["perps"] = Field("perps", description="a dYdX-v4-like perpetual futures DEX")
    oracles: dict[str, str] = Field(description="market asset -> oracle id (the mark price)")
    quote: str = Field("USDC", description="collateral and settlement token, valued at 1 USD")
    params: Annotated[dict, ParamsOf("defistress.protocols.perps:PerpDexParams")] = Field(
        default_factory=dict, description="fields of protocols.perps.PerpDexParams (markets, liquidation config)"
    )
    liquidates_into: list[str] = Field(
        default_factory=list, description="venue ids its liquidators sell into (edges of the network graph)"
    )

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

ProtocolSpec = Annotated[
    LendingSpec | CdpSpec | PerpsSpec | OptionsSpec | LlammaSpec | PegKeeperSpec | CompoundV2Spec | CometSpec,
    Field(discriminator="kind"),
]

_PRIORITY_GWEI = "tip per gas unit, gwei"


class BorrowersSpec(Strict):
    """A vectorised population of borrowers on one lending market (behaviour: modelling assumptions)."""

    kind: Literal["borrowers"] = Field("borrowers", description="a population of lending-market borrowers")
    id: str = Field("borrowers", pattern=ID_PATTERN, description="agent id (ledger holder of the population)")
    protocol: str = Field(description="id of the lending protocol they borrow on")
    accounts: Int = Field(gt=0, le=MAX_ACCOUNTS, description="number of accounts (1..5,000,000)")
    collateral: dict[str, Share] = Field(description="asset -> share of accounts using it as collateral (sum 1)")
    debt: str = Field(description="the asset borrowed (a stablecoin of the market)")
    size_usd: Distribution = Field(
        default=Distribution(distribution="lognormal", median=20_000, sigma=1.2, min=100, max=50_000_000),
        description="collateral value per account at the start, USD [assumption]",
    )
    health_factor: Distribution = Field(
        default=Distribution(distribution="lognormal", median=1.6, sigma=0.25, min=1.02, max=10),
        description="health factor per account at the start (> 1: accounts start solvent) [assumption]",
    )
    attentive_share: Float = Field(
        0.3, ge=0, le=1, description="share of accounts that defend their health factor [assumption]"
    )
    alarm_health_factor: Distribution = Field(
        default=Distribution(distribution="uniform", low=1.05, high=1.25),
        description="health factor below which an attentive account repays debt [assumption]",
    )
    reaction_delay: Seconds = Field(
        900.0, ge=0, description="seconds below the alarm before an account acts, or e.g. '15m' [assumption]"
    )
    wallet_share: Float = Field(
        0.3, ge=0, le=10, description="spare stablecoins per account, as a share of its debt [assumption]"
    )
    repay_gas: Int = Field(150_000, gt=0, le=MAX_GAS, description="gas units per account in a batched repay")
    max_users_per_block: Int = Field(
        150, ge=1, le=MAX_ACCOUNTS, description="attentive users who can act in one block [assumption]"
    )
    users_per_tx: Int = Field(
        50, ge=1, le=MAX_ACCOUNTS, description="users (a count) batched into one simulated transaction [assumption]"
    )
    gas_eth_per_account: Float = Field(
        0.05, ge=0, le=MAX_TOKENS, description="ETH each account holds for gas, tokens [assumption]"
    )
    priority_fee_gwei: Float = Field(2.0, ge=0, le=MAX_GWEI, description=_PRIORITY_GWEI)

    @model_validator(mode="after")
    def _check(self):
        total = sum(self.collateral.values())
        if not np.isclose(total, 1.0) or min(self.collateral.values(), default=0) < 0:
            raise ValueError(f"agents.{self.id}.collateral: shares must be >= 0 and sum to 1, got {total}")
        lowest = self.health_factor.lowest()
        if lowest < 1.0:
            raise ValueError(
                f"agents.{self.id}.health_factor: draws can reach {lowest:g}; accounts must start solvent "
                "(Aave borrows need health factor >= 1): set 'min' (or 'low'/'value') >= 1"
            )
        return self


class LiquidatorSpec(FundingFields):
    """Liquidation bots of lending markets and perp DEXes (competition and costs: modelling assumptions)."""

    kind: Literal["liquidator"] = Field("liquidator", description="liquidation bots")
    id: str = Field("liquidator", pattern=ID_PATTERN, description="agent id")
    count: Int = Field(1, ge=1, le=1000, description="number of competing liquidators")
    capital_usd: Float = Field(gt=0, le=MAX_USD, description="stablecoin capital per liquidator, USD")
    gas_budget_eth: Float = Field(50.0, gt=0, le=MAX_TOKENS, description="ETH per liquidator for gas, tokens")
    min_profit_usd: Float = Field(
        50.0, ge=0, le=MAX_USD, description="skip liquidations expected to earn less after gas, USD [assumption]"
    )
    latency_blocks: Int = Field(
        1, ge=0, le=10_000, description="blocks between seeing an opportunity and acting [assumption]"
    )
    max_tx_per_block: Int = Field(5, ge=1, le=1000, description="liquidations one bot sends per block")
    profit_share_to_gas: Float = Field(
        0.3, ge=0, le=1, description="share of expected profit bid as priority fee [assumption]"
    )
    max_priority_fee_gwei: Float = Field(500.0, ge=0, le=MAX_GWEI, description="highest tip, gwei per gas unit")
    shared_with: list[str] = Field(default_factory=list, description="protocol ids this liquidator serves")
    private_orderflow: Bool = Field(
        True,
        description="send through a private relay: failed attempts pay no gas "
        "(Flashbots, since 2021); false reproduces the public gas wars of 2020",
    )


class ArbitrageurSpec(Strict):
    """An arbitrageur that trades AMM pools back to the reference price."""

    kind: Literal["arbitrageur"] = Field("arbitrageur", description="a pool arbitrageur")
    id: str = Field("arbitrageur", pattern=ID_PATTERN, description="agent id")
    venues: list[str] = Field(min_length=1, description="venue ids it arbitrages")
    capital_usd: Float = Field(gt=0, le=MAX_USD, description="capital, USD")
    min_profit_usd: Float = Field(
        20.0, ge=0, le=MAX_USD, description="skip trades expected to earn less after gas, USD [assumption]"
    )
    gas_budget_eth: Float = Field(50.0, gt=0, le=MAX_TOKENS, description="ETH for gas, tokens")
    priority_fee_gwei: Float = Field(3.0, ge=0, le=MAX_GWEI, description=_PRIORITY_GWEI)
    max_trade_share: Float = Field(
        0.25, gt=0, le=1, description="largest trade as a share of capital per block [assumption]"
    )


class VaultsSpec(Strict):
    """A vectorised population of CDP vault owners (behaviour: modelling assumptions)."""

    kind: Literal["vaults"] = Field("vaults", description="a population of CDP vault owners")
    id: str = Field("vaults", pattern=ID_PATTERN, description="agent id (ledger holder of the population)")
    protocol: str = Field(description="id of the cdp protocol")
    accounts: Int = Field(gt=0, le=MAX_ACCOUNTS, description="number of vaults (1..5,000,000)")
    size_usd: Distribution = Field(
        default=Distribution(distribution="lognormal", median=50_000, sigma=1.3, min=1_000, max=100_000_000),
        description="collateral value per vault at the start, USD [assumption]",
    )
    collateral_ratio: Distribution = Field(
        default=Distribution(distribution="lognormal", median=2.6, sigma=0.3, min=1.55, max=20),
        description="collateral value / debt per vault at the start (above the cdp's liquidation_ratio) [assumption]",
    )
    attentive_share: Float = Field(0.3, ge=0, le=1, description="share of vaults whose owners defend them [assumption]")
    alarm_ratio: Distribution = Field(
        default=Distribution(distribution="uniform", low=1.1, high=1.4),
        description="collateral ratio / liquidation ratio below which an owner repays [assumption]",
    )
    reaction_delay: Seconds = Field(
        1800.0, ge=0, description="seconds below the alarm before an owner acts, or e.g. '30m' [assumption]"
    )
    wallet_share: Float = Field(
        0.3, ge=0, le=10, description="share of drawn stablecoin kept for repayments [assumption]"
    )
    repay_gas: Int = Field(150_000, gt=0, le=MAX_GAS, description="gas units per vault in a batched repay")
    max_users_per_block: Int = Field(
        150, ge=1, le=MAX_ACCOUNTS, description="owners who can act in one block [assumption]"
    )
    users_per_tx: Int = Field(
        50, ge=1, le=MAX_ACCOUNTS, description="owners (a count) batched into one simulated transaction [assumption]"
    )
    priority_fee_gwei: Float = Field(2.0, ge=0, le=MAX_GWEI, description=_PRIORITY_GWEI)
    gas_eth_per_account: Float = Field(
        0.05, ge=0, le=MAX_TOKENS, description="ETH each owner holds for gas, tokens [assumption]"
    )


class KeeperSpec(Strict):
    """Keepers of CDP auctions; `params` sets fields of agents.keeper.KeeperParams."""

    kind: Literal["keeper"] = Field("keeper", description="CDP auction keepers")
    id: str = Field("keeper", pattern=ID_PATTERN, description="agent id")
    count: Int = Field(1, ge=1, le=1000, description="number of competing keepers")
    capital_usd: Float = Field(gt=0, le=MAX_USD, description="stablecoin capital per keeper, USD")
    gas_budget_eth: Float = Field(50.0, gt=0, le=MAX_TOKENS, description="ETH per keeper for gas, tokens")
    shared_with: list[str] = Field(default_factory=list, description="CDP ids the keeper watches (default: all)")
    params: Annotated[dict, ParamsOf("defistress.agents.keeper:KeeperParams", partial=True)] = Field(
        default_factory=dict, description="fields of agents.keeper.KeeperParams (behaviour and gas costs)"
    )

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

    kind: Literal["traders"] = Field("traders", description="a population of perp traders")
    id: str = Field("traders", pattern=ID_PATTERN, description="agent id")
    protocol: str = Field(description="id of the perps protocol")
    params: Annotated[dict, ParamsOf("defistress.agents.traders:TraderParams", partial=True)] = Field(
        default_factory=dict,
        description="fields of agents.traders.TraderParams (accounts and market_weights are required)",
    )

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
    | LlammaArbitrageurSpec
    | LlammaLiquidatorSpec
    | PegKeeperCallerSpec
    | AbsorberSpec
    | CollateralBuyerSpec
    | BookSpec
    | MixedBorrowersSpec,
    Field(discriminator="kind"),
]


# --- gas -------------------------------------------------------------------------------------------
class GasSpec(Strict):
    """EIP-1559 block market: base fee moves by up to 1/8 per block toward a half-full target."""

    block_gas_limit: Int = Field(
        30_000_000, gt=0, le=MAX_GAS, description="gas units per block [published: Ethereum 30M (2021-2024)]"
    )
    base_fee_gwei: Float = Field(20.0, gt=0, le=MAX_GWEI, description="base fee at the start, gwei per gas unit")
    background_demand: Float = Field(
        0.5, ge=0, le=2, description="other users' gas demand as a share of the limit (0.5: the EIP-1559 target)"
    )
    background_priority_gwei: Float = Field(
        1.5, ge=0, le=MAX_GWEI, description="tip other users pay, gwei; lower tips queue behind them [assumption]"
    )
    background_price_elasticity: Float = Field(
        1.0,
        ge=0,
        le=10,
        description="other users' demand falls as (base fee / initial base fee)^-elasticity (unitless) [assumption]",
    )
    liquidation_gas: Int = Field(
        500_000, gt=0, le=MAX_GAS, description="gas units of an Aave v3 liquidationCall + swap [assumption]"
    )
    swap_gas: Int = Field(150_000, gt=0, le=MAX_GAS, description="gas units of an AMM swap (Uniswap v2 ~100-150k)")
    eth_price_usd: Float = Field(
        2000.0,
        ge=MIN_PRICE_USD,
        le=MAX_USD,
        description="USD per ETH for gas costs, used only when ETH is not a market asset",
    )
    replay: GasReplaySpec | None = Field(None, description="replay a real gas-price series instead")


# --- the scenario ----------------------------------------------------------------------------------
class Scenario(Strict):
    """A whole scenario file: the run, the market, shocks, oracles, venues, protocols, agents and gas."""

    run: RunSpec = Field(description="name, clock and seed")
    market: MarketSpec = Field(description="reference prices")
    shocks: list[ShockSpec] = Field(default_factory=list, description="scheduled shocks, inside the run")
    oracles: list[OracleItem] = Field(
        default_factory=list,
        description="price feeds protocols read (push, delayed, fixed; rounds, composite, fallback, anchored)",
    )
    venues: list[AnyVenueSpec] = Field(
        default_factory=list, description="AMM pools: constant-product (default) or Curve stableswap"
    )
    protocols: list[ProtocolSpec] = Field(
        default_factory=list,
        description="lending markets (Aave-like, Compound v2, Comet), CDPs, perp DEXes, options venues and crvUSD "
        "LLAMMA markets",
    )
    agents: list[AgentSpec] = Field(default_factory=list, description="populations, liquidators, keepers, ...")
    gas: GasSpec = Field(GasSpec(), description="the EIP-1559 gas market")
    margin: MarginSpec | None = Field(None, description="margin regime of multi-venue accounts (default: silo)")
    uncertain: list[UncertainInput] = Field(
        default_factory=list, description="inputs a replay does not know, with their ranges (schema_uncertainty)"
    )
    governance: list[GovernanceAction] = Field(
        default_factory=list, description="scheduled governance and operations actions (set, freeze, pause, ...)"
    )

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
        _inside_run(self)
        check_replay_links(self)  # replayed series, quotes and feeds (schema_replay)
        check_uncertain(self.uncertain)
        _check_published(self)
        check_governance_links(self)  # scheduled actions (schema_governance)
        check_oracle_links(self)  # oracle sources, feeds, composites, fallbacks (schema_oracles)
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
            if not isinstance(o, OracleSpec):
                continue  # the kinds of schema_oracles: check_oracle_links
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
                lend = protocols.get(a.protocol)
                if not isinstance(lend, (LendingSpec, *BORROWABLE)):
                    lends = sorted(q.id for q in self.protocols if isinstance(q, (LendingSpec, *BORROWABLE)))
                    raise ValueError(
                        f"agents.{a.id}.protocol: {a.protocol!r} is not a lending market; allowed: {lends}"
                    )
                for asset in list(a.collateral) + [a.debt]:
                    if asset not in lend.assets:
                        raise ValueError(
                            f"agents.{a.id}: asset {asset!r} is not listed in protocols.{lend.id}.assets "
                            f"({sorted(lend.assets)})"
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
        check_links(self)  # compound-v2, comet, anchored oracles, absorbers (schema_compound)
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


def _check_published(s: Scenario) -> None:
    """A published figure names a protocol and an asset of the scenario."""
    protocols = [p.id for p in s.protocols]
    assets = [a.symbol for a in s.market.assets]
    for i, p in enumerate(s.run.published):
        if p.protocol is not None and p.protocol not in protocols:
            raise ValueError(f"run.published.{i}.protocol: unknown protocol {p.protocol!r}; allowed: {protocols}")
        if p.asset is not None and p.asset not in assets:
            raise ValueError(f"run.published.{i}.asset: unknown asset {p.asset!r}; allowed: {assets}")


def _unique(what: str, ids: list[str]) -> None:
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{what}: duplicate ids {dup}")


def _inside_run(s: Scenario) -> None:
    """Shock starts and failure times lie inside the run [0, duration]: a later time would silently do nothing. A window
    may end after the run (`until` > duration): its drift is spread over the whole window, so a run cut short
    inside a window sees the part of the move that has happened by then."""
    end = s.run.duration
    for i, sh in enumerate(s.shocks):
        if sh.at > end:
            raise ValueError(f"shocks.{i}.at: {sh.at:g} s is after the end of the run (run.duration = {end:g} s)")
    for o in s.oracles:
        failure = getattr(o, "failure", None)  # anchored oracles have no failure mode
        if failure is not None and failure.at > end:
            raise ValueError(
                f"oracles.{o.id}.failure.at: {failure.at:g} s is after the end of the run (run.duration = {end:g} s)"
            )
