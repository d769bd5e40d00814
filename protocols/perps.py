"""A cross-margined perpetual-futures DEX modelled on dYdX v4, with an insurance fund and auto-deleveraging.

Sources (docs/margin-methods.md 4.5-4.7; dydxprotocol/v4-chain unless named):
- margin: protocol/x/perpetuals/types/liquidity_tier.go: IMR = |notional|·IMF_eff with open-interest scaling
  (OIMF), MMR = |notional|·baseIMF·maintenanceFraction; liquidatable when TNC < TMMR
  (protocol/x/clob/keeper/liquidations.go IsLiquidatable).
- liquidation: liquidations.go GetFillablePrice, GetBankruptcyPriceInQuoteQuantums,
  GetLiquidationInsuranceFundDelta, GetLiquidatablePositionSizeDelta; limits and fees from the mainnet genesis
  `liquidations_config` (dydxopsdao/networks dydx-mainnet-1/genesis.json).
- deleveraging: deleveraging.go OffsetSubaccountPerpetualPosition (the whole position, at the bankruptcy price,
  skipping offsetting accounts that would become undercollateralised); ranking from the Hyperliquid docs
  ("Auto-deleveraging": sort by (mark/entry)·(notional/account value)).
- funding: a dYdX funding index per market (x/perpetuals; |R_8h| <= clamp factor·(IMF − MMF)); the rate comes from
  the taker long/short imbalance as in GMX v2 MarketUtils.getNextFundingFactorPerSecond.

Design choices:
- Liquidation fills the position into the liquidator's own account inside the DEX at the dYdX fillable price
  (the liquidator is the maker who bids exactly the liquidation order's limit: the worst case for the insurance
  fund). If the fund cannot pay the shortfall, an account with non-negative equity is filled at its bankruptcy
  price instead (a maker bidding there leaves the fund untouched), and one with negative equity is deleveraged.
- Funding rate: taker imbalance (GMX v2 formula, exponent 1) where "takers" are all accounts except the
  designated liquidity vault; it is settled through a dYdX-style funding index on every position, vault included,
  so funding is zero-sum because the net position of each market is zero.
- Every position has a counterparty account inside the DEX: positions only change by fills between accounts, so
  each market's net size stays zero and PnL plus funding is zero-sum.

Accounts are rows of arrays: `collateral[n]` (USDC quote balance incl. realised PnL), `size[n, m]` (signed
underlying units), `entry_notional[n, m]` (signed USD cost of the open position) and `funding_snapshot[n, m]`.
The DEX is one ledger holder (its id) holding all deposited USDC; the insurance fund is `"{id}:insurance"`.
USDC is valued at 1 USD, as dYdX margins it. Tokens move only on deposit, withdraw, liquidation fees to the fund
and fund payouts; PnL and funding are claims between accounts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from defistress.protocols.base import ControlledRows, Env, Exposure, MarginProtocol, Revert
from defistress.protocols.bounds import MAX_SEED, MAX_USD, PARAMS_CONFIG, Bool, Float, Int
from defistress.protocols.events import BadDebt, Deleveraged, Generic, Liquidated
from defistress.protocols.perps_fill import fill_one
from defistress.protocols.perps_row import one_row_values

FUNDING_PERIOD_SECONDS = 8 * 3600.0  # dYdX and GMX quote funding rates per 8 hours
REL_TOL = 1e-9  # relative tolerance of the zero-net-size check on opened books
DUST_USD = 1e-6  # float rounding below which a written-off remainder emits no BadDebt event


def _flat_values(rows: list[tuple]) -> list[float]:
    """The float fields of `_fill_few`'s per-row tuples (row index first), in one list."""
    return [x for row in rows for x in row[1:]]


class _Strict(BaseModel):
    model_config = PARAMS_CONFIG


class PerpMarketParams(_Strict):
    """One perpetual market: margin tier (dYdX liquidity tier) and funding parameters."""

    asset: str = Field(min_length=1, description="underlying token symbol; priced by its oracle (USD per unit)")
    # defaults: dYdX genesis Large-Cap tier (protocol/testing/genesis.sh): IMF 2%, MF 60%, OIMF off
    initial_margin_fraction: Float = Field(
        0.02, gt=0, le=1, description="base IMF (1/max leverage), fraction [published: dYdX large-cap 2%]"
    )
    maintenance_fraction: Float = Field(
        0.6, gt=0, le=1, description="MMF = base IMF x this (dYdX), fraction [published: dYdX large-cap 60%]"
    )
    open_interest_lower_cap_usd: Float = Field(
        0.0, ge=0, le=MAX_USD, description="OIMF: IMF starts rising above this OI, USD [published: large-cap 0]"
    )
    open_interest_upper_cap_usd: Float = Field(
        0.0, ge=0, le=MAX_USD, description="OIMF: IMF reaches 1 here, USD; 0 disables [published: large-cap 0]"
    )
    # GMX v2 config/markets.ts fundingFactor 2e-8 per second ("~63% per year for a 100% skew")
    funding_factor_per_second: Float = Field(
        2e-8, ge=0, le=1e-4, description="funding rate per second at 100% imbalance [published: GMX v2 2e-8]"
    )
    # dYdX perpetual params default_funding_ppm 0
    default_funding_rate_8h: Float = Field(
        0.0, ge=-0.01, le=0.01, description="rate added to the premium, per 8 h [published: dYdX 0]"
    )
    # dYdX x/perpetuals params funding_rate_clamp_factor_ppm 6,000,000: |R_8h| <= 6·(IMF − MMF)
    funding_rate_clamp_factor: Float = Field(
        6.0, ge=0, le=100, description="premium clamp, multiple of IMF−MMF (unitless) [published: dYdX 6]"
    )
    # dYdX funding-tick epoch duration 3,600 s
    funding_interval_seconds: Float = Field(
        3600.0, gt=0, le=86400, description="seconds between funding ticks [published: dYdX 3,600 s]"
    )

    @model_validator(mode="after")
    def _check_caps(self):
        lo, up = self.open_interest_lower_cap_usd, self.open_interest_upper_cap_usd
        if up > 0 and lo > up:
            raise ValueError(
                f"market {self.asset}: open_interest_lower_cap_usd ({lo}) must be <= "
                f"open_interest_upper_cap_usd ({up}) when the upper cap is set (> 0)"
            )
        return self

    @property
    def maintenance_margin_fraction(self) -> float:
        """MMF = base IMF · maintenance fraction (dYdX liquidity_tier.go GetMaintenanceMarginPpm)."""
        return self.initial_margin_fraction * self.maintenance_fraction

    @property
    def max_funding_rate_8h(self) -> float:
        """Funding clamp |R_8h| <= factor · (IMF − MMF) (liquidity_tier.go GetMaxAbsFundingClampPpm)."""
        return self.funding_rate_clamp_factor * (self.initial_margin_fraction - self.maintenance_margin_fraction)

    @classmethod
    def dydx_tier(cls, asset: str, tier: str, **overrides) -> PerpMarketParams:
        """A market on one of dYdX's genesis liquidity tiers (docs/margin-methods.md 4.6), e.g. 'small_cap'."""
        if tier not in DYDX_LIQUIDITY_TIERS:
            raise ValueError(f"tier must be one of {sorted(DYDX_LIQUIDITY_TIERS)}, got {tier!r}")
        imf, mf, lo, up = DYDX_LIQUIDITY_TIERS[tier]
        fields = dict(
            initial_margin_fraction=imf,
            maintenance_fraction=mf,
            open_interest_lower_cap_usd=lo,
            open_interest_upper_cap_usd=up,
        )
        fields.update(overrides)
        return cls(asset=asset, **fields)


