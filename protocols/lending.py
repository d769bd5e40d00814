"""A lending market modelled on Aave v3: per-asset LTV, liquidation threshold and bonus, close factor,
kinked interest, and bad debt written off into a deficit.

Sources (see margin-methods.md 5.1): aave-v3-core GenericLogic.calculateUserAccountData (health factor),
LiquidationLogic (close factor v3.0: 50% of the reserve debt above HF 0.95, 100% at or below; v3.3:
100% unless collateral and debt >= $2,000 and HF > 0.95, then at most 50% of total debt; no dust under
$1,000; bad debt burned into the reserve deficit when collateral is gone),
DefaultReserveInterestRateStrategy (kinked rates).

Accounts are rows of arrays: `coll_scaled[n, A]` and `debt_scaled[n, A]` in scaled token units
(multiply by the liquidity / borrow index for token units). The protocol is one ledger holder (its id)
that holds every deposited token; its treasury is `"{id}:treasury"`. Interest changes claims, not
token balances: tokens move only on supply, borrow, repay, withdraw and liquidation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.base import Env, Exposure, MarginProtocol, Revert
from protocols.events import BadDebt, Liquidated
from protocols.ledger import InsufficientBalance

SECONDS_PER_YEAR = 365.0 * 86400.0
CLOSE_FACTOR_HF_THRESHOLD = 0.95          # aave-v3 LiquidationLogic.CLOSE_FACTOR_HF_THRESHOLD
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 0.5    # aave-v3 LiquidationLogic.DEFAULT_LIQUIDATION_CLOSE_FACTOR
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000.0  # USD, aave-v3.3 LiquidationLogic
MIN_LEFTOVER_BASE = 1000.0                # USD, aave-v3.3 LiquidationLogic (MustNotLeaveDust)


@dataclass(frozen=True)
class AssetParams:
    """One reserve's risk and rate parameters (fractions; bonus 0.05 = Aave's 10500 bps)."""

    symbol: str
    ltv: float
    liquidation_threshold: float
    liquidation_bonus: float
    protocol_fee: float = 0.10
    reserve_factor: float = 0.15
    base_rate: float = 0.0
    slope1: float = 0.04
    slope2: float = 0.60
    optimal_utilisation: float = 0.90


@dataclass(frozen=True)
class Preview:
    """What a liquidation would do now, without doing it (token units and USD)."""

    debt_to_repay: float
    collateral_seized: float
    protocol_fee: float
    debt_usd: float
    collateral_usd: float


class LendingMarket(MarginProtocol):
    """Aave-v3-like market over assets A with n accounts held as arrays."""

    def __init__(self, protocol_id: str, assets: list[AssetParams], oracles: dict, env: Env,
                 close_factor_rule: str = "aave-v3.3"):
        if close_factor_rule not in ("aave-v3.0", "aave-v3.3"):
            raise ValueError(f"close_factor_rule must be 'aave-v3.0' or 'aave-v3.3', got {close_factor_rule!r}")
        self.id = protocol_id
        self.env = env
        self.rule = close_factor_rule
        self.assets = [a.symbol for a in assets]
        self.idx = {s: i for i, s in enumerate(self.assets)}
        self.params = assets
        self.oracles = [oracles[s] for s in self.assets]
        self.ltv = np.array([a.ltv for a in assets])
        self.lt = np.array([a.liquidation_threshold for a in assets])
        self.bonus = 1.0 + np.array([a.liquidation_bonus for a in assets])
        self.fee = np.array([a.protocol_fee for a in assets])
        self.reserve_factor = np.array([a.reserve_factor for a in assets])
        self._rate_params = tuple(np.array([getattr(a, k) for a in assets])
                                  for k in ("base_rate", "slope1", "slope2", "optimal_utilisation"))
        self.treasury = f"{protocol_id}:treasury"
        n_a = len(assets)
        self.coll_scaled = np.zeros((0, n_a))
        self.debt_scaled = np.zeros((0, n_a))
        self.liq_index = np.ones(n_a)
        self.borrow_index = np.ones(n_a)
        self.lender_scaled = np.zeros(n_a)       # passive suppliers' claim (scaled)
        self.deficit = np.zeros(n_a)             # written-off debt, token units (Aave v3.3 reserve deficit)
        self.deficit_usd_by_collateral = np.zeros(n_a)  # write-offs, USD, by the collateral that ran out
        self.liquidated_debt_usd = 0.0
        self._cache_key = None
        self._cache: dict[str, np.ndarray] = {}
        self._totals = None

    # --- views ------------------------------------------------------------------------------------
    @property
    def n_accounts(self) -> int:
        return self.coll_scaled.shape[0]

    def prices(self) -> np.ndarray:
        """Oracle prices, USD per token, in asset order."""
        return np.array([o.price for o in self.oracles], dtype=float)

    def collateral(self) -> np.ndarray:
        """Collateral per account and asset, token units."""
        return self.coll_scaled * self.liq_index

    def debt(self) -> np.ndarray:
        """Debt per account and asset, token units."""
        return self.debt_scaled * self.borrow_index

    def _account_values(self) -> dict[str, np.ndarray]:
        """Per-account USD figures at oracle prices, cached until prices or state change."""
        p = self.prices()
        key = (p.tobytes(), self._version)
        if key != self._cache_key:
            cp, dp = self.liq_index * p, self.borrow_index * p     # USD per scaled unit
            coll_usd = self.coll_scaled @ cp
            debt_usd = self.debt_scaled @ dp
            weighted = self.coll_scaled @ (cp * self.lt)
            with np.errstate(divide="ignore", invalid="ignore"):
                hf = np.where(debt_usd > 0, weighted / debt_usd, np.inf)
            self._cache = {"coll_usd": coll_usd, "debt_usd": debt_usd, "weighted": weighted, "hf": hf,
                           "borrow_cap": self.coll_scaled @ (cp * self.ltv)}
            self._cache_key = key
        return self._cache

    _version = 0

    def _touch(self) -> None:
        """State changed: drop cached account values and refresh per-asset totals."""
        self._version += 1
        self._totals = None

    @property
    def coll_scaled_total(self) -> np.ndarray:
        if self._totals is None:
            self._totals = (self.coll_scaled.sum(axis=0), self.debt_scaled.sum(axis=0))
        return self._totals[0]

    @property
    def debt_scaled_total(self) -> np.ndarray:
        self.coll_scaled_total  # fills the cache
        return self._totals[1]

    def health(self) -> np.ndarray:
        """Aave health factor per account: Σ coll·P·LT / Σ debt·P (inf with no debt)."""
        return self._account_values()["hf"]

    def weighted_collateral_usd(self) -> np.ndarray:
        """Per account: Σ collateral · price · liquidation threshold, USD (the health factor's numerator)."""
        return self._account_values()["weighted"]

    def account_usd(self) -> tuple[np.ndarray, np.ndarray]:
        """(collateral USD, debt USD) per account at oracle prices."""
        v = self._account_values()
        return v["coll_usd"], v["debt_usd"]

    # --- setup and user actions (batched over accounts) ------------------------------------------------
    def add_accounts(self, n: int) -> np.ndarray:
        """Append `n` empty accounts; returns their indices."""
        start = self.n_accounts
        pad = np.zeros((n, len(self.assets)))
        self.coll_scaled = np.vstack([self.coll_scaled, pad])
        self.debt_scaled = np.vstack([self.debt_scaled, pad.copy()])
        self._touch()
        return np.arange(start, start + n)

    def supply_liquidity(self, holder: str, asset: str, amount: float) -> None:
        """Passive lenders deposit `amount` tokens (they are not borrowers)."""
        j = self.idx[asset]
        self.env.ledger.transfer(asset, holder, self.id, amount)
        self.lender_scaled[j] += amount / self.liq_index[j]

    def supply(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> None:
        """Deposit collateral for many accounts; tokens come from `holder` (the population's wallet)."""
        j = self.idx[asset]
        amounts = np.asarray(amounts, float)
        self.env.ledger.transfer(asset, holder, self.id, float(amounts.sum()))
        np.add.at(self.coll_scaled[:, j], accounts, amounts / self.liq_index[j])
        self._touch()

    def seed_borrow(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> None:
        """Genesis snapshot of an existing book: debt drawn as if prices had moved since origination,
        so only HF > 1 is required (not the LTV). Tokens go to `holder`."""
        self._borrow(holder, accounts, asset, amounts, check_ltv=False)

    def borrow(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> None:
        """Borrow for many accounts; reverts if any would exceed its LTV (Aave ValidationLogic.validateBorrow)."""
        self._borrow(holder, accounts, asset, amounts, check_ltv=True)

    def _borrow(self, holder, accounts, asset, amounts, check_ltv):
        j = self.idx[asset]
        amounts = np.asarray(amounts, float)
        p = self.prices()
        v = self._account_values()
        new_debt_usd = v["debt_usd"][accounts] + amounts * p[j]
        limit = v["borrow_cap"][accounts] if check_ltv else v["weighted"][accounts]
        bad = new_debt_usd > limit * (1 + 1e-12)
        if np.any(bad):
            rule = "LTV" if check_ltv else "health factor 1"
            raise Revert(f"{self.id}: borrow would exceed {rule} for {int(bad.sum())} account(s), e.g. #{int(accounts[bad][0])}")
        total = float(amounts.sum())
        if self.env.ledger.balance(self.id, asset) < total:
            raise Revert(f"{self.id}: not enough {asset} liquidity to lend {total:.6g}")
        self.env.ledger.transfer(asset, self.id, holder, total)
        np.add.at(self.debt_scaled[:, j], accounts, amounts / self.borrow_index[j])
        self._touch()

    def repay(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> np.ndarray:
        """Repay debt of many accounts (capped at what each owes); returns the amounts repaid."""
        j = self.idx[asset]
        owed = self.debt_scaled[accounts, j] * self.borrow_index[j]
        paid = np.minimum(np.asarray(amounts, float), owed)
        self.env.ledger.transfer(asset, holder, self.id, float(paid.sum()))
        np.subtract.at(self.debt_scaled[:, j], accounts, paid / self.borrow_index[j])
        self._touch()
        return paid

    # --- liquidation -------------------------------------------------------------------------------
    def max_debt_to_cover(self, account: int, debt_asset: str, collateral_asset: str | None = None) -> float:
        """Close-factor cap on the debt repayable in one call (token units), per the chosen rule. Under v3.3
        the $2,000 test applies to the collateral reserve being seized (all collateral if none is named)."""
        j = self.idx[debt_asset]
        v = self._account_values()
        hf = v["hf"][account]
        reserve_debt = self.debt_scaled[account, j] * self.borrow_index[j]
        if self.rule == "aave-v3.0":
            cf = DEFAULT_LIQUIDATION_CLOSE_FACTOR if hf > CLOSE_FACTOR_HF_THRESHOLD else 1.0
            return reserve_debt * cf
        p = self.prices()
        if collateral_asset is None:
            reserve_coll_usd = v["coll_usd"][account]
        else:  # aave-v3.3 LiquidationLogic: userReserveCollateralInBaseCurrency
            i = self.idx[collateral_asset]
            reserve_coll_usd = self.coll_scaled[account, i] * self.liq_index[i] * p[i]
        if (reserve_coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
                and reserve_debt * p[j] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD and hf > CLOSE_FACTOR_HF_THRESHOLD):
            return min(reserve_debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * v["debt_usd"][account] / p[j])
        return reserve_debt

    def preview(self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float) -> Preview:
        """Amounts a liquidation would move now (LiquidationLogic._calculateAvailableCollateralToLiquidate)."""
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        p = self.prices()
        debt = min(debt_to_cover, self.max_debt_to_cover(account, debt_asset, collateral_asset))
        coll_balance = self.coll_scaled[account, i] * self.liq_index[i]
        seized = debt * p[j] / p[i] * self.bonus[i]
        if seized > coll_balance:
            seized = coll_balance
            debt = coll_balance * p[i] / p[j] / self.bonus[i]
        fee = (seized - seized / self.bonus[i]) * self.fee[i]
        return Preview(debt, seized - fee, fee, debt * p[j], (seized - fee) * p[i])

    def liquidate(self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float,
                  liquidator: str) -> Liquidated:
        """Repay part of an unhealthy account's debt and seize collateral with the bonus (Aave liquidationCall)."""
        if collateral_asset not in self.idx or debt_asset not in self.idx:
            raise Revert(f"{self.id}: unknown asset pair {collateral_asset}/{debt_asset}; allowed: {self.assets}")
        if not 0 <= account < self.n_accounts:
            raise Revert(f"{self.id}: no account #{account}")
        hf = float(self.health()[account])
        if hf >= 1.0:
            raise Revert("HEALTH_FACTOR_NOT_BELOW_THRESHOLD")
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        if self.debt_scaled[account, j] <= 0:
            raise Revert("SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER")
        if self.coll_scaled[account, i] <= 0:
            raise Revert("COLLATERAL_CANNOT_BE_LIQUIDATED")
        pv = self.preview(account, collateral_asset, debt_asset, debt_to_cover)
        p = self.prices()
        if self.rule == "aave-v3.3":
            left_debt = (self.debt_scaled[account, j] * self.borrow_index[j] - pv.debt_to_repay) * p[j]
            left_coll = (self.coll_scaled[account, i] * self.liq_index[i] - pv.collateral_seized - pv.protocol_fee) * p[i]
            partial_both = left_debt > 1e-9 and left_coll > 1e-9
            if partial_both and (left_debt < MIN_LEFTOVER_BASE or left_coll < MIN_LEFTOVER_BASE):
                raise Revert("MustNotLeaveDust")
        led = self.env.ledger
        try:
            led.transfer(debt_asset, liquidator, self.id, pv.debt_to_repay)
        except InsufficientBalance as exc:
            raise Revert(f"liquidator cannot pay: {exc}") from None
        led.transfer(collateral_asset, self.id, liquidator, pv.collateral_seized)
        led.transfer(collateral_asset, self.id, self.treasury, pv.protocol_fee)
        self.debt_scaled[account, j] = max(self.debt_scaled[account, j] - pv.debt_to_repay / self.borrow_index[j], 0.0)
        self.coll_scaled[account, i] = max(
            self.coll_scaled[account, i] - (pv.collateral_seized + pv.protocol_fee) / self.liq_index[i], 0.0)
        self._touch()
        self.liquidated_debt_usd += pv.debt_usd
        block = self.env.clock.block
        self._last_collateral = i
        ev = self.env.emit(Liquidated(
            block, self.id, int(account), liquidator, debt_asset, collateral_asset, pv.debt_to_repay,
            pv.collateral_seized, pv.protocol_fee, pv.debt_usd, pv.collateral_usd,
            (pv.collateral_seized + pv.protocol_fee) * p[i] - pv.debt_usd, hf))
        self._write_off_if_empty(account)
        return ev

    def _write_off_if_empty(self, account: int) -> None:
        """With no collateral left, remaining debt is burned into the deficit (Aave v3.3 _burnBadDebt).
        Under the v3.0 rule the debt stays on the account, unrecoverable (counted as bad debt)."""
        if self.rule != "aave-v3.3" or np.any(self.coll_scaled[account] * self.liq_index > 1e-12):
            return
        p = self.prices()
        for j in np.flatnonzero(self.debt_scaled[account] > 0):
            amount = self.debt_scaled[account, j] * self.borrow_index[j]
            self.deficit[j] += amount
            self.deficit_usd_by_collateral[self._last_collateral] += amount * p[j]
            self.debt_scaled[account, j] = 0.0
            self.env.emit(BadDebt(self.env.clock.block, self.id, int(account), self.assets[j], amount, amount * p[j]))
        self._touch()

    # --- accrual -----------------------------------------------------------------------------------
    def utilisation(self) -> np.ndarray:
        """Borrowed / supplied per asset (collateral deposits count as supply, as aTokens do)."""
        debt = self.debt_scaled_total * self.borrow_index
        supply = (self.coll_scaled_total + self.lender_scaled) * self.liq_index
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(supply > 0, np.clip(debt / supply, 0, 1), 0.0)

    def borrow_rate(self) -> np.ndarray:
        """Annual variable borrow rate per asset from the kink model (DefaultReserveInterestRateStrategy)."""
        u = self.utilisation()
        base, s1, s2, opt = self._rate_params
        below = base + s1 * u / opt
        above = base + s1 + s2 * (u - opt) / (1 - opt)
        return np.where(u <= opt, below, above)

    def accrue(self, dt_seconds: float) -> None:
        """Grow the borrow index and the liquidity index (linear per block, Aave MathUtils)."""
        u = self.utilisation()
        rb = self.borrow_rate()
        rs = rb * u * (1 - self.reserve_factor)
        f = dt_seconds / SECONDS_PER_YEAR
        self.borrow_index = self.borrow_index * (1 + rb * f)
        self.liq_index = self.liq_index * (1 + rs * f)
        self._version += 1   # values change; scaled totals do not

    # --- reporting ---------------------------------------------------------------------------------
    def insolvent_debt_usd(self) -> np.ndarray:
        """Per account: debt not covered by collateral at oracle prices, USD (Gauntlet 'insolvent debt')."""
        coll_usd, debt_usd = self.account_usd()
        return np.maximum(debt_usd - coll_usd, 0.0)

    def losses_by_collateral(self) -> dict[str, float]:
        """Bad debt (USD) split by collateral asset: each insolvent account's shortfall in proportion to
        its collateral values, plus write-offs by the collateral whose exhaustion caused them."""
        short = self.insolvent_debt_usd()
        out = self.deficit_usd_by_collateral.copy()
        bad = np.flatnonzero(short > 0)
        if bad.size:
            vals = self.coll_scaled[bad] * (self.liq_index * self.prices())
            tot = vals.sum(axis=1, keepdims=True)
            shares = np.divide(vals, tot, out=np.full_like(vals, 1.0 / vals.shape[1]), where=tot > 0)
            out += short[bad] @ shares
        return {a: float(out[k]) for k, a in enumerate(self.assets) if out[k] > 0}

    def metrics(self) -> dict[str, float]:
        v = self._account_values()
        p = self.prices()
        deficit_usd = float(self.deficit @ p)
        return {
            "collateral_usd": float(v["coll_usd"].sum()),
            "debt_usd": float(v["debt_usd"].sum()),
            "accounts_unhealthy": int(np.sum(v["hf"] < 1.0)),
            "deficit_usd": deficit_usd,
            "bad_debt_usd": deficit_usd + float(self.insolvent_debt_usd().sum()),
            "liquidated_debt_usd": self.liquidated_debt_usd,
        }

    def exposures(self) -> list[Exposure]:
        out = []
        coll = self.collateral().sum(axis=0)
        debt = self.debt().sum(axis=0)
        for k, s in enumerate(self.assets):
            if coll[k] > 0:
                out.append(Exposure("holds", s, float(coll[k])))
            if debt[k] > 0:
                out.append(Exposure("receivable", s, float(debt[k])))
        return out
