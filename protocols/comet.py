"""Compound III (Comet): one borrowable base asset, collateral assets that are never lent out, `absorb` of
underwater accounts onto the protocol's balance sheet and `buyCollateral` of what it absorbed.

Source: compound-finance/comet contracts/Comet.sol and CometCore.sol (functions cited per method).

Accounts are rows of arrays: `principal[n]` is the signed base principal (CometCore.presentValue: a supply
balance is principal x baseSupplyIndex, a borrow balance principal x baseBorrowIndex) and `coll[n, A]` the
collateral in token units (column 0, the base, is always 0 so that asset indices match `assets`). Like the
contract, totals of principal are counters (`total_supply_base`, `total_borrow_base`) and the protocol is
one ledger holder (its id) holding every base and collateral token. Reserves are not stored: they are
what the protocol holds beyond what it owes (getReserves), and collateral reserves are collateral tokens
held beyond users' balances (getCollateralReserves). Amounts are float64 token units; the contract's
integer scales (1e15 index, 1e18 factors, 1e8 prices) are not reproduced, so figures match its tests to
float precision, not to the wei.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from defistress.protocols.base import ControlledRows, Env, Exposure, MarginProtocol, Revert
from defistress.protocols.events import Generic, Liquidated
from defistress.protocols.ledger import InsufficientBalance

SECONDS_PER_YEAR = 31_536_000.0  # CometCore.SECONDS_PER_YEAR
MAX_ASSETS = 12  # Comet.sol packs 12 collateral assets (CometWithExtendedAssetList: up to 24)


@dataclass(frozen=True)
class CometAsset:
    """One collateral asset (CometConfiguration.AssetConfig), factors as fractions, supply cap in tokens."""

    symbol: str
    borrow_collateral_factor: float
    liquidate_collateral_factor: float
    liquidation_factor: float
    supply_cap: float = math.inf


@dataclass(frozen=True)
class CometRates:
    """The kinked supply and borrow rate curves, per year (Comet constructor divides by SECONDS_PER_YEAR).
    Defaults: cUSDCv3 on Ethereum at launch (comet deployments/mainnet/usdc/configuration.json)."""

    supply_kink: float = 0.8
    supply_base: float = 0.0
    supply_slope_low: float = 0.0325
    supply_slope_high: float = 0.4
    borrow_kink: float = 0.8
    borrow_base: float = 0.015
    borrow_slope_low: float = 0.035
    borrow_slope_high: float = 0.25


@dataclass(frozen=True)
class CometParams:
    """A Comet market: base asset, collateral assets, rate curves, store front factor, target reserves (base
    units) and the smallest borrow (base units). Defaults: cUSDCv3 at launch."""

    base: str
    assets: tuple[CometAsset, ...]
    rates: CometRates = field(default_factory=CometRates)
    store_front_price_factor: float = 0.5
    target_reserves: float = 5_000_000.0
    base_borrow_min: float = 100.0

    def __post_init__(self) -> None:
        # the constructor's sanity checks (Comet.constructor, getPackedAssetInternal)
        if not 0.0 <= self.store_front_price_factor <= 1.0:
            raise ValueError(
                f"store_front_price_factor must be in [0, 1] (BadDiscount), got {self.store_front_price_factor}"
            )
        if len(self.assets) > MAX_ASSETS:
            raise ValueError(f"at most {MAX_ASSETS} collateral assets (TooManyAssets), got {len(self.assets)}")
        for a in self.assets:
            if a.symbol == self.base:
                raise ValueError(f"collateral {a.symbol!r} cannot be the base asset")
            if not a.borrow_collateral_factor < a.liquidate_collateral_factor:
                raise ValueError(f"{a.symbol}: borrow_collateral_factor must be below liquidate_collateral_factor")
            if a.liquidate_collateral_factor > 1.0:
                raise ValueError(f"{a.symbol}: liquidate_collateral_factor must be <= 1 (LiquidateCFTooLarge)")
            if not 0.0 <= a.liquidation_factor <= 1.0:
                raise ValueError(f"{a.symbol}: liquidation_factor must be in [0, 1]")


@dataclass
class LiquidatorPoints:
    """Comet.liquidatorPoints: what governance may reward absorbers for (approx_spend in ETH: gas x base fee)."""

    num_absorbs: int = 0
    num_absorbed: int = 0
    approx_spend_eth: float = 0.0


class Comet(ControlledRows, MarginProtocol):
    """A Comet market over `assets = [base, *collaterals]` with n accounts held as arrays."""

    def __init__(self, protocol_id: str, params: CometParams, oracles: dict, env: Env):
        self.id = protocol_id
        self.env = env
        self.p = params
        self.base = params.base
        self.assets = [params.base] + [a.symbol for a in params.assets]
        self.idx = {s: i for i, s in enumerate(self.assets)}
        missing = [s for s in self.assets if s not in oracles]
        if missing:
            raise ValueError(f"{protocol_id}: no price feed for {missing}")
        self.oracles = [oracles[s] for s in self.assets]
        # per-asset arrays in `assets` order; the base's column has zero factors (it is not collateral)
        self.ltv = np.array([0.0] + [a.borrow_collateral_factor for a in params.assets])
        self.lt = np.array([0.0] + [a.liquidate_collateral_factor for a in params.assets])
        self.liquidation_factor = np.array([0.0] + [a.liquidation_factor for a in params.assets])
        self.supply_cap = np.array([math.inf] + [a.supply_cap for a in params.assets])
        n_a = len(self.assets)
        self.principal = np.zeros(0)
        self.coll = np.zeros((0, n_a))
        self.totals_collateral = np.zeros(n_a)  # users' collateral per asset (TotalsCollateral.totalSupplyAsset)
        self.total_supply_base = 0.0  # principal (TotalsBasic.totalSupplyBase)
        self.total_borrow_base = 0.0
        self.base_supply_index = 1.0  # CometCore.BASE_INDEX_SCALE = 1.0
        self.base_borrow_index = 1.0
        self.points: dict[str, LiquidatorPoints] = {}
        self.liquidated_debt_usd = 0.0
        self.absorbed_shortfall_usd = 0.0  # debt absorbed beyond the market value of the collateral, USD
        self.shortfall_usd_by_collateral = np.zeros(n_a)
        self.absorbed_accounts = 0
        self.collateral_sold_base = 0.0  # base tokens paid by buyers of collateral (cumulative)
        self.collateral_discount_usd = 0.0  # value of collateral sold above what buyers paid, USD (cumulative)
        self.reserves_low_usd = math.inf  # lowest base reserves seen at a block's end, USD
        self.collateral_reserves_peak_usd = 0.0  # most absorbed collateral held at a block's end, USD
        self.lender_row: int | None = None

    # --- views ------------------------------------------------------------------------------------------
    @property
    def n_accounts(self) -> int:
        return self.principal.shape[0]

    def prices(self) -> np.ndarray:
        """Oracle prices, USD per token, in `assets` order (Comet.getPrice)."""
        return np.array([o.price for o in self.oracles], dtype=float)

    def present_value(self, principal: np.ndarray) -> np.ndarray:
        """Signed base balance in tokens: supply at the supply index, borrow at the borrow index (presentValue)."""
        principal = np.asarray(principal, dtype=float)
        return np.where(principal >= 0, principal * self.base_supply_index, principal * self.base_borrow_index)

    def principal_value(self, balance: np.ndarray) -> np.ndarray:
        """Signed principal of a signed base balance (CometCore.principalValue)."""
        balance = np.asarray(balance, dtype=float)
        return np.where(balance >= 0, balance / self.base_supply_index, balance / self.base_borrow_index)

    def balance(self) -> np.ndarray:
        """Signed base balance per account, token units (> 0 supplied, < 0 borrowed)."""
        return self.present_value(self.principal)

    def collateral(self) -> np.ndarray:
        """Collateral per account and asset, token units."""
        return self.coll

    def debt(self) -> np.ndarray:
        """Debt per account and asset, token units (only the base column is non-zero)."""
        out = np.zeros_like(self.coll)
        out[:, 0] = np.maximum(-self.balance(), 0.0)
        return out

    def account_usd(self) -> tuple[np.ndarray, np.ndarray]:
        """(collateral USD, debt USD) per account at oracle prices."""
        p = self.prices()
        return self.coll @ p, np.maximum(-self.balance(), 0.0) * p[0]

    def weighted_collateral_usd(self) -> np.ndarray:
        """Per account: sum of collateral x price x liquidateCollateralFactor, USD (isLiquidatable's liquidity)."""
        return self.coll @ (self.prices() * self.lt)

    def health(self) -> np.ndarray:
        """Liquidation-weighted collateral / debt at oracle prices (inf with no debt); < 1 exactly when
        Comet.isLiquidatable is true (liquidity < 0)."""
        _, debt_usd = self.account_usd()
        w = self.weighted_collateral_usd()
        out = np.full(self.n_accounts, np.inf)
        np.divide(w, debt_usd, out=out, where=debt_usd > 0)
        return out

    def is_liquidatable(self, rows) -> np.ndarray:
        """Comet.isLiquidatable for each row."""
        return self.health()[np.asarray(rows, dtype=np.int64)] < 1.0

    def is_borrow_collateralized(self, rows) -> np.ndarray:
        """Comet.isBorrowCollateralized: borrow-weighted collateral covers the debt."""
        rows = np.asarray(rows, dtype=np.int64)
        p = self.prices()
        debt_usd = np.maximum(-self.present_value(self.principal[rows]), 0.0) * p[0]
        return self.coll[rows] @ (p * self.ltv) >= debt_usd

    def liquidatable(self) -> np.ndarray:
        return np.flatnonzero((self.health() < 1.0) & ~self.controlled)

    def reserves(self) -> float:
        """Base reserves, tokens (Comet.getReserves): balance - present supply + present borrows."""
        bal = self.env.ledger.balance(self.id, self.base)
        return bal - self.total_supply_base * self.base_supply_index + self.total_borrow_base * self.base_borrow_index

    def collateral_reserves(self, asset: str) -> float:
        """Collateral tokens the protocol owns (Comet.getCollateralReserves): balance - users' collateral."""
        j = self.idx[asset]
        return self.env.ledger.balance(self.id, asset) - self.totals_collateral[j]

    def total_supply(self) -> float:
        return self.total_supply_base * self.base_supply_index

    def total_borrow(self) -> float:
        return self.total_borrow_base * self.base_borrow_index

    # --- state setters (CometHarness: setBasePrincipal, setTotalsBasic, setCollateralBalance) -------------
    def set_base_principal(self, row: int, principal: float) -> None:
        """Write an account's principal (claims only: pair it with ledger movements or totals)."""
        self.principal[int(row)] = float(principal)

    def set_totals_basic(
        self,
        total_supply_base: float | None = None,
        total_borrow_base: float | None = None,
        base_supply_index: float | None = None,
        base_borrow_index: float | None = None,
    ) -> None:
        """Write totals and indices, as CometHarness.setTotalsBasic does (a loaded snapshot, a contract test)."""
        if total_supply_base is not None:
            self.total_supply_base = float(total_supply_base)
        if total_borrow_base is not None:
            self.total_borrow_base = float(total_borrow_base)
        if base_supply_index is not None:
            self.base_supply_index = float(base_supply_index)
        if base_borrow_index is not None:
            self.base_borrow_index = float(base_borrow_index)

    def set_collateral_balance(self, row: int, asset: str, amount: float) -> None:
        """Write an account's collateral balance (CometHarness.setCollateralBalance; totals are not changed)."""
        self.coll[int(row), self.idx[asset]] = float(amount)

    def set_totals_collateral(self, asset: str, amount: float) -> None:
        self.totals_collateral[self.idx[asset]] = float(amount)

    # --- user actions (batched over accounts) -----------------------------------------------------------
    def add_accounts(self, n: int) -> np.ndarray:
        """Append `n` empty accounts; returns their indices."""
        start = self.n_accounts
        self.principal = np.concatenate([self.principal, np.zeros(n)])
        self.coll = np.vstack([self.coll, np.zeros((n, len(self.assets)))])
        return np.arange(start, start + n)

    def supply(self, holder: str, accounts, asset: str, amounts) -> None:
        """Comet.supply for many accounts: collateral, or base (which repays debt first, then supplies)."""
        if asset == self.base:
            self.supply_base(holder, accounts, amounts)
        else:
            self.supply_collateral(holder, accounts, asset, amounts)

    def supply_collateral(self, holder: str, accounts, asset: str, amounts) -> None:
        """Comet.supplyCollateral: reverts SupplyCapExceeded when the asset's total would pass its cap."""
        if asset not in self.idx or asset == self.base:
            raise Revert(f"{self.id}: {asset!r} is not a collateral asset (BadAsset); allowed: {self.assets[1:]}")
        j = self.idx[asset]
        accounts = np.asarray(accounts, dtype=np.int64)
        amounts = np.broadcast_to(np.asarray(amounts, dtype=float), accounts.shape)
        total = float(amounts.sum())
        if self.totals_collateral[j] + total > self.supply_cap[j] * (1 + 1e-12):
            raise Revert(
                f"{self.id}: supply of {total:.6g} {asset} would pass its cap {self.supply_cap[j]:.6g} "
                "(SupplyCapExceeded)"
            )
        self._pull(asset, holder, total)
        np.add.at(self.coll[:, j], accounts, amounts)
        self.totals_collateral[j] += total

    def supply_base(self, holder: str, accounts, amounts) -> None:
        """Comet.supplyBase: the amount first repays debt, the rest is supplied (repayAndSupplyAmount)."""
        accounts = np.asarray(accounts, dtype=np.int64)
        amounts = np.broadcast_to(np.asarray(amounts, dtype=float), accounts.shape)
        if np.unique(accounts).size != accounts.size:
            raise ValueError("supply_base: each account at most once per call")
        self._pull(self.base, holder, float(amounts.sum()))
        old = self.principal[accounts]
        new = self.principal_value(self.present_value(old) + amounts)
        repay, supply = _repay_and_supply(old, new)
        self.total_supply_base += float(supply.sum())
        self.total_borrow_base -= float(repay.sum())
        self.principal[accounts] = new

    def repay(self, holder: str, accounts, asset: str, amounts) -> np.ndarray:
        """Repay base debt of many accounts (capped at what each owes); returns the amounts repaid."""
        if asset != self.base:
            raise Revert(f"{self.id}: only the base {self.base} can be repaid, got {asset!r}")
        accounts = np.asarray(accounts, dtype=np.int64)
        owed = np.maximum(-self.present_value(self.principal[accounts]), 0.0)
        paid = np.minimum(np.asarray(amounts, dtype=float), owed)
        self.supply_base(holder, accounts, paid)
        return paid

    def supply_liquidity(self, holder: str, asset: str, amount: float) -> None:
        """Passive suppliers deposit base (one lenders' row, created on first use)."""
        if asset != self.base:
            raise Revert(f"{self.id}: lenders supply the base {self.base}, not {asset!r}")
        if self.lender_row is None:
            self.lender_row = int(self.add_accounts(1)[0])
        self.supply_base(holder, np.array([self.lender_row]), np.array([float(amount)]))

    def borrow(self, holder: str, accounts, asset: str, amounts) -> None:
        """Comet.withdrawBase past zero: BorrowTooSmall under baseBorrowMin, NotCollateralized past the
        borrow collateral factors, and no more than the protocol's cash."""
        self._withdraw_base(holder, accounts, asset, amounts, genesis=False)

    def seed_borrow(self, holder: str, accounts, asset: str, amounts) -> None:
        """Genesis snapshot of an existing book: debt as if prices had moved since origination, so only
        the liquidation factors must cover it (not the borrow factors), and baseBorrowMin is not applied."""
        self._withdraw_base(holder, accounts, asset, amounts, genesis=True)

    def _withdraw_base(self, holder, accounts, asset, amounts, genesis: bool) -> None:
        if asset != self.base:
            raise Revert(f"{self.id}: only the base {self.base} can be borrowed, got {asset!r}")
        accounts = np.asarray(accounts, dtype=np.int64)
        amounts = np.broadcast_to(np.asarray(amounts, dtype=float), accounts.shape)
        if np.unique(accounts).size != accounts.size:
            raise ValueError("borrow: each account at most once per call")
        old = self.principal[accounts]
        bal = self.present_value(old) - amounts
        new = self.principal_value(bal)
        if not genesis and np.any((bal < 0) & (-bal < self.p.base_borrow_min)):
            raise Revert(f"{self.id}: borrow below baseBorrowMin {self.p.base_borrow_min} {self.base} (BorrowTooSmall)")
        total = float(amounts.sum())
        if self.env.ledger.balance(self.id, self.base) < total:
            raise Revert(f"{self.id}: not enough {self.base} cash to lend {total:.6g}")
        self.principal[accounts] = new
        ok = self.is_borrow_collateralized(accounts) if not genesis else ~self.is_liquidatable(accounts)
        if not np.all(ok | (bal >= 0)):
            self.principal[accounts] = old
            bad = accounts[~ok & (bal < 0)]
            raise Revert(
                f"{self.id}: {bad.size} account(s) not collateralized, e.g. #{int(bad[0])} (NotCollateralized)"
            )
        withdraw, borrow = _withdraw_and_borrow(old, new)
        self.total_supply_base -= float(withdraw.sum())
        self.total_borrow_base += float(borrow.sum())
        self.env.ledger.transfer(self.base, self.id, holder, total)

    def withdraw_collateral(self, holder: str, account: int, asset: str, amount: float) -> None:
        """Comet.withdrawCollateral: reverts NotCollateralized if the borrow factors no longer cover the debt."""
        a, j = int(account), self.idx[asset]
        if amount > self.coll[a, j] * (1 + 1e-12):
            raise Revert(f"{self.id}: account #{a} holds {self.coll[a, j]:.6g} {asset}, cannot withdraw {amount:.6g}")
        amount = min(float(amount), float(self.coll[a, j]))
        self.coll[a, j] -= amount
        if not self.is_borrow_collateralized([a])[0]:
            self.coll[a, j] += amount
            raise Revert(f"{self.id}: account #{a} would not be collateralized (NotCollateralized)")
        self.totals_collateral[j] -= amount
        self.env.ledger.transfer(asset, self.id, holder, amount)

    def _pull(self, token: str, holder: str, amount: float) -> None:
        try:
            self.env.ledger.transfer(token, holder, self.id, amount)
        except InsufficientBalance as exc:
            raise Revert(f"{self.id}: {exc}") from None

    # --- liquidation: absorb and buyCollateral ----------------------------------------------------------
    def absorb(self, absorber: str, accounts, base_fee_gwei: float = 0.0, gas_used: float = 0.0) -> list[Liquidated]:
        """Comet.absorb: every account must be liquidatable (else the call reverts NotLiquidatable). Each one's
        collateral moves to the protocol, valued at price x liquidationFactor, and its debt is cleared; any
        excess credit becomes a supply balance, any shortfall is taken by reserves (absorbInternal). The
        absorber earns points only (liquidatorPoints: absorbs, accounts, gas x base fee in ETH)."""
        rows = np.atleast_1d(np.asarray(accounts, dtype=np.int64))
        if rows.size == 0:
            raise Revert(f"{self.id}: absorb of no accounts")
        if np.unique(rows).size != rows.size:
            raise Revert(f"{self.id}: absorb lists an account twice")
        if rows.min() < 0 or rows.max() >= self.n_accounts:
            raise Revert(f"{self.id}: absorb of an unknown account")
        for a in rows:
            self._revert_if_controlled(a)
        health_before = self.health()[rows]
        if np.any(health_before >= 1.0):
            raise Revert(
                f"{self.id}: account #{int(rows[health_before >= 1.0][0])} is not liquidatable (NotLiquidatable)"
            )
        p = self.prices()
        old_principal = self.principal[rows]
        old_balance = self.present_value(old_principal)
        seized = self.coll[rows].copy()
        value = seized * p  # USD per asset (AbsorbCollateral.usdValue)
        delta_balance = (value @ self.liquidation_factor) / p[0]  # divPrice(deltaValue, basePrice)
        new_balance = np.maximum(old_balance + delta_balance, 0.0)  # excess debt absorbed by reserves
        new_principal = self.principal_value(new_balance)
        repay, supply = _repay_and_supply(old_principal, new_principal)
        self.total_supply_base += float(supply.sum())
        self.total_borrow_base -= float(repay.sum())
        self.principal[rows] = new_principal
        self.coll[rows] = 0.0
        self.totals_collateral -= seized.sum(axis=0)
        pts = self.points.setdefault(absorber, LiquidatorPoints())
        pts.num_absorbs += 1
        pts.num_absorbed += int(rows.size)
        pts.approx_spend_eth += float(gas_used) * float(base_fee_gwei) * 1e-9
        block = self.env.clock.block
        events = []
        base_paid_out = new_balance - old_balance  # AbsorbDebt.basePaidOut
        for k, a in enumerate(rows):
            debt = float(-old_balance[k]) if old_balance[k] < 0 else 0.0
            coll_usd = float(value[k].sum())
            debt_usd = debt * p[0]
            short = max(debt_usd - coll_usd, 0.0)  # what reserves lose at market value
            self.absorbed_shortfall_usd += short
            if short > 0 and coll_usd > 0:
                self.shortfall_usd_by_collateral += short * value[k] / coll_usd
            elif short > 0:
                self.shortfall_usd_by_collateral[0] += short
            names = [self.assets[j] for j in np.flatnonzero(seized[k] > 0)]
            amount = float(seized[k, self.idx[names[0]]]) if len(names) == 1 else coll_usd
            self.liquidated_debt_usd += debt_usd
            self.absorbed_accounts += 1
            events.append(
                self.env.emit(
                    Liquidated(
                        block,
                        self.id,
                        int(a),
                        absorber,
                        self.base,
                        "+".join(names),
                        debt,
                        amount,
                        0.0,
                        debt_usd,
                        coll_usd,
                        max(coll_usd - float(base_paid_out[k]) * p[0], 0.0),  # the borrower's loss: (1 - LF) x value
                        float(health_before[k]),
                    )
                )
            )
        self.env.emit(
            Generic(
                block,
                self.id,
                "absorb",
                {
                    "absorber": absorber,
                    "accounts": int(rows.size),
                    "base_paid_out": float(base_paid_out.sum()),
                    "approx_spend_eth": float(gas_used) * float(base_fee_gwei) * 1e-9,
                },
            )
        )
        return events

    def quote_collateral(self, asset: str, base_amount: float) -> float:
        """Comet.quoteCollateral: collateral tokens for `base_amount` at the store front discount
        storeFrontPriceFactor x (1 - liquidationFactor) off the oracle price."""
        j = self.idx[asset]
        if j == 0:
            raise Revert(f"{self.id}: {asset!r} is the base, not a collateral (BadAsset)")
        p = self.prices()
        discount = self.p.store_front_price_factor * (1.0 - self.liquidation_factor[j])
        return float(p[0] * base_amount / (p[j] * (1.0 - discount)))

    def buy_collateral(
        self, buyer: str, asset: str, min_amount: float, base_amount: float, recipient: str = ""
    ) -> float:
        """Comet.buyCollateral: only while reserves are below targetReserves (else NotForSale); reverts
        TooMuchSlippage under `min_amount` and InsufficientReserves beyond the collateral reserves. Returns
        the collateral bought (tokens)."""
        reserves = self.reserves()
        if reserves >= 0 and reserves >= self.p.target_reserves:
            raise Revert(f"{self.id}: reserves {reserves:.6g} >= target {self.p.target_reserves:.6g} (NotForSale)")
        amount = self.quote_collateral(asset, base_amount)
        if amount < min_amount * (1 - 1e-12):
            raise Revert(f"{self.id}: {amount:.6g} {asset} < minimum {min_amount:.6g} (TooMuchSlippage)")
        if amount > self.collateral_reserves(asset) * (1 + 1e-12):
            raise Revert(
                f"{self.id}: {amount:.6g} {asset} > collateral reserves {self.collateral_reserves(asset):.6g} "
                "(InsufficientReserves)"
            )
        amount = min(amount, self.collateral_reserves(asset))
        self._pull(self.base, buyer, float(base_amount))
        self.env.ledger.transfer(asset, self.id, recipient or buyer, amount)
        p = self.prices()
        self.collateral_sold_base += float(base_amount)
        self.collateral_discount_usd += amount * p[self.idx[asset]] - float(base_amount) * p[0]
        self.env.emit(
            Generic(
                self.env.clock.block,
                self.id,
                "buy_collateral",
                {
                    "buyer": buyer,
                    "asset": asset,
                    "base_amount": float(base_amount),
                    "collateral_amount": amount,
                    "discount_usd": amount * p[self.idx[asset]] - float(base_amount) * p[0],
                },
            )
        )
        return amount

    # --- accrual ------------------------------------------------------------------------------------------
    def utilization(self) -> float:
        """Comet.getUtilization: present borrows / present supply."""
        supply = self.total_supply()
        return self.total_borrow() / supply if supply > 0 else 0.0

    def supply_rate(self, utilization: float | None = None) -> float:
        """Per-year supply rate at `utilization` (Comet.getSupplyRate x SECONDS_PER_YEAR)."""
        u = self.utilization() if utilization is None else utilization
        r = self.p.rates
        return _kinked(u, r.supply_base, r.supply_slope_low, r.supply_slope_high, r.supply_kink)

    def borrow_rate(self, utilization: float | None = None) -> float:
        """Per-year borrow rate at `utilization` (Comet.getBorrowRate x SECONDS_PER_YEAR)."""
        u = self.utilization() if utilization is None else utilization
        r = self.p.rates
        return _kinked(u, r.borrow_base, r.borrow_slope_low, r.borrow_slope_high, r.borrow_kink)

    def accrue(self, dt_seconds: float) -> None:
        """Grow the base indices linearly over `dt_seconds` (Comet.accruedInterestIndices); note the block's
        reserves for the run's extremes."""
        p = self.prices()
        self.reserves_low_usd = min(self.reserves_low_usd, self.reserves() * p[0])
        held = sum(self.collateral_reserves(a) * p[j] for j, a in enumerate(self.assets) if j > 0)
        self.collateral_reserves_peak_usd = max(self.collateral_reserves_peak_usd, float(held))
        if dt_seconds <= 0:
            return
        u = self.utilization()
        sr, br = self.supply_rate(u) / SECONDS_PER_YEAR, self.borrow_rate(u) / SECONDS_PER_YEAR
        self.base_supply_index += self.base_supply_index * sr * dt_seconds
        self.base_borrow_index += self.base_borrow_index * br * dt_seconds

    # --- reporting ----------------------------------------------------------------------------------------
    def insolvent_debt_usd(self) -> np.ndarray:
        coll_usd, debt_usd = self.account_usd()
        return np.maximum(debt_usd - coll_usd, 0.0)

    def losses_by_collateral(self) -> dict[str, float]:
        """Bad debt (USD) by collateral asset: absorbed shortfalls by the collateral that ran short, and
        live insolvent accounts' shortfall in proportion to their collateral values."""
        out = self.shortfall_usd_by_collateral.copy()
        short = self.insolvent_debt_usd()
        bad = np.flatnonzero(short > 0)
        if bad.size:
            vals = self.coll[bad] * self.prices()
            tot = vals.sum(axis=1, keepdims=True)
            shares = np.divide(vals, tot, out=np.zeros_like(vals), where=tot > 0)
            shares[:, 0] += (tot[:, 0] <= 0).astype(float)
            out += short[bad] @ shares
        return {a: float(out[k]) for k, a in enumerate(self.assets) if out[k] > 0}

    def metrics(self) -> dict[str, float]:
        p = self.prices()
        coll_usd, debt_usd = self.account_usd()
        coll_reserves_usd = sum(self.collateral_reserves(a) * p[j] for j, a in enumerate(self.assets) if j > 0)
        return {
            "collateral_usd": float(coll_usd.sum()),
            "debt_usd": float(debt_usd.sum()),
            "accounts_unhealthy": int(np.count_nonzero(self.health() < 1.0)),
            "bad_debt_usd": self.absorbed_shortfall_usd + float(np.maximum(debt_usd - coll_usd, 0.0).sum()),
            "liquidated_debt_usd": self.liquidated_debt_usd,
            "reserves_usd": self.reserves() * p[0],
            "collateral_reserves_usd": float(coll_reserves_usd),
            "utilization": self.utilization(),
            "accounts_absorbed": float(self.absorbed_accounts),
            "reserves_low_usd": min(self.reserves_low_usd, self.reserves() * p[0]),
            "collateral_reserves_peak_usd": max(self.collateral_reserves_peak_usd, float(coll_reserves_usd)),
            "collateral_sold_base": self.collateral_sold_base,
            "collateral_discount_usd": self.collateral_discount_usd,
        }

    def exposures(self) -> list[Exposure]:
        out = []
        for s in self.assets:
            held = self.env.ledger.balance(self.id, s)
            if held > 0:
                out.append(Exposure("holds", s, float(held)))
        if self.total_borrow() > 0:
            out.append(Exposure("receivable", self.base, self.total_borrow()))
        if self.total_supply() > 0:
            out.append(Exposure("owes", self.base, self.total_supply()))
        return out


def _kinked(u: float, base: float, low: float, high: float, kink: float) -> float:
    """Comet.getSupplyRate / getBorrowRate: base + low x u below the kink, + high x (u - kink) above it."""
    if u <= kink:
        return base + low * u
    return base + low * kink + high * (u - kink)


def _repay_and_supply(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Comet.repayAndSupplyAmount, element-wise: the principal change split into repaid and supplied."""
    up = new >= old
    repay = np.where(up, np.where(new <= 0, new - old, np.where(old >= 0, 0.0, -old)), 0.0)
    supply = np.where(up, np.where(new <= 0, 0.0, np.where(old >= 0, new - old, new)), 0.0)
    return repay, supply


def _withdraw_and_borrow(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Comet.withdrawAndBorrowAmount, element-wise: the principal change split into withdrawn and borrowed."""
    down = new <= old
    withdraw = np.where(down, np.where(new >= 0, old - new, np.where(old <= 0, 0.0, old)), 0.0)
    borrow = np.where(down, np.where(new >= 0, 0.0, np.where(old <= 0, old - new, -new)), 0.0)
    return withdraw, borrow