#: dYdX genesis liquidity tiers (protocol/testing/genesis.sh): IMF, maintenance fraction, OI lower/upper cap USD
DYDX_LIQUIDITY_TIERS: dict[str, tuple[float, float, float, float]] = {
    "large_cap": (0.02, 0.6, 0.0, 0.0),
    "small_cap": (0.10, 0.5, 20e6, 50e6),
    "long_tail": (0.20, 0.5, 5e6, 10e6),
    "safety": (1.00, 0.2, 0.0, 0.0),
    "isolated": (0.05, 0.6, 0.5e6, 1e6),
    "mid_cap": (0.05, 0.6, 40e6, 100e6),
    "fx": (0.01, 0.5, 0.5e6, 1e6),
}


class PerpDexParams(_Strict):
    """The DEX: its markets and the liquidation, insurance-fund and deleveraging configuration (dYdX globals)."""

    markets: list[PerpMarketParams] = Field(
        min_length=1, max_length=1000, description="one table per market, e.g. {asset = 'ETH'}"
    )
    insurance_fund_usd: Float = Field(
        0.0, ge=0, le=MAX_USD, description="USDC minted into the insurance fund at genesis, USD [scenario input]"
    )
    # dYdX mainnet genesis liquidations_config (dydxopsdao/networks dydx-mainnet-1/genesis.json L951-L963):
    max_liquidation_fee: Float = Field(
        0.015, ge=0, le=0.1, description="fraction of notional [published: max_liquidation_fee_ppm 15000]"
    )
    bankruptcy_adjustment: Float = Field(
        1.0, ge=0, le=10, description="unitless [published: bankruptcy_adjustment_ppm 1,000,000]"
    )
    spread_to_maintenance_margin_ratio: Float = Field(
        1.5, ge=0, le=10, description="unitless [published: spread_to_maintenance_margin_ratio_ppm 1,500,000]"
    )
    min_position_notional_liquidated_usd: Float = Field(
        1000.0, ge=0, le=MAX_USD, description="USD [published: min_position_notional_liquidated 1e9 quote quantums]"
    )
    max_position_portion_liquidated: Float = Field(
        0.1, gt=0, le=1, description="fraction per block [published: max_position_portion_liquidated_ppm 100,000]"
    )
    max_notional_liquidated_per_block_usd: Float = Field(
        100_000.0,
        gt=0,
        le=MAX_USD,
        description="USD [published: subaccount_block_limits.max_notional_liquidated 1e11 quote quantums]",
    )
    max_insurance_lost_per_block_usd: Float = Field(
        1_000_000.0,
        ge=0,
        le=MAX_USD,
        description="USD [published: subaccount_block_limits.max_quantums_insurance_lost 1e12 quote quantums]",
    )
    adl_ranking: Literal["pnl_leverage", "pseudo_random"] = Field(
        "pnl_leverage", description="pnl_leverage: Hyperliquid/dYdX docs; pseudo_random: dYdX v4 code"
    )
    adl_seed: Int = Field(
        0, ge=0, le=MAX_SEED, description="seed of the pseudo_random ADL start offset (with the block)"
    )
    # dYdX protocol/x/clob/flags DefaultMaxDeleveragingAttemptsPerBlock 10, ...SubaccountsToIterate 500
    max_deleveraging_attempts_per_block: Int = Field(
        10, ge=0, le=1_000_000, description="deleveraging attempts per block [published: dYdX flags 10]"
    )
    max_deleveraging_accounts_to_iterate: Int = Field(
        500, ge=1, le=10_000_000, description="accounts scanned per attempt [published: dYdX flags 500]"
    )
    auto_deleverage: Bool = Field(
        True, description="accrue() deleverages bankrupt accounts the fund cannot cover (dYdX PrepareCheckState)"
    )
    gate_withdrawals_on_negative_equity: Bool = Field(
        True, description="dYdX GateWithdrawalsIfNegativeTncSubaccountSeen"
    )

    @model_validator(mode="after")
    def _check_markets(self):
        assets = [m.asset for m in self.markets]
        dup = sorted({a for a in assets if assets.count(a) > 1})
        if dup:
            raise ValueError(f"markets: each asset may have one market only; duplicated: {dup}")
        return self


@dataclass(frozen=True)
class LiquidationPreview:
    """What a liquidation would do now (underlying units, USD per unit, USDC)."""

    account: int
    market: int
    asset: str
    size: float  # signed position change of the liquidated account
    oracle_price: float
    fill_price: float
    bankruptcy_price: float
    fund_delta: float  # quote received − bankruptcy quote (dYdX insurance fund delta), USDC
    fee: float  # to the insurance fund, USDC
    payout: float  # from the insurance fund, USDC
    adl: bool  # the fund cannot cover: the position is deleveraged instead
    health: float

    @property
    def liquidator_profit_usd(self) -> float:
        """The liquidator's gain marked at the oracle price (it takes −size at the fill price)."""
        return 0.0 if self.adl else -self.size * (self.oracle_price - self.fill_price)


