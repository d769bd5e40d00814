"""A lending market modelled on Aave v3: per-asset LTV, liquidation threshold and bonus, close factor,
kinked interest, and bad debt written off into a deficit.

Sources (see docs/margin-methods.md 5.1): aave-v3-core GenericLogic.calculateUserAccountData (health factor),
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

from defistress.protocols.base import ControlledRows, Env, Exposure, MarginProtocol, Revert
from defistress.protocols.events import BadDebt, Liquidated
from defistress.protocols.ledger import InsufficientBalance

SECONDS_PER_YEAR = 365.0 * 86400.0
CLOSE_FACTOR_HF_THRESHOLD = 0.95  # aave-v3 LiquidationLogic.CLOSE_FACTOR_HF_THRESHOLD
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 0.5  # aave-v3 LiquidationLogic.DEFAULT_LIQUIDATION_CLOSE_FACTOR
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000.0  # USD, aave-v3.3 LiquidationLogic
MIN_LEFTOVER_BASE = 1000.0  # USD, aave-v3.3 LiquidationLogic (MustNotLeaveDust)


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


class LendingMarket(ControlledRows, MarginProtocol):
    """Aave-v3-like market over assets A with n accounts held as arrays."""

    _touch_rows: np.ndarray | int  # rows changed since the last `_touch` (bool mask, indices or one index)
    _pending_rows: list[np.ndarray] | None  # rows changed since the cache was filled, one entry per `_touch`
    _pending_base: int  # the state version the cache had when `_pending_rows` started

    def __init__(
        self, protocol_id: str, assets: list[AssetParams], oracles: dict, env: Env, close_factor_rule: str = "aave-v3.3"
    ):
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
        self._rate_params = tuple(
            np.array([getattr(a, k) for a in assets]) for k in ("base_rate", "slope1", "slope2", "optimal_utilisation")
        )
        self.treasury = f"{protocol_id}:treasury"
        n_a = len(assets)
        self.coll_scaled = np.zeros((0, n_a))
        self.debt_scaled = np.zeros((0, n_a))
        self.liq_index = np.ones(n_a)
        self.borrow_index = np.ones(n_a)
        self.lender_scaled = np.zeros(n_a)  # passive suppliers' claim (scaled)
        self.deficit = np.zeros(n_a)  # written-off debt, token units (Aave v3.3 reserve deficit)
        self.deficit_usd_by_collateral = np.zeros(n_a)  # write-offs, USD, by the collateral that ran out
        self.liquidated_debt_usd = 0.0
        self._cache_key: tuple[bytes, int] | None = None  # (oracle prices, state version) of the cache
        self._cache: dict[str, np.ndarray] = {}
        self._totals: tuple[np.ndarray, np.ndarray] | None = None  # (collateral, debt) scaled totals by asset

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
        """Per-account USD figures at oracle prices, cached until prices or state change.

        When only a few rows changed since the cache was filled (liquidate, repay: see `_touch`), only those
        rows are recomputed. Arrays that nobody outside the cache holds are overwritten in place (no new
        100k-row allocations per block); arrays a caller still holds are copied first, so a caller's array
        never changes under it."""
        p = self.prices()
        key = (p.tobytes(), self._version)
        if key == self._cache_key:
            return self._cache
        from sys import getrefcount

        cp, dp = self.liq_index * p, self.borrow_index * p  # USD per scaled unit
        old, n = self._cache, self.n_accounts
        names = ("coll_usd", "debt_usd", "weighted", "hf", "borrow_cap")
        # getrefcount counts its argument and the local name: 3 means only the cache refers to the object
        mine = getrefcount(old) <= 3 and set(old) == set(names)
        free = {k: a for k in names if mine and (a := old[k]).shape == (n,) and getrefcount(a) <= 3}
        pend = getattr(self, "_pending_rows", None)
        if (
            pend is not None
            and self._cache_key is not None
            and self._cache_key[0] == key[0]
            and self._cache_key[1] == self._pending_base
            and self._version == self._pending_base + len(pend)
            and set(old) == set(names)
            and old["hf"].shape == (n,)
        ):
            rows = np.unique(np.concatenate(pend))
            new = {k: free[k] if k in free else old[k].copy() for k in names}
            cs = self.coll_scaled[rows]
            d = self.debt_scaled[rows] @ dp
            w = cs @ (cp * self.lt)
            new["coll_usd"][rows] = cs @ cp
            new["debt_usd"][rows] = d
            new["weighted"][rows] = w
            with np.errstate(divide="ignore", invalid="ignore"):
                new["hf"][rows] = np.where(d > 0, w / d, np.inf)
            new["borrow_cap"][rows] = cs @ (cp * self.ltv)
        else:
            new = {
                k: np.matmul(
                    self.coll_scaled if k != "debt_usd" else self.debt_scaled,
                    cp * f if k != "debt_usd" else dp,
                    out=free.get(k),
                )
                for k, f in (("coll_usd", 1.0), ("debt_usd", 1.0), ("weighted", self.lt), ("borrow_cap", self.ltv))
            }
            hf = free.get("hf")
            hf = np.empty(n) if hf is None else hf
            hf.fill(np.inf)
            np.divide(new["weighted"], new["debt_usd"], out=hf, where=new["debt_usd"] > 0)
            new["hf"] = hf
        self._cache = {k: new[k] for k in names}
        self._cache_key = key
        self._pending_rows = None
        return self._cache

    _version = 0

    def _touch(self) -> None:
        """State changed: drop cached account values and refresh per-asset totals. A caller that changed only
        some rows says which in `self._touch_rows` just before the call; the cache then refreshes only them."""
        rows = self.__dict__.pop("_touch_rows", None)
        if rows is not None:
            rows = np.asarray(rows)
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows.ravel() if rows.dtype.kind in "iu" else None
        pend = getattr(self, "_pending_rows", None)
        if rows is None or self._cache_key is None:
            self._pending_rows = None
        elif (
            pend is not None
            and self._cache_key[1] == self._pending_base
            and self._version == self._pending_base + len(pend)
        ):
            pend.append(rows)
        elif self._cache_key[1] == self._version:
            self._pending_rows, self._pending_base = [rows], self._version
        else:
            self._pending_rows = None
        self._version += 1
        self._totals = None

    @property
    def coll_scaled_total(self) -> np.ndarray:
        if self._totals is None:  # a BLAS product with ones: ~20x faster than sum(axis=0) on (n, A) arrays
            ones = self.__dict__.get("_ones")
            if ones is None or ones.shape[0] != self.n_accounts:
                ones = self._ones = np.ones(self.n_accounts)
            self._totals = (ones @ self.coll_scaled, ones @ self.debt_scaled)
        return self._totals[0]

    @property
    def debt_scaled_total(self) -> np.ndarray:
        _ = self.coll_scaled_total  # fills the cache
        assert self._totals is not None
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
        self.require_active(asset)  # Aave v3 validateSupply: reserve active, not paused, not frozen
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
        self.require_active(asset)  # Aave v3 validateBorrow: not paused, not frozen
        amounts = np.asarray(amounts, float)
        p = self.prices()
        v = self._account_values()
        new_debt_usd = v["debt_usd"][accounts] + amounts * p[j]
        limit = v["borrow_cap"][accounts] if check_ltv else v["weighted"][accounts]
        bad = new_debt_usd > limit * (1 + 1e-12)
        if np.any(bad):
            rule = "LTV" if check_ltv else "health factor 1"
            raise Revert(
                f"{self.id}: borrow would exceed {rule} for {int(bad.sum())} account(s), e.g. #{int(accounts[bad][0])}"
            )
        total = float(amounts.sum())
        if self.env.ledger.balance(self.id, asset) < total:
            raise Revert(f"{self.id}: not enough {asset} liquidity to lend {total:.6g}")
        self.env.ledger.transfer(asset, self.id, holder, total)
        np.add.at(self.debt_scaled[:, j], accounts, amounts / self.borrow_index[j])
        self._touch()

    def repay(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> np.ndarray:
        """Repay debt of many accounts (capped at what each owes); returns the amounts repaid."""
        j = self.idx[asset]
        self.require_unpaused(asset)  # Aave v3 validateRepay: not paused (frozen reserves take repayments)
        owed = self.debt_scaled[accounts, j] * self.borrow_index[j]
        paid = np.minimum(np.asarray(amounts, float), owed)
        self.env.ledger.transfer(asset, holder, self.id, float(paid.sum()))
        np.subtract.at(self.debt_scaled[:, j], accounts, paid / self.borrow_index[j])
        self._touch_rows = accounts
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
        if (
            reserve_coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and reserve_debt * p[j] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and hf > CLOSE_FACTOR_HF_THRESHOLD
        ):
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

    def liquidate(
        self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float, liquidator: str
    ) -> Liquidated:
        """Repay part of an unhealthy account's debt and seize collateral with the bonus (Aave liquidationCall)."""
        if collateral_asset not in self.idx or debt_asset not in self.idx:
            raise Revert(f"{self.id}: unknown asset pair {collateral_asset}/{debt_asset}; allowed: {self.assets}")
        if not 0 <= account < self.n_accounts:
            raise Revert(f"{self.id}: no account #{account}")
        self._revert_if_controlled(account)
        self.require_unpaused(collateral_asset, debt_asset)  # Aave v3 validateLiquidationCall: neither paused
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
            left_coll = (self.coll_scaled[account, i] * self.liq_index[i] - pv.collateral_seized - pv.protocol_fee) * p[
                i
            ]
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
            self.coll_scaled[account, i] - (pv.collateral_seized + pv.protocol_fee) / self.liq_index[i], 0.0
        )
        self._touch_rows = account
        self._touch()
        self.liquidated_debt_usd += pv.debt_usd
        block = self.env.clock.block
        self._last_collateral = i
        ev = self.env.emit(
            Liquidated(
                block,
                self.id,
                int(account),
                liquidator,
                debt_asset,
                collateral_asset,
                pv.debt_to_repay,
                pv.collateral_seized,
                pv.protocol_fee,
                pv.debt_usd,
                pv.collateral_usd,
                (pv.collateral_seized + pv.protocol_fee) * p[i] - pv.debt_usd,
                hf,
            )
        )
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
        self._touch_rows = account
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
        self._version += 1  # values change; scaled totals do not

    # --- reporting ---------------------------------------------------------------------------------
    def insolvent_debt_usd(self) -> np.ndarray:
        """Per account: debt not covered by collateral at oracle prices, USD (Gauntlet 'insolvent debt')."""
        coll_usd, debt_usd = self.account_usd()
        short = debt_usd - coll_usd
        return np.maximum(short, 0.0, out=short)  # one (n,) temporary, not two

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
        # insolvent_debt_usd().sum() computed in a reused scratch row (called every block: no (n,) temporaries)
        short = self.__dict__.get("_scratch")
        if short is None or short.shape != v["debt_usd"].shape:
            short = self._scratch = np.empty_like(v["debt_usd"])
        np.subtract(v["debt_usd"], v["coll_usd"], out=short)
        np.maximum(short, 0.0, out=short)
        return {
            "collateral_usd": float(v["coll_usd"].sum()),
            "debt_usd": float(v["debt_usd"].sum()),
            "accounts_unhealthy": int(np.count_nonzero(v["hf"] < 1.0)),
            "deficit_usd": deficit_usd,
            "bad_debt_usd": deficit_usd + float(short.sum()),
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

    # --- controller entry points (Euler v2 EVC, docs/margin-methods.md 9.1) ----------------------------
    #: reserves that count as cash for `settle_out` / `settle_in` (design choice: Aave v3 Ethereum stablecoin
    #: reserves); set `market.stable_assets = (...)` per market to change it
    stable_assets: tuple[str, ...] = ("USDC", "USDT", "DAI", "USDS", "GHO", "LUSD", "FRAX", "PYUSD")

    def set_controlled(self, rows, flag: bool = True) -> None:
        """Mark rows as controlled (EVC controller enabled): the market's own `liquidate` reverts on them."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_accounts):
            raise Revert(f"{self.id}: account index out of range [0, {self.n_accounts})")
        self.controlled[rows] = bool(flag)

    def liquidatable(self) -> np.ndarray:
        """Accounts with HF < 1 that are not controlled by an external controller."""
        return np.flatnonzero((self.health() < 1.0) & ~self.controlled)

    def _stable_idx(self) -> list[int]:
        return [self.idx[s] for s in self.stable_assets if s in self.idx]

    def _is_stable(self, asset: str) -> bool:
        return asset in self.idx and asset in self.stable_assets

    def controller_close(
        self, account: int, fraction: float, liquidator: str, liquidator_row: int | None = None, penalty: float = 0.0
    ) -> Liquidated | None:
        """Controller liquidation (EVC controlCollateral): `liquidator` repays `fraction` of every debt asset from
        its ledger balance and receives collateral worth repaid·(1 + penalty), capped by the balance, pro rata
        over collateral assets by USD value. No HF check, no close factor, no protocol fee; debt left with no
        collateral stays for `write_off`. None if there is no debt or no collateral. With several assets the
        event joins their symbols with '+' and its token amounts are USD. `liquidator_row` is unused (the
        liquidator pays from its wallet)."""
        a = int(account)
        if not 0 <= a < self.n_accounts:
            raise Revert(f"{self.id}: no account #{a}")
        if not 0.0 < fraction <= 1.0:
            raise Revert(f"{self.id}: fraction must be in (0, 1], got {fraction}")
        if not 0.0 <= penalty < 1.0:
            raise Revert(f"{self.id}: penalty must be in [0, 1), got {penalty}")
        p = self.prices()
        debt_tok = self.debt_scaled[a] * self.borrow_index
        coll_tok = self.coll_scaled[a] * self.liq_index
        coll_usd = coll_tok * p
        if not (np.any(debt_tok > 0) and coll_usd.sum() > 0):
            return None
        hf = float(self.health()[a])
        repay = fraction * debt_tok  # token units per debt asset
        # EVC controller design: seize value = repaid·(1 + penalty); when the collateral cannot pay that, the
        # repayment shrinks to collateral / (1 + penalty) (Aave _calculateAvailableCollateralToLiquidate)
        capped = float(repay @ p) * (1.0 + penalty) > float(coll_usd.sum())
        if capped:
            repay *= float(coll_usd.sum()) / (float(repay @ p) * (1.0 + penalty))
        repaid_usd = float(repay @ p)
        share = 1.0 if capped else min(repaid_usd * (1.0 + penalty) / float(coll_usd.sum()), 1.0)
        seize = coll_tok * share  # pro rata over collateral assets
        led = self.env.ledger
        owed = np.flatnonzero(repay > 0)
        short = [self.assets[j] for j in owed if led.balance(liquidator, self.assets[j]) < repay[j] * (1 - 1e-12)]
        if short:
            raise Revert(f"{self.id}: liquidator {liquidator} cannot repay {short[0]}")
        for j in owed:
            led.transfer(self.assets[j], liquidator, self.id, float(repay[j]))
        for i in np.flatnonzero(seize > 0):
            led.transfer(self.assets[i], self.id, liquidator, float(seize[i]))
        self.debt_scaled[a] = np.maximum(self.debt_scaled[a] - repay / self.borrow_index, 0.0)
        self.coll_scaled[a] = np.maximum(self.coll_scaled[a] - seize / self.liq_index, 0.0)
        if fraction == 1.0 and not capped:
            self.debt_scaled[a] = 0.0
        if capped:
            self.coll_scaled[a] = 0.0
        self._touch()
        seized_usd = float(seize @ p)
        self.liquidated_debt_usd += repaid_usd
        self._last_collateral = int(np.argmax(coll_usd))
        d_names, c_names = [self.assets[j] for j in owed], [self.assets[i] for i in np.flatnonzero(seize > 0)]
        d_amt = float(repay[owed[0]]) if len(d_names) == 1 else repaid_usd
        c_amt = float(seize[self.idx[c_names[0]]]) if len(c_names) == 1 else seized_usd
        return self.env.emit(
            Liquidated(
                self.env.clock.block,
                self.id,
                a,
                liquidator,
                "+".join(d_names),
                "+".join(c_names),
                d_amt,
                c_amt,
                0.0,
                repaid_usd,
                seized_usd,
                seized_usd - repaid_usd,
                hf,
            )
        )

    def settle_out(self, account: int, amount_usd: float, to_holder: str, asset: str | None = None) -> float:
        """Withdraw up to `amount_usd` of stablecoin collateral (`asset`, else the stable reserves largest first)
        to `to_holder`, never more than the account's equity (collateral − debt); returns USD moved."""
        a = int(account)
        if not 0 <= a < self.n_accounts:
            raise Revert(f"{self.id}: no account #{a}")
        p = self.prices()
        coll_usd, debt_usd = self.account_usd()
        left = min(float(amount_usd), max(float(coll_usd[a] - debt_usd[a]), 0.0))
        cand = self._stable_idx() if asset is None else [self.idx[asset]] if self._is_stable(asset) else []
        cand = sorted(cand, key=lambda j: -self.coll_scaled[a, j] * self.liq_index[j] * p[j])
        moved = 0.0
        for j in cand:
            if left <= 0:
                break
            tok = min(left / p[j], self.coll_scaled[a, j] * self.liq_index[j])
            tok = min(tok, self.env.ledger.balance(self.id, self.assets[j]))
            if tok <= 0:
                continue
            self.env.ledger.transfer(self.assets[j], self.id, to_holder, tok)
            self.coll_scaled[a, j] = max(self.coll_scaled[a, j] - tok / self.liq_index[j], 0.0)
            moved += tok * p[j]
            left -= tok * p[j]
        self._touch()
        return moved

    def settle_in(self, account: int, amount_usd: float, from_holder: str, asset: str | None = None) -> float:
        """Repay up to `amount_usd` of the account's stablecoin debt (`asset`, else the stable debts largest
        first) with `from_holder`'s tokens; returns USD repaid."""
        a = int(account)
        if not 0 <= a < self.n_accounts:
            raise Revert(f"{self.id}: no account #{a}")
        p = self.prices()
        left = float(amount_usd)
        cand = self._stable_idx() if asset is None else [self.idx[asset]] if self._is_stable(asset) else []
        cand = sorted(cand, key=lambda j: -self.debt_scaled[a, j] * self.borrow_index[j] * p[j])
        moved = 0.0
        for j in cand:
            if left <= 0:
                break
            tok = min(
                left / p[j],
                self.debt_scaled[a, j] * self.borrow_index[j],
                self.env.ledger.balance(from_holder, self.assets[j]),
            )
            if tok <= 0:
                continue
            self.repay(from_holder, np.array([a]), self.assets[j], np.array([tok]))
            moved += tok * p[j]
            left -= tok * p[j]
        return moved

    def write_off(self, account: int) -> float:
        """Debt left on an account with no collateral is burned into the reserve deficit (Aave v3.3
        _burnBadDebt), whatever the close-factor rule; returns the bad debt in USD (0 if collateral is left)."""
        a = int(account)
        if not 0 <= a < self.n_accounts:
            raise Revert(f"{self.id}: no account #{a}")
        if np.any(self.coll_scaled[a] * self.liq_index > 1e-12):
            return 0.0
        p = self.prices()
        out = 0.0
        for j in np.flatnonzero(self.debt_scaled[a] > 0):
            amount = float(self.debt_scaled[a, j] * self.borrow_index[j])
            self.deficit[j] += amount
            self.deficit_usd_by_collateral[getattr(self, "_last_collateral", j)] += amount * p[j]
            self.debt_scaled[a, j] = 0.0
            out += amount * p[j]
            self.env.emit(BadDebt(self.env.clock.block, self.id, a, self.assets[j], amount, amount * p[j]))
        self._touch()
        return out
