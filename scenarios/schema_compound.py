"""Scenario tables for Compound v2 and v3 (Comet), the Open Price Feed's anchored oracle, Comet's absorbers
and collateral buyers, and the capital source of liquidators (own capital, flash loans or both).

Imported by scenarios/schema.py, which owns the unions of protocol, oracle and agent specs and calls
`check_links` from its cross-table validation. Defaults are cited where they come from a deployment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from defistress.protocols.bounds import Bool, Float, Int
from defistress.scenarios.schema_base import Strict
from defistress.scenarios.units import MAX_TOKENS, Seconds

#: where an oracle may read a price: the reference, a pool's spot or TWAP, a replayed feed (market.replay.feeds,
#: e.g. one venue's series) or another oracle listed before it (scenarios/schema_oracles.py)
SOURCE_PATTERN = r"^(reference|pool:[^:]+|twap:[^:]+|feed:[^:]+|oracle:[^:]+)$"


# --- the capital source of liquidators and collateral buyers -----------------------------------------------
class FundingFields(Strict):
    """Where an agent's repayments come from: its own capital, a flash loan in the same transaction (no
    capital limit, a fee), or its capital first and a flash loan for the rest."""

    funding: Literal["capital", "flash-loan", "both"] = Field(
        "capital", description="'capital' (own balance), 'flash-loan' (borrow each repayment in the same tx), 'both'"
    )
    flash_fee: Float = Field(
        0.0005,
        ge=0,
        le=0.01,
        description="flash-loan fee, fraction of the amount (Aave v3: 0.0005, Aave v2: 0.0009, Balancer: 0)",
    )
    flash_lender: str = Field(
        "aave-v3",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="name of the flash lender; its ledger holder is 'flash:NAME'",
    )


# --- Compound v2 ------------------------------------------------------------------------------------------
class JumpRateSpec(Strict):
    """BaseJumpRateModelV2, annual figures: the rate at the kink is base + multiplier; above it the jump
    multiplier applies to utilisation beyond the kink."""

    base_rate_per_year: Float = Field(0.0, ge=0, le=10, description="annual borrow rate at zero utilisation")
    multiplier_per_year: Float = Field(0.05, ge=0, le=10, description="annual rate added between 0 and the kink")
    jump_multiplier_per_year: Float = Field(
        1.09, ge=0, le=100, description="annual rate per unit utilisation past the kink"
    )
    kink: Float = Field(0.8, gt=0, le=1, description="utilisation where the jump starts (fraction)")


class CompoundMarketSpec(Strict):
    """One cToken market (Comptroller.markets and the cToken's settings). Defaults: a 2020 stablecoin market."""

    collateral_factor: Float = Field(
        0.75, ge=0, le=0.9, description="share of the collateral's value that backs borrows (max 0.9, Comptroller)"
    )
    reserve_factor: Float = Field(0.1, ge=0, lt=1, description="share of interest kept as reserves")
    initial_exchange_rate: Float = Field(
        0.02, gt=0, le=1e6, description="underlying tokens per cToken at the first mint (0.02 for 2019-20 cTokens)"
    )
    interest: JumpRateSpec = Field(JumpRateSpec(), description="the market's JumpRateModelV2, annual figures")
    supply_usd: Float = Field(
        0.0, ge=0, le=1e12, description="passive suppliers' deposits at the start, USD (0: sized to the book)"
    )
    liquidation_incentive: Float | None = Field(
        None,
        ge=1.0,
        le=1.5,
        description="seized value / repaid value when this market's cTokens are seized; None: the protocol's "
        "(Compound v2 has one Comptroller-wide incentive, some forks set it per market)",
    )


class CompoundV2Spec(Strict):
    """Compound v2: a Comptroller over cToken markets, the close factor and liquidation incentive of the
    Comptroller, and the share of seized cTokens kept as reserves (protocolSeizeShare, since 2021)."""

    id: str = Field(min_length=1, description="protocol id")
    kind: Literal["compound-v2"] = Field("compound-v2", description="protocol kind")
    oracles: dict[str, str] = Field(description="asset -> oracle id (the 2020 view: an 'anchored' oracle)")
    liquidates_into: list[str] = Field(default_factory=list, description="venue ids liquidators sell into")
    close_factor: Float = Field(0.5, ge=0.05, le=0.9, description="share of one borrow repayable per liquidation")
    liquidation_incentive: Float = Field(
        1.08, ge=1.0, le=1.5, description="seized value / repaid value (1.08 = 8% incentive)"
    )
    protocol_seize_share: Float = Field(
        0.0, ge=0, lt=1, description="share of seized cTokens kept as reserves (0 in 2020; 0.028 since 2021)"
    )
    assets: dict[str, CompoundMarketSpec] = Field(min_length=1, description="cToken markets by underlying symbol")

    @model_validator(mode="after")
    def _check(self):
        for a in self.assets:
            if a not in self.oracles:
                raise ValueError(f"protocols.{self.id}.oracles: market {a} has no oracle (has: {sorted(self.oracles)})")
        return self

    def issued_assets(self) -> list[str]:
        return []


# --- Compound v3 (Comet) ------------------------------------------------------------------------------------
class CometAssetSpec(Strict):
    """One Comet collateral asset (CometConfiguration.AssetConfig). Defaults: WETH on cUSDCv3 at launch."""

    borrow_collateral_factor: Float = Field(0.825, ge=0, lt=1, description="borrowCollateralFactor (fraction)")
    liquidate_collateral_factor: Float = Field(0.895, gt=0, le=1, description="liquidateCollateralFactor (fraction)")
    liquidation_factor: Float = Field(
        0.95, ge=0, le=1, description="share of the collateral's value credited to the account when absorbed"
    )
    supply_cap: Float | None = Field(
        None, gt=0, le=MAX_TOKENS, description="most tokens the protocol accepts (None: no cap)"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.borrow_collateral_factor >= self.liquidate_collateral_factor:
            raise ValueError(
                f"borrow_collateral_factor ({self.borrow_collateral_factor}) must be below "
                f"liquidate_collateral_factor ({self.liquidate_collateral_factor}) (Comet BorrowCFTooLarge)"
            )
        return self


class CometRatesSpec(Strict):
    """Comet's kinked rate curves, annual. Defaults: cUSDCv3 on Ethereum at launch."""

    supply_kink: Float = Field(0.8, gt=0, le=1, description="utilisation of the supply curve's kink")
    supply_base: Float = Field(0.0, ge=0, le=10, description="annual supply rate at zero utilisation")
    supply_slope_low: Float = Field(
        0.0325, ge=0, le=10, description="annual supply rate per unit utilisation below the kink"
    )
    supply_slope_high: Float = Field(
        0.4, ge=0, le=100, description="annual supply rate per unit utilisation above the kink"
    )
    borrow_kink: Float = Field(0.8, gt=0, le=1, description="utilisation of the borrow curve's kink")
    borrow_base: Float = Field(0.015, ge=0, le=10, description="annual borrow rate at zero utilisation")
    borrow_slope_low: Float = Field(
        0.035, ge=0, le=10, description="annual borrow rate per unit utilisation below the kink"
    )
    borrow_slope_high: Float = Field(
        0.25, ge=0, le=100, description="annual borrow rate per unit utilisation above the kink"
    )


class CometSpec(Strict):
    """A Compound III market: one borrowable base asset and collateral assets. Defaults: cUSDCv3 at launch."""

    id: str = Field(min_length=1, description="protocol id")
    kind: Literal["comet"] = Field("comet", description="protocol kind")
    base: str = Field(description="the borrowable base asset, e.g. 'USDC'")
    oracles: dict[str, str] = Field(description="asset -> oracle id, for the base and every collateral")
    liquidates_into: list[str] = Field(default_factory=list, description="venue ids collateral buyers sell into")
    store_front_price_factor: Float = Field(
        0.5, ge=0, le=1, description="share of (1 - liquidationFactor) given to collateral buyers as a discount"
    )
    target_reserves: Float = Field(
        5e6, ge=0, le=MAX_TOKENS, description="base reserves above which collateral is not sold, base tokens"
    )
    base_borrow_min: Float = Field(100.0, ge=0, le=MAX_TOKENS, description="smallest borrow, base tokens")
    base_supply_usd: Float = Field(
        0.0, ge=0, le=1e12, description="suppliers' base deposits at the start, USD (0: sized to the book)"
    )
    reserves_usd: Float = Field(0.0, ge=0, le=1e12, description="base reserves at the start, USD")
    rates: CometRatesSpec = Field(CometRatesSpec(), description="kinked supply and borrow curves, annual figures")
    collateral: dict[str, CometAssetSpec] = Field(
        min_length=1, max_length=12, description="collateral assets by symbol (Comet.sol packs at most 12)"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.base in self.collateral:
            raise ValueError(f"protocols.{self.id}.collateral: the base {self.base!r} cannot also be a collateral")
        for a in [self.base, *self.collateral]:
            if a not in self.oracles:
                raise ValueError(f"protocols.{self.id}.oracles: {a} has no oracle (has: {sorted(self.oracles)})")
        return self

    def supply_usd_of(self, asset: str) -> float:
        """Suppliers' deposit of `asset` at the start, USD (only the base is supplied)."""
        return self.base_supply_usd if asset == self.base else 0.0

    @property
    def assets(self) -> dict[str, CometAssetSpec | None]:
        """Every asset of the market: the base (None) and the collaterals."""
        return {self.base: None, **self.collateral}

    def collateral_assets(self) -> list[str]:
        return list(self.collateral)

    def lent_assets(self) -> list[str]:
        return [self.base]

    def issued_assets(self) -> list[str]:
        return []


# --- the Open Price Feed's anchored view --------------------------------------------------------------------
class ReporterPointSpec(Strict):
    """One point of a scheduled reporter deviation: at `at` the reporter signs its source price x `multiplier`."""

    at: Seconds = Field(description="time since the run start, e.g. '7.5h' or '450m'")
    multiplier: Float = Field(gt=0, le=100, description="reporter price / source price at that time")


class AnchoredOracleSpec(Strict):
    """Compound's UniswapAnchoredView: a reporter's price is stored only within `anchor_tolerance` of a TWAP
    of the anchor source over `anchor_period` to twice that; otherwise the post is guarded and the old price
    stays. A poster posts on a `deviation` move or after `heartbeat`."""

    id: str = Field(min_length=1, description="oracle id")
    kind: Literal["anchored"] = Field(description="oracle kind: Compound's UniswapAnchoredView")
    asset: str = Field(description="priced asset")
    source: str = Field(
        "reference",
        pattern=SOURCE_PATTERN,
        description="reporter's source: 'reference', 'pool:VENUE', 'twap:VENUE', 'feed:FEED' (one venue's replayed "
        "series, e.g. Coinbase) or 'oracle:ID'",
    )
    anchor: str = Field(
        "reference", pattern=SOURCE_PATTERN, description="anchor source averaged into the TWAP (Uniswap v2 pair)"
    )
    anchor_tolerance: Float = Field(0.2, gt=0, lt=1, description="anchor / reporter must lie in [1 - x, 1 + x]")
    anchor_period: Seconds = Field(1800.0, gt=0, le=86400, description="anchorPeriod: shortest TWAP window")
    deviation: Float = Field(0.01, ge=0, le=1, description="the poster posts when the reporter moved this fraction")
    heartbeat: Seconds = Field(3600.0, gt=0, description="the poster posts at least this often")
    reporter_schedule: list[ReporterPointSpec] = Field(
        default_factory=list, description="scheduled reporter deviation, linear between points, none outside"
    )

    @model_validator(mode="after")
    def _check(self):
        times = [p.at for p in self.reporter_schedule]
        if times != sorted(times):
            raise ValueError(f"oracles.{self.id}.reporter_schedule: times must not decrease, got {times}")
        return self

    @property
    def sources(self) -> list[str]:
        return [self.source, self.anchor]


def oracle_tag(v: Any) -> str:
    """Discriminator of an oracle list item: 'anchored' for Compound's view, 'feed' for push, delayed and
    fixed oracles (whose `kind` may be left out)."""
    kind = v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)
    return "anchored" if kind == "anchored" else "feed"


# --- Comet's liquidation agents ---------------------------------------------------------------------------
class AbsorberSpec(Strict):
    """Absorbers of Comet markets: they call `absorb` for liquidator points (gas x base fee) that governance
    may reimburse; they act while the expected reimbursement less their gas is no worse than `max_loss_usd`."""

    kind: Literal["absorber"] = Field("absorber", description="agent kind")
    id: str = Field("absorber", min_length=1, description="agent id (holders are id-0, id-1... when count > 1)")
    count: Int = Field(1, ge=1, le=1000, description="number of competing absorbers")
    gas_budget_eth: Float = Field(10.0, gt=0, le=1e6, description="ETH per absorber for gas")
    shared_with: list[str] = Field(default_factory=list, description="comet ids watched (default: every comet)")
    latency_blocks: Int = Field(1, ge=0, le=10_000, description="blocks an account stays liquidatable before acting")
    max_accounts_per_tx: Int = Field(10, ge=1, le=500, description="accounts absorbed in one call")
    max_tx_per_block: Int = Field(3, ge=1, le=1000, description="absorb calls per block")
    absorb_gas_base: Int = Field(60_000, gt=0, le=30_000_000, description="gas units of one absorb call (assumed)")
    absorb_gas_per_account: Int = Field(
        140_000, gt=0, le=30_000_000, description="gas units per absorbed account (assumed)"
    )
    priority_fee_gwei: Float = Field(2.0, ge=0, le=10_000, description="tip per gas unit, gwei")
    points_reimbursement: Float = Field(
        1.0, ge=0, le=10, description="share of the points' gas x base fee the absorber expects governance to repay"
    )
    max_loss_usd: Float = Field(
        100.0, ge=0, le=1e9, description="largest expected loss per absorb call it accepts, USD"
    )
    private_orderflow: Bool = Field(True, description="private relay: a failed absorb pays no gas")


class CollateralBuyerSpec(FundingFields):
    """Buyers of Comet's absorbed collateral (buyCollateral at the store front discount while reserves are
    below target), selling it on a pool or outside in the same transaction; they may absorb first."""

    kind: Literal["collateral_buyer"] = Field("collateral_buyer", description="agent kind")
    id: str = Field("collateral_buyer", min_length=1, description="agent id (holders are id-0, id-1... when count > 1)")
    count: Int = Field(1, ge=1, le=1000, description="number of competing buyers")
    capital_usd: Float = Field(
        gt=0, le=1e12, description="base-asset capital per buyer, USD (gas refills with flash loans)"
    )
    gas_budget_eth: Float = Field(10.0, gt=0, le=1e6, description="ETH per buyer for gas")
    shared_with: list[str] = Field(default_factory=list, description="comet ids served (default: every comet)")
    min_profit_usd: Float = Field(50.0, ge=0, le=1e9, description="smallest expected profit after gas and fees, USD")
    latency_blocks: Int = Field(
        1, ge=0, le=10_000, description="blocks an account stays liquidatable before absorbing it"
    )
    absorb_first: Bool = Field(True, description="absorb liquidatable accounts in the purchase transaction")
    max_accounts_per_tx: Int = Field(10, ge=1, le=500, description="accounts absorbed in one purchase")
    max_tx_per_block: Int = Field(3, ge=1, le=1000, description="purchases per block")
    buy_gas: Int = Field(300_000, gt=0, le=30_000_000, description="gas units of buyCollateral and the swap (assumed)")
    absorb_gas_base: Int = Field(60_000, gt=0, le=30_000_000, description="gas units of the absorb call (assumed)")
    absorb_gas_per_account: Int = Field(
        140_000, gt=0, le=30_000_000, description="gas units per absorbed account (assumed)"
    )
    max_slippage: Float = Field(0.01, ge=0, lt=1, description="minAmount = quote x (1 - this)")
    profit_share_to_gas: Float = Field(0.3, ge=0, le=1, description="share of expected profit bid as priority fee")
    max_priority_fee_gwei: Float = Field(500.0, ge=0, le=100_000, description="highest tip per gas unit, gwei")
    private_orderflow: Bool = Field(True, description="private relay: a failed purchase pays no gas")


#: discriminated-union tags that pydantic inserts in error locations (skipped when naming a key path)
UNION_TAGS = ("compound-v2", "comet", "absorber", "collateral_buyer", "feed", "anchored")

#: protocol specs that a `borrowers` population may borrow from, besides lending markets
BORROWABLE = (CompoundV2Spec, CometSpec)


def check_links(scenario) -> None:
    """Cross-table checks of this module's kinds: anchored oracles' venues and assets, comet-only agents."""
    venues = {v.id for v in scenario.venues}
    assets = {a.symbol for a in scenario.market.assets}
    comets = sorted(p.id for p in scenario.protocols if isinstance(p, CometSpec))
    for o in scenario.oracles:
        if isinstance(o, AnchoredOracleSpec) and o.anchor != "reference" and o.anchor.split(":", 1)[1] not in venues:
            raise ValueError(f"oracles.{o.id}.anchor: unknown venue in {o.anchor!r}; allowed: {sorted(venues)}")
    for p in scenario.protocols:
        if isinstance(p, CometSpec) and p.base not in assets:
            raise ValueError(f"protocols.{p.id}.base: unknown asset {p.base!r}; allowed: {sorted(assets)}")
    protocols = {p.id: p for p in scenario.protocols}
    fees: dict[str, tuple[float, str]] = {}
    for a in scenario.agents:
        aid = a.id
        if isinstance(a, FundingFields) and a.funding != "capital":
            fee, first = fees.setdefault(a.flash_lender, (a.flash_fee, aid))
            if fee != a.flash_fee:
                raise ValueError(
                    f"agents.{aid}.flash_fee: flash lender {a.flash_lender!r} lends at {fee} for agents.{first}; "
                    "one fee per lender (give this agent another flash_lender name)"
                )
    for a in scenario.agents:
        p = protocols.get(getattr(a, "protocol", None) or "")
        if a.kind == "borrowers" and isinstance(p, CometSpec):
            if a.debt != p.base:
                raise ValueError(f"agents.{a.id}.debt: comet {p.id} lends only its base {p.base!r}, got {a.debt!r}")
            if p.base in a.collateral:
                raise ValueError(f"agents.{a.id}.collateral: the base {p.base!r} is not collateral on comet {p.id}")
        if isinstance(a, (AbsorberSpec, CollateralBuyerSpec)):
            for pid in a.shared_with:
                if pid not in comets:
                    raise ValueError(f"agents.{a.id}.shared_with: {pid!r} is not a comet; allowed: {comets}")
            if not comets:
                raise ValueError(f"agents.{a.id}: a {a.kind} needs a comet protocol; none is declared")