class PerpDex(ControlledRows, MarginProtocol):
    """A cross-margined perp DEX over markets M with n accounts held as arrays."""

    def __init__(self, params: PerpDexParams, oracles: dict, env: Env, id: str = "perps", quote: str = "USDC"):
        self.params = params
        self.id = id
        self.env = env
        self.quote = quote
        self.insurance = f"{id}:insurance"
        self.assets = [mk.asset for mk in params.markets]
        self.market_index = {a: k for k, a in enumerate(self.assets)}
        missing = [a for a in self.assets if a not in oracles]
        if missing:
            raise ValueError(f"oracles: no price source for market(s) {missing}; given {sorted(oracles)}")
        self.oracles = [oracles[a] for a in self.assets]
        mk = params.markets
        self.base_imf = np.array([x.initial_margin_fraction for x in mk])
        self.mmf = np.array([x.maintenance_margin_fraction for x in mk])
        self.oi_lower = np.array([x.open_interest_lower_cap_usd for x in mk])
        self.oi_upper = np.array([x.open_interest_upper_cap_usd for x in mk])
        self.funding_factor = np.array([x.funding_factor_per_second for x in mk])
        self.default_rate = np.array([x.default_funding_rate_8h for x in mk])
        self.max_rate = np.array([x.max_funding_rate_8h for x in mk])
        self.funding_interval = np.array([x.funding_interval_seconds for x in mk])
        m = len(mk)
        self.collateral = np.zeros(0)
        self.size = np.zeros((0, m))
        self.entry_notional = np.zeros((0, m))
        self.funding_snapshot = np.zeros((0, m))
        self.owner = np.zeros(0, dtype=np.int64)
        self.holders: list[str] = []
        self._holder_ids: dict[str, int] = {}
        self.funding_index = np.zeros(m)  # USD per underlying unit, cumulative
        self.funding_rate_8h = np.zeros(m)  # last applied rate
        self._funding_elapsed = np.zeros(m)  # seconds since the last tick
        self.vault_account: int | None = None
        # running totals (USD)
        self.liquidation_fees_usd = 0.0
        self.insurance_paid_usd = 0.0
        self.socialised_loss_usd = 0.0
        self.deficit_usd = 0.0
        self.liquidated_notional_usd = 0.0
        self.funding_volume_usd = 0.0
        self.n_liquidations = 0
        self.adl_count = 0
        if params.insurance_fund_usd > 0:
            env.ledger.mint(quote, self.insurance, params.insurance_fund_usd, "genesis_insurance_fund")
        self._fund_peak = params.insurance_fund_usd
        self._block: int | None = None  # the block the per-block tallies below belong to
        self._block_liquidated: set[tuple[int, int]] = set()
        self._block_notional: dict[int, float] = {}
        self._block_insurance: dict[int, float] = {}
        self._block_adl_attempts = 0
        self._adl_idle: tuple | None = None  # `_adl_state` at the last deleveraging pass that attempted nothing
        self._version = 0
        self._cache_key: tuple | None = None  # `state_key()` of `_cache`
        self._cache: dict[str, np.ndarray] = {}
        self._sums_key: tuple | None = None  # `_cache_key` of `_sums` (`_book_sums`)
        self._sums: tuple = ()

    # --- views ------------------------------------------------------------------------------------
    @property
    def n_accounts(self) -> int:
        return self.collateral.shape[0]

    def prices(self) -> np.ndarray:
        """Oracle (index) prices, USD per underlying unit, in market order."""
        return np.array([o.price for o in self.oracles], dtype=float)

    def _touch(self) -> None:
        self._version += 1

    def state_key(self) -> tuple:
        """A key of everything a position's values (equity, uPnL, funding owed, TMMR, health, OI) read: equal keys,
        equal values. It covers the oracle prices (USD per unit), the funding index, and the state version
        `_version`, which stands for the book (sizes, entry notionals, funding snapshots, collateral) and is bumped
        by `_touch` at each change of it. The margin fractions are fixed at construction and the parameters are
        frozen (no governance action sets a perp DEX's keys). A change to anything a value reads that the key does
        not cover must bump `_version`, or memos keyed on this key (`_values`, the deleveraging pass, the perp
        liquidators' previews, the traders' alarms) go stale."""
        return (self._version, self.prices().tobytes(), self.funding_index.tobytes())

    def _values(self) -> dict[str, np.ndarray]:
        key = self.state_key()
        if key != self._cache_key:
            p = self.prices()
            pos = self.size
            upnl = pos @ p - self.entry_notional.sum(axis=1)
            funding = ((self.funding_snapshot - self.funding_index) * pos).sum(axis=1)
            equity = self.collateral + upnl + funding
            mmr = np.abs(pos) @ (p * self.mmf)  # dYdX MMR = |notional|·baseIMF·MF
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                health = np.where(mmr > 0, equity / mmr, np.inf)
            self._cache = {
                "equity": equity,
                "upnl": upnl,
                "funding": funding,
                "mmr": mmr,
                "health": health,
                "oi": np.maximum(pos, 0.0).sum(axis=0),
            }
            self._cache_key = key
        return self._cache

    def _row_values(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(equity, TMMR) of the given accounts only, USD: the same formulas as `_values` on a few rows (one
        account of a one-market DEX, the common case of previews and fills, in floats: `one_row_values`)."""
        if rows.shape == (1,) and rows.dtype.kind in "iu" and self.size.shape[1] == 1:
            r = int(rows[0])
            args = (
                float(self.collateral[r]),
                float(self.size[r, 0]),
                float(self.entry_notional[r, 0]),
                float(self.funding_snapshot[r, 0]),
                float(self.funding_index[0]),
                float(self.oracles[0].price),
                float(self.mmf[0]),
            )
            if all(map(math.isfinite, args)):  # non-finite: the array code (see `_fill_few` on NaNs)
                eq, mmr = one_row_values(*args)
                return np.array([eq]), np.array([mmr])
        p = self.prices()
        pos = self.size[rows]
        equity = (
            self.collateral[rows]
            + pos @ p
            - self.entry_notional[rows].sum(axis=1)
            + ((self.funding_snapshot[rows] - self.funding_index) * pos).sum(axis=1)
        )
        return equity, np.abs(pos) @ (p * self.mmf)

    def equity(self) -> np.ndarray:
        """Total net collateral per account: collateral + unrealised PnL + funding owed, USD at oracle prices."""
        return self._values()["equity"]

    def unrealised_pnl(self) -> np.ndarray:
        return self._values()["upnl"]

    def funding_owed(self) -> np.ndarray:
        """Unsettled funding per account, USD (positive: the account receives)."""
        return self._values()["funding"]

    def maintenance_requirement(self) -> np.ndarray:
        """TMMR per account, USD."""
        return self._values()["mmr"]

    def health(self) -> np.ndarray:
        """Equity / maintenance requirement per account (>= 1 safe, inf with no position)."""
        return self._values()["health"]

    def liquidatable(self) -> np.ndarray:
        """Indices of accounts with equity below their maintenance requirement (dYdX TNC < TMMR), not controlled."""
        return np.flatnonzero((self.health() < 1.0) & ~self.controlled)

    def open_interest(self) -> np.ndarray:
        """Open interest per market (long side = short side), underlying units."""
        return self._values()["oi"]

    def open_interest_usd(self) -> np.ndarray:
        return self.open_interest() * self.prices()

    def imf_effective(self, open_interest_usd: np.ndarray | None = None) -> np.ndarray:
        """OI-scaled initial margin fraction per market (dYdX liquidity_tier.go GetInitialMarginQuoteQuantums)."""
        oi = self.open_interest_usd() if open_interest_usd is None else np.asarray(open_interest_usd, float)
        lo, up, base = self.oi_lower, self.oi_upper, self.base_imf
        span = np.where(up > lo, up - lo, 1.0)
        scaled = np.minimum(base + np.maximum((oi - lo) / span, 0.0) * (1.0 - base), 1.0)
        return np.where(up == 0, base, np.where(oi >= up, 1.0, np.where(oi <= lo, base, scaled)))

    def initial_requirement(self) -> np.ndarray:
        """TIMR per account at the current OI-scaled IMF, USD."""
        return np.abs(self.size) @ (self.prices() * self.imf_effective())

    def free_collateral(self) -> np.ndarray:
        """Equity above the initial requirement per account, USD (what can back new positions or withdrawals)."""
        return self.equity() - self.initial_requirement()

    def insurance_fund_usd(self) -> float:
        return self.env.ledger.balance(self.insurance, self.quote)

    def accounts_of(self, holder: str) -> np.ndarray:
        """Indices of the accounts owned by `holder`."""
        hid = self._holder_ids.get(holder)
        return np.zeros(0, dtype=np.int64) if hid is None else np.flatnonzero(self.owner == hid)

    def accounting_gap_usd(self) -> float:
        """Σ equity − (USDC held by the DEX + written-off deficit): zero when PnL and funding are zero-sum."""
        return float(self.equity().sum() - self.env.ledger.balance(self.id, self.quote) - self.deficit_usd)

    # --- accounts: open, deposit, withdraw, trade ---------------------------------------------------
    def open_accounts(
        self,
        holder: str | Sequence[str],
        collateral_usd,
        sizes,
        entry_prices=None,
        *,
        entry_notional=None,
        require_initial_margin: bool = False,
    ) -> np.ndarray:
        """Append a matched book of accounts: collateral from each row's holder, positions at entry prices.

        `sizes` is (n, M) signed underlying units; entry at `entry_prices` (n, M) USD per unit, or at the given
        signed `entry_notional` (n, M), or at the oracle price. Every position needs a counterparty inside the DEX,
        so the batch must net to zero per market in size and in entry notional. Returns the new indices.
        """
        coll = np.atleast_1d(np.asarray(collateral_usd, float))
        n, m = coll.shape[0], len(self.assets)
        sz = np.zeros((n, m)) if sizes is None else np.asarray(sizes, float).reshape(n, m)
        if entry_notional is not None:
            en = np.asarray(entry_notional, float).reshape(n, m)
        elif entry_prices is not None:
            en = sz * np.broadcast_to(np.asarray(entry_prices, float), (n, m))
        else:
            en = sz * self.prices()
        if not (np.all(np.isfinite(coll)) and np.all(coll >= 0)):
            raise Revert(f"{self.id}: collateral_usd must be finite and >= 0")
        if not (np.all(np.isfinite(sz)) and np.all(np.isfinite(en))):
            raise Revert(f"{self.id}: sizes and entry prices must be finite")
        for name, arr in (("size", sz), ("entry notional", en)):
            net, gross = arr.sum(axis=0), np.abs(arr).sum(axis=0)
            if np.any(np.abs(net) > REL_TOL * np.maximum(gross, 1.0)):
                k = int(np.argmax(np.abs(net)))
                raise Revert(
                    f"{self.id}: opened book must net to zero per market; {self.assets[k]} net {name} "
                    f"{net[k]:.6g} (give the residual to a counterparty account, e.g. a vault)"
                )
        holders = [holder] * n if isinstance(holder, str) else list(holder)
        if len(holders) != n:
            raise Revert(f"{self.id}: {len(holders)} holders for {n} accounts")
        owner = np.array([self._holder_id(h) for h in holders], dtype=np.int64)
        per_holder: dict[str, float] = {}
        for h, c in zip(holders, coll):
            per_holder[h] = per_holder.get(h, 0.0) + float(c)
        self._transfer_in(per_holder)
        start = self.n_accounts
        self.collateral = np.concatenate([self.collateral, coll])
        self.size = np.vstack([self.size, sz])
        self.entry_notional = np.vstack([self.entry_notional, en])
        self.funding_snapshot = np.vstack([self.funding_snapshot, np.broadcast_to(self.funding_index, (n, m))])
        self.owner = np.concatenate([self.owner, owner])
        self._touch()
        new = np.arange(start, start + n)
        if require_initial_margin:
            short = self.free_collateral()[new] < -1e-9 * np.maximum(coll, 1.0)
            if np.any(short):
                self._truncate(start)
                self._transfer_out(per_holder)
                raise Revert(
                    f"{self.id}: {int(short.sum())} account(s) below initial margin, e.g. #{int(new[short][0])}"
                )
        return new

    def _holder_id(self, holder: str) -> int:
        if holder not in self._holder_ids:
            self._holder_ids[holder] = len(self.holders)
            self.holders.append(holder)
        return self._holder_ids[holder]

    def _transfer_in(self, per_holder: dict[str, float]) -> None:
        led = self.env.ledger
        short = [h for h, amt in per_holder.items() if led.balance(h, self.quote) < amt * (1 - REL_TOL) - 1e-9]
        if short:
            raise Revert(
                f"{self.id}: {short[0]} holds {led.balance(short[0], self.quote):.6g} {self.quote}, "
                f"needs {per_holder[short[0]]:.6g}"
            )
        for h, amt in per_holder.items():
            led.transfer(self.quote, h, self.id, amt)

    def _transfer_out(self, per_holder: dict[str, float]) -> None:
        for h, amt in per_holder.items():
            self.env.ledger.transfer(self.quote, self.id, h, amt)

    def _truncate(self, n: int) -> None:
        self.collateral, self.size = self.collateral[:n], self.size[:n]
        self.entry_notional, self.funding_snapshot = self.entry_notional[:n], self.funding_snapshot[:n]
        self.owner = self.owner[:n]
        self._touch()

    def set_vault(self, account: int) -> None:
        """Designate the liquidity vault: default counterparty of `trade`, excluded from the funding imbalance."""
        self._check_accounts(np.array([account]))
        self.vault_account = int(account)

    def deposit(self, holder: str, accounts, amounts) -> float:
        """Add USDC collateral to accounts (anyone may deposit to any account); returns the total."""
        rows = self._check_accounts(accounts)
        amts = np.broadcast_to(np.asarray(amounts, float), rows.shape)
        if not (np.all(np.isfinite(amts)) and np.all(amts >= 0)):
            raise Revert(f"{self.id}: deposit amounts must be finite and >= 0")
        total = float(amts.sum())
        self._transfer_in({holder: total})
        np.add.at(self.collateral, rows, amts)
        self._touch()
        return total

    def withdraw(self, holder: str, accounts, amounts) -> float:
        """Withdraw USDC to the owner; each account must keep equity >= its initial requirement (dYdX)."""
        rows = self._check_accounts(accounts, unique=True)
        amts = np.broadcast_to(np.asarray(amounts, float), rows.shape)
        if not (np.all(np.isfinite(amts)) and np.all(amts >= 0)):
            raise Revert(f"{self.id}: withdraw amounts must be finite and >= 0")
        self._check_owner(holder, rows)
        if self.params.gate_withdrawals_on_negative_equity and np.any(self.equity() < 0):
            raise Revert(f"{self.id}: withdrawals gated while a negative-equity account exists")
        after = self.equity()[rows] - amts
        need = self.initial_requirement()[rows]
        bad = after < need - 1e-9 * np.maximum(amts, 1.0)
        if np.any(bad):
            raise Revert(
                f"{self.id}: withdrawal would leave {int(bad.sum())} account(s) below initial margin, "
                f"e.g. #{int(rows[bad][0])}"
            )
        total = float(amts.sum())
        self.env.ledger.transfer(self.quote, self.id, holder, total)
        self.collateral[rows] -= amts
        self._touch()
        return total

    def trade(
        self,
        holder: str,
        accounts,
        market: str | int,
        sizes,
        counterparty: int | None = None,
        price: float | None = None,
    ) -> float:
        """Fill signed `sizes` (underlying units) for `holder`'s accounts against one counterparty account.

        The counterparty is the liquidity vault unless another account of `holder` is named; the price is the
        oracle price unless given. Accounts with negative equity cannot trade, and every account whose position
        grows must keep equity >= its initial requirement after the fill. Returns the notional traded, USD.
        """
        m = self._market(market)
        rows = self._check_accounts(accounts, unique=True)
        d = np.broadcast_to(np.asarray(sizes, float), rows.shape).copy()
        if not np.all(np.isfinite(d)):
            raise Revert(f"{self.id}: trade sizes must be finite")
        self._check_owner(holder, rows)
        cp = self.vault_account if counterparty is None else int(counterparty)
        if cp is None:
            raise Revert(f"{self.id}: no counterparty: set a vault with set_vault() or name an account")
        self._check_accounts(np.array([cp]))
        if counterparty is not None and cp != self.vault_account:
            self._check_owner(holder, np.array([cp]))
        if np.any(rows == cp):
            raise Revert(f"{self.id}: an account cannot trade with itself (#{cp})")
        px = self.prices()[m] if price is None else float(price)
        if not px > 0:
            raise Revert(f"{self.id}: price must be > 0, got {px}")
        all_rows = np.append(rows, cp)
        all_d = np.append(d, -d.sum())
        if np.any(self._row_values(all_rows)[0] < 0):
            raise Revert(f"{self.id}: negative-equity accounts can only be liquidated or deleveraged")
        self._check_margin(all_rows, m, all_d, px)
        self._fill(all_rows, m, all_d, px)
        return float(np.abs(d).sum() * px)

    def _check_accounts(self, accounts, unique: bool = False) -> np.ndarray:
        """`accounts` as a new int64 array of distinct (if `unique`) in-range indices; Revert otherwise. One int64
        index, the previews' and deleveraging's call, is checked as a Python int (no array reductions)."""
        if type(accounts) is np.ndarray and accounts.shape == (1,) and accounts.dtype == np.int64:
            if not 0 <= int(accounts[0]) < self.n_accounts:
                raise Revert(f"{self.id}: account index out of range [0, {self.n_accounts})")
            return accounts.copy()
        rows = np.atleast_1d(np.asarray(accounts)).astype(np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_accounts):
            raise Revert(f"{self.id}: account index out of range [0, {self.n_accounts})")
        if unique and np.unique(rows).size != rows.size:
            raise Revert(f"{self.id}: accounts must be distinct in one call")
        return rows

    def _check_owner(self, holder: str, rows: np.ndarray) -> None:
        hid = self._holder_ids.get(holder, -1)
        bad = self.owner[rows] != hid
        if np.any(bad):
            raise Revert(f"{self.id}: {holder} does not own account #{int(rows[bad][0])}")

    def _market(self, market: str | int) -> int:
        if isinstance(market, (int, np.integer)):
            if not 0 <= int(market) < len(self.assets):
                raise Revert(f"{self.id}: market index must be in [0, {len(self.assets)}), got {market}")
            return int(market)
        if market not in self.market_index:
            raise Revert(f"{self.id}: unknown market {market!r}; markets: {self.assets}")
        return self.market_index[market]

    # --- fills ------------------------------------------------------------------------------------------
    def _settle_funding(self, rows: np.ndarray, m: int) -> None:
        """Move unsettled funding of market m into collateral (dYdX settles funding when a position is touched)."""
        owed = self.size[rows, m] * (self.funding_snapshot[rows, m] - self.funding_index[m])
        self.collateral[rows] += owed
        self.funding_snapshot[rows, m] = self.funding_index[m]

    def _fill(self, rows: np.ndarray, m: int, delta: np.ndarray, price) -> None:
        """Change distinct accounts' positions in market m by `delta` at `price`; realise PnL on the closed part.

        For each account the change of (collateral − entry notional) is −delta·price, so fills that net to zero
        across accounts leave total equity unchanged (the zero-sum property). One or two distinct accounts (a
        liquidation, a deleveraging, an unwind) are filled in floats (`fill_one`).
        """
        if self._fill_few(rows, m, delta, price):
            return
        self._settle_funding(rows, m)
        s = self.size[rows, m]
        e = self.entry_notional[rows, m]
        same = (s == 0) | (np.sign(delta) == np.sign(s))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # masked rows: s == 0 or subnormal
            frac = np.where(same, 0.0, np.minimum(np.abs(delta) / np.abs(s), 1.0))
        s_new = s + delta
        flipped = ~same & (np.abs(delta) > np.abs(s))
        # collateral − entry notional is dYdX's USDC (quote) balance; the split only separates realised PnL
        self.collateral[rows] += frac * (s * price - e)  # realised PnL of the closed fraction
        self.entry_notional[rows, m] = np.where(
            same, e + delta * price, np.where(flipped, s_new * price, e * (1.0 - frac))
        )
        self.size[rows, m] = s_new
        self._touch()

    def _fill_few(self, rows: np.ndarray, m: int, delta: np.ndarray, price) -> bool:
        """`_fill` of one or two distinct in-range accounts with finite values at one scalar price, in floats
        (`fill_one`); False (nothing done) for any other call, which the array code handles. Non-finite inputs
        stay with the array code: where two NaNs meet, which one IEEE 754 propagates is the implementation's
        choice, and numpy's vector loops choose otherwise than scalar code; from finite inputs every NaN is the
        same default NaN."""
        n = self.collateral.shape[0]
        if not (rows.shape[0] <= 2 and rows.dtype.kind in "iu" and np.shape(delta) == rows.shape):
            return False
        rr = [r % n if -n <= r < n else -1 for r in rows.tolist()]
        if -1 in rr or len(set(rr)) != len(rr) or np.ndim(price) != 0:
            return False
        index, px = float(self.funding_index[m]), float(price)
        args = [
            (r, float(self.collateral[r]), float(self.size[r, m]), float(self.entry_notional[r, m]),
             float(self.funding_snapshot[r, m]), d)
            for r, d in zip(rr, np.asarray(delta, dtype=float).tolist())
        ]  # fmt: skip
        if not (math.isfinite(index) and math.isfinite(px) and all(map(math.isfinite, _flat_values(args)))):
            return False
        for r, c, s, e, fs, d in args:
            self.collateral[r], self.size[r, m], self.entry_notional[r, m] = fill_one(c, s, e, fs, index, d, px)
            self.funding_snapshot[r, m] = index
        self._touch()
        return True

    def _check_margin(self, rows: np.ndarray, m: int, delta: np.ndarray, price: float) -> None:
        """Revert if an account whose position grows would end below its initial requirement (dYdX fills)."""
        s = self.size[rows, m]
        grows = np.abs(s + delta) > np.abs(s)
        if not np.any(grows):
            return
        p = self.prices()
        eq_after = self._row_values(rows)[0] + delta * (p[m] - price)
        size_after = self.size[rows].copy()
        size_after[:, m] += delta
        if np.any(self.oi_upper > 0):  # OIMF on: the IMF after the fill depends on the new open interest
            oi = self.open_interest().copy()
            oi[m] += float((np.maximum(size_after[:, m], 0.0) - np.maximum(s, 0.0)).sum())
            imf = self.imf_effective(oi * p)
        else:
            imf = self.base_imf
        imr_after = np.abs(size_after) @ (p * imf)
        bad = grows & (eq_after < imr_after)
        if np.any(bad):
            k = int(rows[bad][0])
            raise Revert(
                f"{self.id}: fill would leave account #{k} below initial margin "
                f"(equity {eq_after[bad][0]:.6g} < IMR {imr_after[bad][0]:.6g})"
            )

    # --- liquidation ----------------------------------------------------------------------------------
    def _roll_block(self) -> None:
        block = self.env.clock.block
        if block != self._block:
            self._block = block
            self._block_liquidated.clear()
            self._block_notional.clear()
            self._block_insurance.clear()
            self._block_adl_attempts = 0

    def _pick_market(self, account: int, market) -> int:
        if market is not None:
            m = self._market(market)
            if self.size[account, m] == 0:
                raise Revert(f"{self.id}: account #{account} has no {self.assets[m]} position")
            if (account, m) in self._block_liquidated:
                raise Revert(f"{self.id}: account #{account} {self.assets[m]} already liquidated this block")
            return m
        notional = np.abs(self.size[account]) * self.prices()
        for m in np.argsort(-notional, kind="stable"):
            if notional[m] > 0 and (account, int(m)) not in self._block_liquidated:
                return int(m)
        raise Revert(f"{self.id}: account #{account} has no position left to liquidate this block")

    def preview_liquidation(self, account: int, market: str | int | None = None) -> LiquidationPreview:
        """Size, fillable and bankruptcy prices, fee or insurance payout of liquidating `account` now.

        Market: the given one, else the largest position not yet liquidated this block (dYdX picks one
        pseudo-randomly). Size: dYdX GetLiquidatablePositionSizeDelta (position and subaccount block limits).
        """
        self._roll_block()
        a = int(self._check_accounts(np.array([account]))[0])
        eq, mmr = self._row_values(np.array([a]))
        tnc, tmmr = float(eq[0]), float(mmr[0])
        h = tnc / tmmr if tmmr > 0 else np.inf
        if not h < 1.0:
            raise Revert(f"{self.id}: account #{a} is not liquidatable (health {h:.6g} >= 1)")
        m = self._pick_market(a, market)
        P = float(self.prices()[m])
        s = float(self.size[a, m])
        side = 1.0 if s > 0 else -1.0
        pr = self.params
        notional = abs(s) * P
        min_n = min(pr.min_position_notional_liquidated_usd, notional)
        max_pos = max(min_n, notional * pr.max_position_portion_liquidated)
        room = pr.max_notional_liquidated_per_block_usd - self._block_notional.get(a, 0.0)
        if room <= 0:
            raise Revert(f"{self.id}: account #{a} reached the per-block liquidation notional limit")
        cap = min(max_pos, room)
        q = abs(s) if notional <= cap else cap / P
        ratio = tnc / tmmr
        # bankruptcy price per unit: −DNNV − TNC·|DMMR|/TMMR over the closed size (liquidations.go)
        pb = P * (1.0 - side * self.mmf[m] * ratio)
        # fillable price: (PNNV − ABR·SMMR·PMMR)/PS, ABR = clamp(BA·(1 − TNC/TMMR), 0, 1) (liquidations.go)
        abr = min(max(pr.bankruptcy_adjustment * (1.0 - ratio), 0.0), 1.0)
        pf = max(P * (1.0 - side * abr * pr.spread_to_maintenance_margin_ratio * self.mmf[m]), 0.0)
        fund_delta = side * q * (pf - pb)  # GetLiquidationInsuranceFundDelta
        # fee = min(max fee · |quote received|, delta): the account keeps any rest (GetLiquidationInsuranceFundDelta)
        fee = min(pr.max_liquidation_fee * q * pf, fund_delta) if fund_delta > 0 else 0.0
        payout = max(-fund_delta, 0.0)
        adl = False
        if payout > 0:
            available = min(
                self.insurance_fund_usd(), pr.max_insurance_lost_per_block_usd - self._block_insurance.get(a, 0.0)
            )
            if payout > available * (1 + REL_TOL) + 1e-9:  # IsValidInsuranceFundDelta fails
                if tnc >= 0:
                    pf, fund_delta, payout = pb, 0.0, 0.0  # a maker at the bankruptcy price
                else:
                    adl, q, pf = True, abs(s), pb  # MaybeDeleverageSubaccount: whole position
        size = -s if q >= abs(s) else -side * q
        return LiquidationPreview(
            a,
            m,
            self.assets[m],
            float(size),
            P,
            float(pf),
            float(pb),
            float(fund_delta),
            float(fee),
            float(payout),
            adl,
            h,
        )

    def liquidate(
        self, account: int, liquidator: str, market: str | int | None = None, liquidator_account: int | None = None
    ) -> Liquidated:
        """Liquidate part or all of one position of an unhealthy account into the liquidator's DEX account.

        The fill is at the fillable price; the fee goes to the insurance fund, or the fund pays the shortfall.
        If the fund cannot pay and the account's equity is negative, the position is deleveraged (ADL) and the
        event names `"{id}:adl"` as liquidator. Reverts if the account is healthy or limits are reached.
        """
        self._revert_if_controlled(account)
        pv = self.preview_liquidation(account, market)
        a, m = pv.account, pv.market
        if pv.adl:
            fills = self.deleverage(a, m)
            if not fills:
                raise Revert(f"{self.id}: account #{a} needs deleveraging but no offsetting account can take it")
            closed = sum(abs(f.size) for f in fills)
            return self.env.emit(
                Liquidated(
                    self.env.clock.block,
                    self.id,
                    a,
                    f"{self.id}:adl",
                    self.assets[m],
                    self.quote,
                    closed,
                    closed * pv.bankruptcy_price,
                    0.0,
                    closed * pv.oracle_price,
                    closed * pv.bankruptcy_price,
                    0.0,
                    pv.health,
                )
            )
        la = self._liquidator_account(liquidator, liquidator_account)
        if la == a:
            raise Revert(f"{self.id}: an account cannot liquidate itself")
        d_liq = np.array([-pv.size])
        self._check_margin(np.array([la]), m, d_liq, pv.fill_price)
        self._fill(np.array([a, la]), m, np.array([pv.size, -pv.size]), pv.fill_price)
        led = self.env.ledger
        if pv.fee > 0:
            led.transfer(self.quote, self.id, self.insurance, pv.fee)
            self.collateral[a] -= pv.fee
            self.liquidation_fees_usd += pv.fee
        if pv.payout > 0:
            led.transfer(self.quote, self.insurance, self.id, pv.payout)
            self.collateral[a] += pv.payout
            self.insurance_paid_usd += pv.payout
            self._block_insurance[a] = self._block_insurance.get(a, 0.0) + pv.payout
            self.env.emit(
                Generic(
                    self.env.clock.block,
                    self.id,
                    "insurance_payout",
                    {"account": a, "market": self.assets[m], "amount_usd": pv.payout},
                )
            )
        self._touch()
        self._fund_peak = max(self._fund_peak, self.insurance_fund_usd())
        q = abs(pv.size)
        self._block_liquidated.add((a, m))
        self._block_notional[a] = self._block_notional.get(a, 0.0) + q * pv.oracle_price
        self.liquidated_notional_usd += q * pv.oracle_price
        self.n_liquidations += 1
        self._write_off_if_flat(a)
        return self.env.emit(
            Liquidated(
                self.env.clock.block,
                self.id,
                a,
                liquidator,
                self.assets[m],
                self.quote,
                q,
                q * pv.fill_price,
                pv.fee,
                q * pv.oracle_price,
                q * pv.fill_price,
                pv.liquidator_profit_usd,
                pv.health,
            )
        )

    def _liquidator_account(self, liquidator: str, account: int | None) -> int:
        if account is None:
            own = self.accounts_of(liquidator)
            if own.size == 0:
                raise Revert(f"{self.id}: liquidator {liquidator} has no account (open one with collateral first)")
            return int(own[0])
        la = int(self._check_accounts(np.array([account]))[0])
        self._check_owner(liquidator, np.array([la]))
        return la

    # --- auto-deleveraging ------------------------------------------------------------------------------
    def deleverage(self, account: int, market: str | int | None = None) -> list[Deleveraged]:
        """Close a negative-equity account's whole position in one market against opposite positions at its
        bankruptcy price (dYdX OffsetSubaccountPerpetualPosition); ranked by `params.adl_ranking`.

        Offsetting accounts that would be left with negative equity are skipped (dYdX: non-overlapping
        bankruptcy prices). Whatever cannot be offset stays on the account. Returns the fills.
        """
        self._roll_block()
        a = int(self._check_accounts(np.array([account]))[0])
        eq_a, mmr_a = self._row_values(np.array([a]))
        tnc, tmmr = float(eq_a[0]), float(mmr_a[0])
        if not tnc < 0:
            raise Revert(f"{self.id}: account #{a} has non-negative equity: nothing to deleverage")
        if market is None:
            m = int(np.argmax(np.abs(self.size[a]) * self.prices()))
        else:
            m = self._market(market)
        s = float(self.size[a, m])
        if s == 0:
            raise Revert(f"{self.id}: account #{a} has no {self.assets[m]} position to deleverage")
        side = 1.0 if s > 0 else -1.0
        P = float(self.prices()[m])
        pb = float(P * (1.0 - side * self.mmf[m] * tnc / tmmr))
        cands = np.flatnonzero(self.size[:, m] * side < 0)
        cands = cands[cands != a]
        cand_equity = self._row_values(cands)[0]
        keep = cand_equity > 0
        cands, cand_equity = cands[keep], cand_equity[keep]
        fills: list[Deleveraged] = []
        block = self.env.clock.block
        for k in self._adl_order(cands, m, cand_equity):
            j = int(cands[k])
            s_a = float(self.size[a, m])
            if s_a == 0:
                break
            s_j = float(self.size[j, m])
            if abs(s_j) < abs(s_a):
                d_a, d_j = s_j, -s_j  # j's whole position offsets part of a's
            else:
                d_a, d_j = -s_a, s_a  # the rest of a's position
            change_j = d_j * (P - pb)  # j's equity change from closing at pb instead of the oracle
            if cand_equity[k] + change_j < 0:  # j is touched once: its pre-ADL equity is current
                continue
            self._fill(np.array([a, j]), m, np.array([d_a, d_j]), pb)
            self.socialised_loss_usd += max(-change_j, 0.0)
            self.adl_count += 1
            fills.append(self.env.emit(Deleveraged(block, self.id, int(j), self.assets[m], d_j, pb)))
        self._write_off_if_flat(a)
        return fills

    def _adl_order(self, cands: np.ndarray, m: int, equity: np.ndarray) -> np.ndarray:
        """Positions in `cands` (offsetting accounts, with their equity) in deleveraging order, at most
        `max_deleveraging_accounts_to_iterate` of them."""
        n = cands.size
        cap = min(self.params.max_deleveraging_accounts_to_iterate, n)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if self.params.adl_ranking == "pseudo_random":
            # dYdX deleveraging.go: start from a pseudo-random subaccount and iterate in order
            rng = np.random.default_rng([self.params.adl_seed, max(int(self.env.clock.block), 0)])
            return (np.arange(cap) + int(rng.integers(n))) % n
        # Hyperliquid docs: (mark_price / entry_price) · (notional_position / account_value); entry/mark for shorts
        P = self.prices()[m]
        s = self.size[cands, m]
        entry_px = self.entry_notional[cands, m] / s
        entry_px = np.where(entry_px > 0, entry_px, P)
        score = (P / entry_px) ** np.sign(s) * (np.abs(s) * P / equity)
        top = np.argpartition(-score, cap - 1)[:cap] if cap < n else np.arange(n)
        return top[np.lexsort((top, -score[top]))]  # best first, ties by account index

    def _write_off_if_flat(self, account: int) -> None:
        """A flat account left with negative collateral is written off into the deficit (bad debt)."""
        if np.any(self.size[account] != 0) or self.collateral[account] >= 0:
            return
        amount = -float(self.collateral[account])
        self.collateral[account] = 0.0
        self.deficit_usd += amount
        self._touch()
        if amount > DUST_USD:
            self.env.emit(BadDebt(self.env.clock.block, self.id, int(account), self.quote, amount, amount))

    def _adl_state(self) -> tuple:
        """What a deleveraging pass reads: `state_key()` (positions, collateral, oracle prices, funding index), the
        insurance fund, controlled flags, and this block's liquidation limits and attempts (the parameters are
        frozen: no governance action sets a perp DEX's keys)."""
        return self.state_key() + (
            self.insurance_fund_usd(),
            self.controlled.tobytes(),
            tuple(self._block_insurance.items()),
            frozenset(self._block_liquidated),
            tuple(self._block_notional.items()),
            self._block_adl_attempts,
        )

    def _auto_deleverage(self) -> None:
        """Deleverage bankrupt accounts whose liquidation the insurance fund cannot cover (dYdX PrepareCheckState)."""
        self._roll_block()
        state = self._adl_state()
        if state == self._adl_idle:  # nothing read moved since a pass that attempted nothing: it attempts nothing
            return
        self._adl_idle = state  # kept unless this pass attempts a deleveraging (below)
        cap = self.params.max_deleveraging_attempts_per_block
        v, pr = self._values(), self.params
        bankrupt = np.flatnonzero((v["equity"] < 0) & (v["mmr"] > 0) & ~self.controlled)
        if bankrupt.size == 0 or cap == 0:
            return
        # upper bound of the fund payout of each bankrupt account (largest whole position, ABR <= 1, fillable
        # price unclamped): payout = PMMR·max(ABR·SMMR − TNC/TMMR, 0); accounts the fund can surely cover
        # are left to liquidators
        ratio = v["equity"][bankrupt] / v["mmr"][bankrupt]
        pmmr = np.abs(self.size[bankrupt]) * (self.prices() * self.mmf)
        bound = pmmr.max(axis=1) * np.maximum(pr.spread_to_maintenance_margin_ratio - ratio, 0.0)
        # what each may still draw this block: min(fund, limit − drawn), as preview_liquidation checks it (dYdX
        # x/clob PrepareCheckState deleverages when the insurance fund cannot cover; deleveraging.go)
        drawn = np.zeros(self.n_accounts)  # USD of insurance each account already drew in this block
        for k, usd in self._block_insurance.items():
            drawn[k] = usd
        available = np.minimum(self.insurance_fund_usd(), pr.max_insurance_lost_per_block_usd - drawn[bankrupt])
        for a in bankrupt[bound > available]:
            if self._block_adl_attempts >= cap:
                break
            while self._block_adl_attempts < cap:
                eq, mmr = self._row_values(np.array([a]))
                if not (eq[0] < 0 and mmr[0] > 0):
                    break
                try:
                    pv = self.preview_liquidation(int(a))
                except Revert:
                    break
                if not pv.adl:
                    break
                self._block_adl_attempts += 1
                self._adl_idle = None
                if not self.deleverage(int(a), pv.market):
                    break

    # --- accrual -----------------------------------------------------------------------------------------
    def funding_rate_now(self) -> np.ndarray:
        """8-hour funding rate per market from the taker imbalance (GMX v2 getNextFundingFactorPerSecond,
        exponent 1) plus the default rate, clamped to ±factor·(IMF − MMF) (dYdX)."""
        long_ = np.maximum(self.size, 0.0).sum(axis=0)
        short = np.maximum(-self.size, 0.0).sum(axis=0)
        if self.vault_account is not None:
            sv = self.size[self.vault_account]
            long_, short = long_ - np.maximum(sv, 0.0), short - np.maximum(-sv, 0.0)
        total = long_ + short
        with np.errstate(divide="ignore", invalid="ignore"):
            imbalance = np.where(total > 0, (long_ - short) / total, 0.0)
        rate = self.default_rate + self.funding_factor * FUNDING_PERIOD_SECONDS * imbalance
        return np.clip(rate, -self.max_rate, self.max_rate)

    def accrue(self, dt_seconds: float) -> None:
        """Apply the funding ticks due in `dt_seconds` (index += R_8h·interval/8h·oracle price, dYdX funding
        index) and, if enabled, deleverage bankrupt accounts the insurance fund cannot cover."""
        if not dt_seconds >= 0:
            raise ValueError(f"dt_seconds must be >= 0, got {dt_seconds}")
        self._funding_elapsed += dt_seconds
        ticks = np.floor(self._funding_elapsed / self.funding_interval)
        if np.any(ticks > 0):
            rate = self.funding_rate_now()
            p = self.prices()
            d_index = np.where(ticks > 0, ticks * rate * (self.funding_interval / FUNDING_PERIOD_SECONDS) * p, 0.0)
            self.funding_volume_usd += float(np.abs(d_index) @ self.open_interest())
            self.funding_index = self.funding_index + d_index
            self.funding_rate_8h = np.where(ticks > 0, rate, self.funding_rate_8h)
            self._funding_elapsed -= ticks * self.funding_interval
        if self.params.auto_deleverage:
            self._auto_deleverage()

    # --- reporting ---------------------------------------------------------------------------------------
    def _book_sums(self) -> tuple[np.ndarray, float, float, float, int, float]:
        """(long OI per market USD, short OI USD, collateral USD, equity USD, accounts unhealthy, negative equity
        USD) over the whole book, kept while `_values`' key (oracle prices, funding index, state version) holds."""
        v = self._values()
        key = self._cache_key
        if self._sums_key != key:
            p = self.prices()
            self._sums = (
                v["oi"] * p,
                float(np.maximum(-self.size, 0.0).sum(axis=0) @ p),
                float(self.collateral.sum()),
                float(v["equity"].sum()),
                int(np.sum(v["health"] < 1.0)),
                float(np.maximum(-v["equity"], 0.0).sum()),
            )
            self._sums_key = key
        return self._sums

    def metrics(self) -> dict[str, float]:
        oi_usd, short_usd, collateral_usd, equity_usd, unhealthy, negative_usd = self._book_sums()
        fund = self.insurance_fund_usd()
        out = {
            "open_interest_long_usd": float(oi_usd.sum()),
            "open_interest_short_usd": short_usd,
            "collateral_usd": collateral_usd,
            "equity_usd": equity_usd,
            "accounts_unhealthy": unhealthy,
            "insurance_fund_usd": fund,
            "insurance_drawdown_usd": max(self._fund_peak - fund, 0.0),
            "insurance_paid_usd": self.insurance_paid_usd,
            "liquidation_fees_usd": self.liquidation_fees_usd,
            "liquidated_notional_usd": self.liquidated_notional_usd,
            "liquidations": self.n_liquidations,
            "adl_count": self.adl_count,
            "socialised_loss_usd": self.socialised_loss_usd,
            "deficit_usd": self.deficit_usd,
            "bad_debt_usd": self.deficit_usd + negative_usd,
            "funding_volume_usd": self.funding_volume_usd,
        }
        for k, a in enumerate(self.assets):
            out[f"open_interest_usd_{a}"] = float(oi_usd[k])
            out[f"funding_rate_8h_{a}"] = float(self.funding_rate_8h[k])
        return out

    def exposures(self) -> list[Exposure]:
        """Holds the deposited USDC (and the fund's); owes each market's open positions (long OI, units)."""
        led = self.env.ledger
        out = [Exposure("holds", self.quote, led.balance(self.id, self.quote))]
        fund = self.insurance_fund_usd()
        if fund > 0:
            out.append(Exposure("holds", self.quote, fund, counterparty=self.insurance))
        for k, a in enumerate(self.assets):
            oi = float(self.open_interest()[k])
            if oi > 0:
                out.append(Exposure("owes", a, oi))
        return out

    # --- controller entry points (Euler v2 EVC, docs/margin-methods.md 9.1) ----------------------------------
    def set_controlled(self, rows, flag: bool = True) -> None:
        """Mark rows as controlled (EVC controller enabled) or release them."""
        self.controlled[self._check_accounts(rows)] = bool(flag)

    def controller_close(
        self, account: int, fraction: float, liquidator: str, liquidator_row: int | None = None, penalty: float = 0.0
    ) -> Liquidated | None:
        """Controller liquidation (EVC controlCollateral): `fraction` of every position moves to the liquidator's
        DEX account at the oracle price, and the liquidator gets penalty·|notional closed| out of the account's
        collateral, capped at the account's positive equity (design choice: the penalty never creates bad debt).
        No health check, no insurance fund, no block limits. The liquidator's account must stay above initial
        margin. None if the account is flat. With several markets the event joins their symbols with '+' and
        `debt_repaid` is the notional in USD."""
        a = int(self._check_accounts(np.array([account]))[0])
        if not 0.0 < fraction <= 1.0:
            raise Revert(f"{self.id}: fraction must be in (0, 1], got {fraction}")
        if not 0.0 <= penalty < 1.0:
            raise Revert(f"{self.id}: penalty must be in [0, 1), got {penalty}")
        la = self._liquidator_account(liquidator, liquidator_row)
        if la == a:
            raise Revert(f"{self.id}: an account cannot liquidate itself")
        markets = np.flatnonzero(self.size[a] != 0)
        if markets.size == 0:
            return None
        p = self.prices()
        eq, mmr = self._row_values(np.array([a]))
        h = float(eq[0] / mmr[0]) if mmr[0] > 0 else np.inf
        pair = np.array([a, la])
        saved = [arr[pair].copy() for arr in (self.collateral, self.size, self.entry_notional, self.funding_snapshot)]
        closed = np.zeros(len(self.assets))
        try:
            for m in markets:
                d = -self.size[a, m] if fraction == 1.0 else -fraction * self.size[a, m]
                self._check_margin(np.array([la]), int(m), np.array([-d]), float(p[m]))
                self._fill(pair, int(m), np.array([d, -d]), float(p[m]))  # at the oracle price: equity unchanged
                closed[m] = abs(d)
        except Revert:
            for arr, old in zip((self.collateral, self.size, self.entry_notional, self.funding_snapshot), saved):
                arr[pair] = old
            self._touch()
            raise
        notional = float(closed @ p)
        fee = min(penalty * notional, max(float(eq[0]), 0.0))
        self.collateral[a] -= fee
        self.collateral[la] += fee
        self._touch()
        self.n_liquidations += 1
        self.liquidated_notional_usd += notional
        names = [self.assets[m] for m in markets]
        units = float(closed[markets[0]]) if len(names) == 1 else notional
        return self.env.emit(
            Liquidated(
                self.env.clock.block,
                self.id,
                a,
                liquidator,
                "+".join(names),
                self.quote,
                units,
                notional,
                0.0,
                notional,
                notional,
                fee,
                h,
            )
        )

    def settle_out(self, account: int, amount_usd: float, to_holder: str, asset: str | None = None) -> float:
        """Withdraw up to `amount_usd` of the account's quote to `to_holder`: at most its equity above the
        maintenance requirement (unrealised PnL included, the quote balance may go negative as in dYdX); returns
        USD moved. No initial-margin check: the controller decides."""
        a = int(self._check_accounts(np.array([account]))[0])
        if asset not in (None, self.quote):
            return 0.0
        eq, mmr = (float(x[0]) for x in self._row_values(np.array([a])))
        x = min(float(amount_usd), max(eq - mmr, 0.0), self.env.ledger.balance(self.id, self.quote))
        if not x > 0:
            return 0.0
        self.env.ledger.transfer(self.quote, self.id, to_holder, x)
        self.collateral[a] -= x
        self._touch()
        return x

    def settle_in(self, account: int, amount_usd: float, from_holder: str, asset: str | None = None) -> float:
        """Deposit up to `amount_usd` of `from_holder`'s quote into the account's collateral; returns USD moved."""
        a = int(self._check_accounts(np.array([account]))[0])
        if asset not in (None, self.quote):
            return 0.0
        x = min(float(amount_usd), self.env.ledger.balance(from_holder, self.quote))
        if not x > 0:
            return 0.0
        self.env.ledger.transfer(self.quote, from_holder, self.id, x)
        self.collateral[a] += x
        self._touch()
        return x

    def write_off(self, account: int) -> float:
        """Negative collateral of a flat account: the insurance fund pays first (dYdX covers liquidation losses
        from it), the rest goes to the deficit as bad debt (`_write_off_if_flat`); returns bad debt USD."""
        a = int(self._check_accounts(np.array([account]))[0])
        if np.any(self.size[a] != 0) or self.collateral[a] >= 0:
            return 0.0
        pay = min(-float(self.collateral[a]), self.insurance_fund_usd())
        if pay > 0:
            self.env.ledger.transfer(self.quote, self.insurance, self.id, pay)
            self.collateral[a] += pay
            self.insurance_paid_usd += pay
            self._touch()
        before = self.deficit_usd
        self._write_off_if_flat(a)
        return self.deficit_usd - before
