"""Compound v2: a Comptroller over cToken markets. Suppliers hold cTokens whose exchange rate grows with
interest; borrowers owe underlying that grows with each market's borrow index; an account whose borrows
exceed its collateral-factor-weighted collateral may be liquidated up to the close factor, the liquidator
seizing cTokens worth the repayment times the liquidation incentive.

Sources: compound-finance/compound-protocol contracts/Comptroller.sol (getHypotheticalAccountLiquidityInternal,
liquidateBorrowAllowed, liquidateCalculateSeizeTokens), CToken.sol (exchangeRateStoredInternal, accrueInterest,
liquidateBorrowFresh, seizeInternal, redeemFresh), BaseJumpRateModelV2.sol (the kinked per-block rate).

Accounts are rows of arrays: `coll_scaled[n, A]` holds cToken balances (x `liq_index`, the exchange rate,
for underlying) and `debt_scaled[n, A]` borrow principal divided by the borrow index at borrowing (x
`borrow_index` for what is owed, CToken.borrowBalanceStored). Every row is treated as having entered every
market. The protocol is one ledger holder (its id) holding every market's cash; reserves are a claim on
that cash (totalReserves), not a separate holder. There is no bad-debt write-off in v2: debt left on an
account whose collateral is gone stays on the books.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from defistress.protocols.base import ControlledRows, Env, Exposure, MarginProtocol, Revert
from defistress.protocols.events import Liquidated
from defistress.protocols.ledger import InsufficientBalance
from defistress.protocols.lending import Preview

BLOCKS_PER_YEAR = 2_102_400  # BaseJumpRateModelV2.blocksPerYear (15-second blocks)
SECONDS_PER_YEAR = 365.0 * 86400.0
COLLATERAL_FACTOR_MAX = 0.9  # Comptroller.collateralFactorMaxMantissa
CLOSE_FACTOR_MIN, CLOSE_FACTOR_MAX = 0.05, 0.9  # Comptroller.closeFactorMinMantissa / closeFactorMaxMantissa
PROTOCOL_SEIZE_SHARE_2021 = 0.028  # CTokenInterfaces.protocolSeizeShareMantissa (absent before 2021)


@dataclass(frozen=True)
class JumpRateModel:
    """BaseJumpRateModelV2: per-year parameters; the per-block rates divide by blocksPerYear and the
    multiplier also by the kink, so the rate at the kink is base + multiplier."""

    base_rate_per_year: float = 0.0
    multiplier_per_year: float = 0.05
    jump_multiplier_per_year: float = 1.09
    kink: float = 0.8
    blocks_per_year: float = BLOCKS_PER_YEAR

    def utilization(self, cash, borrows, reserves):
        """utilizationRate: borrows / (cash + borrows - reserves), 0 with no borrows."""
        cash, borrows, reserves = (np.asarray(x, dtype=float) for x in (cash, borrows, reserves))
        den = cash + borrows - reserves
        return np.divide(borrows, den, out=np.zeros(np.broadcast(borrows, den).shape), where=(borrows > 0) & (den > 0))

    def borrow_rate_per_block(self, cash, borrows, reserves):
        """getBorrowRateInternal: util x multiplierPerBlock + base below the kink, plus the jump above it."""
        u = self.utilization(cash, borrows, reserves)
        base = self.base_rate_per_year / self.blocks_per_year
        mult = self.multiplier_per_year / (self.blocks_per_year * self.kink)
        jump = self.jump_multiplier_per_year / self.blocks_per_year
        normal = self.kink * mult + base
        return np.where(u <= self.kink, u * mult + base, (u - self.kink) * jump + normal)

    def supply_rate_per_block(self, cash, borrows, reserves, reserve_factor):
        """getSupplyRate: utilization x borrow rate x (1 - reserve factor)."""
        return (
            self.utilization(cash, borrows, reserves)
            * self.borrow_rate_per_block(cash, borrows, reserves)
            * (1.0 - np.asarray(reserve_factor, dtype=float))
        )


@dataclass(frozen=True)
class CTokenMarket:
    """One cToken market: its collateral factor (Comptroller.markets), reserve factor, initial exchange rate
    (underlying per cToken: 0.02 for most 2019-2020 cTokens) and rate model."""

    symbol: str
    collateral_factor: float
    reserve_factor: float = 0.1
    initial_exchange_rate: float = 0.02
    rate_model: JumpRateModel = field(default_factory=JumpRateModel)
    liquidation_incentive: float | None = None  # None: the Comptroller's (v2 has one; forks set it per market)


@dataclass(frozen=True)
class ComptrollerParams:
    """Close factor (share of one borrow repayable per call), liquidation incentive (1.08 = 8%), and the
    share of seized cTokens kept as reserves (0 in 2020; 2.8% after 2021)."""

    close_factor: float = 0.5
    liquidation_incentive: float = 1.08
    protocol_seize_share: float = 0.0

    def __post_init__(self) -> None:
        if not CLOSE_FACTOR_MIN <= self.close_factor <= CLOSE_FACTOR_MAX:
            raise ValueError(
                f"close_factor must be in [{CLOSE_FACTOR_MIN}, {CLOSE_FACTOR_MAX}], got {self.close_factor}"
            )
        if not self.liquidation_incentive >= 1.0:
            raise ValueError(f"liquidation_incentive must be >= 1, got {self.liquidation_incentive}")
        if not 0.0 <= self.protocol_seize_share < 1.0:
            raise ValueError(f"protocol_seize_share must be in [0, 1), got {self.protocol_seize_share}")


class CompoundV2(ControlledRows, MarginProtocol):
    """Comptroller + cTokens over assets A, n accounts as arrays; the same surface as LendingMarket."""

    def __init__(self, protocol_id: str, markets: list[CTokenMarket], oracles: dict, env: Env, params=None):
        self.id = protocol_id
        self.env = env
        self.params = params or ComptrollerParams()
        self.markets = markets
        self.assets = [m.symbol for m in markets]
        self.idx = {s: i for i, s in enumerate(self.assets)}
        missing = [s for s in self.assets if s not in oracles]
        if missing:
            raise ValueError(f"{protocol_id}: no oracle for {missing}")
        self.oracles = [oracles[s] for s in self.assets]
        for m in markets:
            if not 0.0 <= m.collateral_factor <= COLLATERAL_FACTOR_MAX:
                raise ValueError(f"{m.symbol}: collateral_factor must be in [0, {COLLATERAL_FACTOR_MAX}]")
        self.lt = np.array([m.collateral_factor for m in markets])
        self.ltv = self.lt  # v2 has one factor for borrowing and liquidation
        self.reserve_factor = np.array([m.reserve_factor for m in markets])
        self.initial_exchange_rate = np.array([m.initial_exchange_rate for m in markets])
        #: incentive applied when seizing each market's cTokens (Comptroller.liquidationIncentiveMantissa)
        self.incentive = np.array(
            [
                self.params.liquidation_incentive if m.liquidation_incentive is None else m.liquidation_incentive
                for m in markets
            ]
        )
        if np.any(self.incentive < 1.0):
            raise ValueError("liquidation incentives must be >= 1")
        n_a = len(markets)
        self.coll_scaled = np.zeros((0, n_a))  # cTokens per account
        self.debt_scaled = np.zeros((0, n_a))  # borrow principal / borrow index
        self.borrow_index = np.ones(n_a)
        self.total_supply = np.zeros(n_a)  # cTokens outstanding (rows and wallets)
        self.total_borrows = np.zeros(n_a)  # underlying
        self.total_reserves = np.zeros(n_a)  # underlying
        self.wallet_ctokens: dict[str, np.ndarray] = {}  # cTokens held outside account rows (lenders)
        self.liquidated_debt_usd = 0.0
        self.liquidated_tokens = np.zeros(n_a)  # debt repaid by liquidators per market, underlying
        self.liquidated_rows: set[int] = set()

    # --- views ------------------------------------------------------------------------------------------
    @property
    def n_accounts(self) -> int:
        return self.coll_scaled.shape[0]

    def prices(self) -> np.ndarray:
        """Oracle prices, USD per underlying token (Comptroller's oracle.getUnderlyingPrice)."""
        return np.array([o.price for o in self.oracles], dtype=float)

    def cash(self) -> np.ndarray:
        """Underlying held per market (CToken.getCashPrior)."""
        return np.array([self.env.ledger.balance(self.id, s) for s in self.assets])

    def exchange_rate(self) -> np.ndarray:
        """Underlying per cToken: (cash + borrows - reserves) / supply, or the initial rate with no supply
        (CToken.exchangeRateStoredInternal)."""
        num = self.cash() + self.total_borrows - self.total_reserves
        return np.where(
            self.total_supply > 0,
            num / np.where(self.total_supply > 0, self.total_supply, 1.0),
            self.initial_exchange_rate,
        )

    @property
    def liq_index(self) -> np.ndarray:
        """Underlying per cToken (the lending surface's name for what multiplies `coll_scaled`)."""
        return self.exchange_rate()

    def collateral(self) -> np.ndarray:
        """Underlying collateral per account and asset (cTokens x exchange rate)."""
        return self.coll_scaled * self.exchange_rate()

    def debt(self) -> np.ndarray:
        """Borrow balance per account and asset, underlying (CToken.borrowBalanceStored)."""
        return self.debt_scaled * self.borrow_index

    def account_usd(self) -> tuple[np.ndarray, np.ndarray]:
        """(collateral USD, debt USD) per account at oracle prices, collateral not weighted."""
        p = self.prices()
        return self.coll_scaled @ (self.exchange_rate() * p), self.debt_scaled @ (self.borrow_index * p)

    def weighted_collateral_usd(self) -> np.ndarray:
        """sumCollateral of getHypotheticalAccountLiquidityInternal: cTokens x rate x price x collateral factor."""
        return self.coll_scaled @ (self.exchange_rate() * self.prices() * self.lt)

    def health(self) -> np.ndarray:
        """sumCollateral / sumBorrowPlusEffects (inf with no debt): < 1 exactly when the account has shortfall."""
        _, debt_usd = self.account_usd()
        w = self.weighted_collateral_usd()
        out = np.full(self.n_accounts, np.inf)
        np.divide(w, debt_usd, out=out, where=debt_usd > 0)
        return out

    def liquidatable(self) -> np.ndarray:
        return np.flatnonzero((self.health() < 1.0) & ~self.controlled)

    # --- setup and user actions -------------------------------------------------------------------------
    def add_accounts(self, n: int) -> np.ndarray:
        start = self.n_accounts
        pad = np.zeros((n, len(self.assets)))
        self.coll_scaled = np.vstack([self.coll_scaled, pad])
        self.debt_scaled = np.vstack([self.debt_scaled, pad.copy()])
        return np.arange(start, start + n)

    def _pull(self, token: str, holder: str, amount: float) -> None:
        try:
            self.env.ledger.transfer(token, holder, self.id, amount)
        except InsufficientBalance as exc:
            raise Revert(f"{self.id}: {exc}") from None

    def supply(self, holder: str, accounts, asset: str, amounts) -> None:
        """CToken.mint for many accounts: underlying from `holder`, cTokens at the current exchange rate."""
        j = self.idx[asset]
        accounts = np.asarray(accounts, dtype=np.int64)
        amounts = np.broadcast_to(np.asarray(amounts, dtype=float), accounts.shape)
        rate = self.exchange_rate()[j]
        total = float(amounts.sum())
        self._pull(asset, holder, total)
        np.add.at(self.coll_scaled[:, j], accounts, amounts / rate)
        self.total_supply[j] += total / rate

    def supply_liquidity(self, holder: str, asset: str, amount: float) -> None:
        """Passive suppliers mint cTokens into their wallet (not an account row)."""
        j = self.idx[asset]
        rate = self.exchange_rate()[j]
        self._pull(asset, holder, float(amount))
        w = self.wallet_ctokens.setdefault(holder, np.zeros(len(self.assets)))
        w[j] += amount / rate
        self.total_supply[j] += amount / rate

    def redeem_wallet(self, holder: str, asset: str, ctokens: float) -> float:
        """CToken.redeem from a wallet: underlying = cTokens x rate, reverts without the cash; returns it."""
        j = self.idx[asset]
        w = self.wallet_ctokens.get(holder)
        if w is None or w[j] < ctokens * (1 - 1e-12):
            raise Revert(f"{self.id}: {holder} holds fewer than {ctokens:.6g} c{asset}")
        amount = ctokens * self.exchange_rate()[j]
        if self.env.ledger.balance(self.id, asset) < amount:
            raise Revert(f"{self.id}: not enough {asset} cash to redeem {amount:.6g} (TOKEN_INSUFFICIENT_CASH)")
        w[j] = max(w[j] - ctokens, 0.0)
        self.total_supply[j] -= ctokens
        self.env.ledger.transfer(asset, self.id, holder, amount)
        return amount

    def borrow(self, holder: str, accounts, asset: str, amounts) -> None:
        """CToken.borrow for many accounts: reverts with shortfall after the borrow (borrowAllowed) or without cash."""
        self._borrow(holder, accounts, asset, amounts)

    def seed_borrow(self, holder: str, accounts, asset: str, amounts) -> None:
        """Genesis snapshot of an existing book (v2 has one factor, so the check is the same as `borrow`)."""
        self._borrow(holder, accounts, asset, amounts)

    def _borrow(self, holder, accounts, asset, amounts) -> None:
        j = self.idx[asset]
        accounts = np.asarray(accounts, dtype=np.int64)
        amounts = np.broadcast_to(np.asarray(amounts, dtype=float), accounts.shape)
        p = self.prices()
        _, debt_usd = self.account_usd()
        new_debt = debt_usd[accounts] + amounts * p[j]
        bad = new_debt > self.weighted_collateral_usd()[accounts] * (1 + 1e-12)
        if np.any(bad):
            raise Revert(
                f"{self.id}: borrow leaves {int(bad.sum())} account(s) with shortfall, e.g. #{int(accounts[bad][0])} "
                "(INSUFFICIENT_LIQUIDITY)"
            )
        total = float(amounts.sum())
        if self.env.ledger.balance(self.id, asset) < total:
            raise Revert(f"{self.id}: not enough {asset} cash to lend {total:.6g} (BorrowCashNotAvailable)")
        np.add.at(self.debt_scaled[:, j], accounts, amounts / self.borrow_index[j])
        self.total_borrows[j] += total
        self.env.ledger.transfer(asset, self.id, holder, total)

    def repay(self, holder: str, accounts, asset: str, amounts) -> np.ndarray:
        """CToken.repayBorrowBehalf for many accounts (capped at what each owes); returns the amounts repaid."""
        j = self.idx[asset]
        accounts = np.asarray(accounts, dtype=np.int64)
        owed = self.debt_scaled[accounts, j] * self.borrow_index[j]
        paid = np.minimum(np.asarray(amounts, dtype=float), owed)
        self._pull(asset, holder, float(paid.sum()))
        np.subtract.at(self.debt_scaled[:, j], accounts, paid / self.borrow_index[j])
        np.maximum(self.debt_scaled[:, j], 0.0, out=self.debt_scaled[:, j])
        self.total_borrows[j] = max(self.total_borrows[j] - float(paid.sum()), 0.0)
        return paid

    # --- liquidation --------------------------------------------------------------------------------------
    def max_debt_to_cover(self, account: int, debt_asset: str, collateral_asset: str | None = None) -> float:
        """Close-factor cap on one repayment (Comptroller.liquidateBorrowAllowed: closeFactor x borrow balance)."""
        j = self.idx[debt_asset]
        return float(self.params.close_factor * self.debt_scaled[int(account), j] * self.borrow_index[j])

    def seize_tokens(self, collateral_asset: str, debt_asset: str, repay: float) -> float:
        """Comptroller.liquidateCalculateSeizeTokens: repay x incentive x priceBorrowed / (priceCollateral x rate)."""
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        p = self.prices()
        return float(repay * self.incentive[i] * p[j] / (p[i] * self.exchange_rate()[i]))

    def preview(self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float) -> Preview:
        """What a liquidation would do now: the repayment capped by the close factor and by the collateral
        the borrower holds (a larger one reverts LIQUIDATE_SEIZE_TOO_MUCH); the seized cTokens split into the
        liquidator's underlying and the protocol's share (seizeInternal). Zero if the account has no shortfall."""
        a, i, j = int(account), self.idx[collateral_asset], self.idx[debt_asset]
        if self.health()[a] >= 1.0:
            return Preview(0.0, 0.0, 0.0, 0.0, 0.0)
        p = self.prices()
        rate = self.exchange_rate()[i]
        repay = min(float(debt_to_cover), self.max_debt_to_cover(a, debt_asset))
        max_by_coll = self.coll_scaled[a, i] * rate * p[i] / (self.incentive[i] * p[j])
        repay = max(min(repay, max_by_coll), 0.0)
        seize = self.seize_tokens(collateral_asset, debt_asset, repay) if repay > 0 else 0.0
        seize = min(seize, self.coll_scaled[a, i])
        protocol = seize * self.params.protocol_seize_share
        return Preview(repay, (seize - protocol) * rate, protocol * rate, repay * p[j], seize * rate * p[i])

    def liquidate(
        self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float, liquidator: str, redeem=True
    ) -> Liquidated:
        """CToken.liquidateBorrow, then (by default, as liquidation bots do in the same transaction) CToken.redeem
        of the seized cTokens. Reverts without shortfall (INSUFFICIENT_SHORTFALL), above the close factor
        (TOO_MUCH_REPAY), when the seizure exceeds the borrower's cTokens (LIQUIDATE_SEIZE_TOO_MUCH), when the
        liquidator cannot pay, or when the collateral market lacks the cash to redeem."""
        a, i, j = int(account), self.idx[collateral_asset], self.idx[debt_asset]
        if not 0 <= a < self.n_accounts:
            raise Revert(f"{self.id}: no account #{a}")
        self._revert_if_controlled(a)
        hf = float(self.health()[a])
        if hf >= 1.0:
            raise Revert(f"{self.id}: account #{a} has no shortfall (INSUFFICIENT_SHORTFALL)")
        repay = float(debt_to_cover)
        if repay <= 0:
            raise Revert(f"{self.id}: repay amount is zero (LiquidateCloseAmountIsZero)")
        if repay > self.max_debt_to_cover(a, debt_asset) * (1 + 1e-12):
            raise Revert(f"{self.id}: repay {repay:.6g} above the close factor (TOO_MUCH_REPAY)")
        seize = self.seize_tokens(collateral_asset, debt_asset, repay)
        if seize > self.coll_scaled[a, i] * (1 + 1e-12):
            raise Revert(
                f"{self.id}: seizure {seize:.6g} c{collateral_asset} exceeds the borrower's (LIQUIDATE_SEIZE_TOO_MUCH)"
            )
        seize = min(seize, self.coll_scaled[a, i])
        rate = self.exchange_rate()[i]
        protocol_tokens = seize * self.params.protocol_seize_share
        liquidator_tokens = seize - protocol_tokens
        led = self.env.ledger
        if led.balance(liquidator, debt_asset) < repay * (1 - 1e-12):
            raise Revert(f"{self.id}: liquidator {liquidator} cannot pay {repay:.6g} {debt_asset}")
        redeem_amount = liquidator_tokens * rate
        cash_after = led.balance(self.id, collateral_asset) + (repay if i == j else 0.0)
        if redeem and cash_after < redeem_amount * (1 - 1e-12):
            raise Revert(
                f"{self.id}: not enough {collateral_asset} cash to redeem {redeem_amount:.6g} (TOKEN_INSUFFICIENT_CASH)"
            )
        # repayBorrowFresh
        led.transfer(debt_asset, liquidator, self.id, repay)
        self.debt_scaled[a, j] = max(self.debt_scaled[a, j] - repay / self.borrow_index[j], 0.0)
        self.total_borrows[j] = max(self.total_borrows[j] - repay, 0.0)
        # seizeInternal: the protocol's share becomes reserves (its cTokens are burned)
        self.coll_scaled[a, i] -= seize
        self.total_reserves[i] += protocol_tokens * rate
        self.total_supply[i] -= protocol_tokens
        if redeem:  # redeemFresh of the liquidator's cTokens at the same rate
            self.total_supply[i] -= liquidator_tokens
            led.transfer(
                collateral_asset, self.id, liquidator, min(redeem_amount, led.balance(self.id, collateral_asset))
            )
        else:
            w = self.wallet_ctokens.setdefault(liquidator, np.zeros(len(self.assets)))
            w[i] += liquidator_tokens
        p = self.prices()
        self.liquidated_debt_usd += repay * p[j]
        self.liquidated_tokens[j] += repay
        self.liquidated_rows.add(a)
        seized_usd = seize * rate * p[i]
        return self.env.emit(
            Liquidated(
                self.env.clock.block,
                self.id,
                a,
                liquidator,
                debt_asset,
                collateral_asset,
                repay,
                redeem_amount,
                protocol_tokens * rate,
                repay * p[j],
                seized_usd,
                seized_usd - repay * p[j],
                hf,
            )
        )

    # --- accrual ------------------------------------------------------------------------------------------
    def rates_per_block(self) -> tuple[np.ndarray, np.ndarray]:
        """(borrow, supply) rate per block of each market at its current cash, borrows and reserves."""
        cash = self.cash()
        br = np.array(
            [
                float(m.rate_model.borrow_rate_per_block(c, b, r))
                for m, c, b, r in zip(self.markets, cash, self.total_borrows, self.total_reserves)
            ]
        )
        sr = np.array(
            [
                float(m.rate_model.supply_rate_per_block(c, b, r, m.reserve_factor))
                for m, c, b, r in zip(self.markets, cash, self.total_borrows, self.total_reserves)
            ]
        )
        return br, sr

    def accrue_blocks(self, blocks: float) -> None:
        """CToken.accrueInterest over `blocks` rate-model blocks: simple interest on borrows, the reserve
        factor's share to reserves, and the borrow index grown by the same factor."""
        if blocks <= 0:
            return
        br, _ = self.rates_per_block()
        factor = br * blocks  # simpleInterestFactor
        interest = factor * self.total_borrows
        self.total_borrows = self.total_borrows + interest
        self.total_reserves = self.total_reserves + interest * self.reserve_factor
        self.borrow_index = self.borrow_index * (1.0 + factor)

    def accrue(self, dt_seconds: float) -> None:
        """Accrue over `dt_seconds`, counted in the rate model's blocks (blocksPerYear per year)."""
        self.accrue_blocks(dt_seconds * BLOCKS_PER_YEAR / SECONDS_PER_YEAR)

    def utilisation(self) -> np.ndarray:
        return np.array(
            [
                float(m.rate_model.utilization(c, b, r))
                for m, c, b, r in zip(self.markets, self.cash(), self.total_borrows, self.total_reserves)
            ]
        )

    # --- reporting ----------------------------------------------------------------------------------------
    def insolvent_debt_usd(self) -> np.ndarray:
        """Per account: debt not covered by (unweighted) collateral at oracle prices, USD."""
        coll_usd, debt_usd = self.account_usd()
        return np.maximum(debt_usd - coll_usd, 0.0)

    def losses_by_collateral(self) -> dict[str, float]:
        """Insolvent debt (USD) split by each insolvent account's collateral values (its debt assets if none)."""
        short = self.insolvent_debt_usd()
        out = np.zeros(len(self.assets))
        bad = np.flatnonzero(short > 0)
        if bad.size:
            p = self.prices()
            vals = self.coll_scaled[bad] * (self.exchange_rate() * p)
            tot = vals.sum(axis=1, keepdims=True)
            debts = self.debt_scaled[bad] * (self.borrow_index * p)
            shares = np.where(tot > 0, vals / np.where(tot > 0, tot, 1.0), debts / debts.sum(axis=1, keepdims=True))
            out += short[bad] @ shares
        return {a: float(out[k]) for k, a in enumerate(self.assets) if out[k] > 0}

    def metrics(self) -> dict[str, float]:
        coll_usd, debt_usd = self.account_usd()
        p = self.prices()
        return {
            "collateral_usd": float(coll_usd.sum()),
            "debt_usd": float(debt_usd.sum()),
            "accounts_unhealthy": int(np.count_nonzero(self.health() < 1.0)),
            "bad_debt_usd": float(np.maximum(debt_usd - coll_usd, 0.0).sum()),
            "liquidated_debt_usd": self.liquidated_debt_usd,
            "reserves_usd": float(self.total_reserves @ p),
            "accounts_liquidated": float(len(self.liquidated_rows)),
            **{f"liquidated_{s}": float(self.liquidated_tokens[k]) for k, s in enumerate(self.assets)},
        }

    def exposures(self) -> list[Exposure]:
        out = []
        cash = self.cash()
        for k, s in enumerate(self.assets):
            if cash[k] > 0:
                out.append(Exposure("holds", s, float(cash[k])))
            if self.total_borrows[k] > 0:
                out.append(Exposure("receivable", s, float(self.total_borrows[k])))
        return out
