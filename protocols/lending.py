"""A lending market modelled on Aave v3: per-asset LTV, liquidation threshold and bonus, close factor,
kinked interest, and bad debt written off into a deficit.

Sources (see docs/margin-methods.md 5.1): aave-v3-core GenericLogic.calculateUserAccountData (health factor),
LiquidationLogic (close factor v3.0: 50% of the reserve debt above HF 0.95, 100% at or below; v3.3:
100% unless collateral and debt >= $2,000 and HF > 0.95, then at most 50% of total debt; no dust under
$1,000; bad debt burned into the reserve deficit when collateral is gone),
DefaultReserveInterestRateStrategy (kinked rates).

Accounts are rows of arrays: `coll_scaled[n, A]` and `debt_scaled[n, A]` in scaled token units
(multiply by the liquidity / borrow index for token units). Aave's fuller account model is there when a book needs
it, and costs nothing when it does not: a per-asset used-as-collateral flag, e-mode categories (their own LTV /
threshold / bonus and optional price source), isolation mode with its debt ceiling, supply and borrow caps, the
liquidator's choice of collateral / debt pair, and `precision="aave-v3"` for the contract's own rounding
(protocols/lending_accounts.py). The protocol is one ledger holder (its id)
that holds every deposited token; its treasury is `"{id}:treasury"`. Interest changes claims, not
token balances: tokens move only on supply, borrow, repay, withdraw and liquidation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from sys import getrefcount
from typing import Any, cast

import numpy as np

from defistress.protocols.base import ControlledRows, Env, Exposure, MarginProtocol, Revert
from defistress.protocols.events import BadDebt, Liquidated
from defistress.protocols.exact_sums import ExactColumnSums
from defistress.protocols.ledger import InsufficientBalance
from defistress.protocols.lending_accounts import BASE_UNIT, EModeCategory, aave_account_values, category_terms
from defistress.protocols.lending_rows import RowSparsity, row_nonzero

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
    emode_category: int = 0  # Aave e-mode category of the asset (0: none)
    debt_ceiling: float = 0.0  # USD (1 token of the borrowed stablecoin = 1 USD, as Aave counts it); > 0: isolated
    borrowable_in_isolation: bool = False  # may be borrowed by accounts in isolation mode
    supply_cap: float = 0.0  # tokens (0: no cap), Aave SUPPLY_CAP_EXCEEDED
    borrow_cap: float = 0.0  # tokens (0: no cap), Aave BORROW_CAP_EXCEEDED
    borrowing_enabled: bool = True
    decimals: int = 18  # token decimals (the smallest unit; used by precision "aave-v3" and the evm backend)

    def __post_init__(self) -> None:
        # the kink divides by it and by 1 - it (DefaultReserveInterestRateStrategy: OPTIMAL_USAGE_RATIO < 100%)
        if not 0.0 < self.optimal_utilisation < 1.0:
            raise ValueError(
                f"{self.symbol}: optimal_utilisation must be in (0, 1) (a fraction), got {self.optimal_utilisation!r}"
            )


def _health(weighted: np.ndarray, debt: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Aave health factor weighted / debt into `out`, inf where there is no debt (debt <= 0): one plain division and a
    fix-up of the debt-free rows, the same values as a masked division (`where=`), which is several times slower."""
    if out.size == 1:  # one row (a liquidation's refresh): the same division on scalars, no error-state switch
        out[0] = weighted[0] / debt[0] if debt[0] > 0 else np.inf
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(weighted, debt, out=out)
    out[~(debt > 0)] = np.inf
    return out


def _flipped_rows(old: np.ndarray, new: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """The rows, ascending, where two bool rows differ; the rows' lengths are whole 8-byte words (padded) and
    `scratch` is a bool row of one entry a word, left holding which words differ. The rows are compared as 8-byte words
    and only the differing words are looked into byte by byte: an eighth of a byte-by-byte scan when few rows differ."""
    np.not_equal(old.view(np.uint64), new.view(np.uint64), out=scratch)
    words = np.flatnonzero(scratch)
    rows = (words[:, np.newaxis] * 8 + np.arange(8)).ravel()
    return rows[old[rows] != new[rows]]


class _AccountValues(dict):
    """A market's cached account values (USD, per account): "coll_usd", "debt_usd", "weighted" and "hf" are filled
    when the cache is; "borrow_cap", which only a borrow needs, the first time it is read (one matrix-vector product
    fewer per block)."""

    def __init__(self, market: LendingMarket, values: dict[str, np.ndarray]):
        super().__init__(values)
        self._market = market

    def __missing__(self, key: str) -> np.ndarray:
        if key != "borrow_cap":
            raise KeyError(key)
        out = self[key] = self._market._borrow_caps()
        return out


@dataclass(frozen=True)
class Preview:
    """What a liquidation would do now, without doing it (token units and USD)."""

    debt_to_repay: float
    collateral_seized: float
    protocol_fee: float
    debt_usd: float
    collateral_usd: float


_NO_ROWS = np.zeros(0, dtype=np.int64)  # a change that touches no row (interest), read-only
_NO_ROWS.flags.writeable = False


#: books below this many accounts always refresh both sides whole: their three matrix-vector products cost less than
#: checking which side may keep its values (measured at 1,000 accounts on eth-crash; at 10,000 keeping the collateral
#: side while only the debt index moved costs 1% fewer instructions over the run's first 900 blocks, callgrind)
_KEEP_MIN_ACCOUNTS = 4_096


#: books from this many accounts refresh a side whose accounts each hold at most one asset by column multiplies instead
#: of a BLAS matrix-vector product (the same bits: protocols/lending_rows.py), and set the debt-free rows' health from
#: a kept list of them (`_health_whole`) (measured at 1,000, 10,000, 100,000 and 1,000,000 accounts; the kept list
#: again in 2026-12: at 10,000 the boolean mask costs fewer instructions, the eth-crash book's debt-free rows being
#: runs of neighbours)
_ROWS_MIN_ACCOUNTS = 16_384


#: a scaled array's exact total takes at most this many changes (`_touch` calls naming rows) between two reads before it
#: is summed whole instead of row by row (a bound on the list of changed rows kept when nobody reads the totals)
_DIRTY_MAX = 1024


_VALUE_NAMES = ("coll_usd", "debt_usd", "weighted", "hf")  # the cached account values filled on every refresh
_VALUE_NAMES_SET = frozenset(_VALUE_NAMES)
_KEPT_NAMES = (*_VALUE_NAMES, "borrow_cap")  # and the borrow caps when a borrow has read them

#: at most this many changed row entries are summed into a kept total one by one in Python (`update_lists`): below it,
#: the numpy path's fixed cost (a sort for the unique rows, gathers, a block sum) is most of a read
_FEW_DIRTY = 16


def _same_bits(a: np.ndarray, b: np.ndarray | None) -> bool:
    """Whether two float arrays hold the same bits (NaN payloads and signed zeros included)."""
    return b is not None and a.shape == b.shape and a.tobytes() == b.tobytes()


class LendingMarket(ControlledRows, MarginProtocol):
    """Aave-v3-like market over assets A with n accounts held as arrays."""

    _touch_rows: np.ndarray | int  # rows changed since the last `_touch` (bool mask, indices or one index)
    _touch_kept: str | tuple[str, ...]  # the scaled arrays ("coll", "debt") the change left alone: their totals stay
    _pending_rows: list[np.ndarray] | None  # rows changed since the cache was filled, one entry per `_touch`
    _pending_base: int  # the state version the cache had when `_pending_rows` started
    _coll_zero: dict[int, bool]  # asset -> no account holds it as collateral (+-0 balances), until coll_scaled changes
    _debt_zero: dict[int, bool]  # asset -> no account owes it, until debt_scaled changes

    def __init__(
        self,
        protocol_id: str,
        assets: list[AssetParams],
        oracles: dict,
        env: Env,
        close_factor_rule: str = "aave-v3.3",
        emodes: list[EModeCategory] | None = None,
        emode_oracles: dict | None = None,
        precision: str = "float",
    ):
        """`emodes`: e-mode categories; `emode_oracles`: category id -> price source of the category (optional);
        `precision`: "float" (float64 arithmetic) or "aave-v3" (the contract's rounding: 8-decimal oracle prices,
        base-currency floors, averages floored to basis points)."""
        if close_factor_rule not in ("aave-v3.0", "aave-v3.3"):
            raise ValueError(f"close_factor_rule must be 'aave-v3.0' or 'aave-v3.3', got {close_factor_rule!r}")
        if precision not in ("float", "aave-v3"):
            raise ValueError(f"precision must be 'float' or 'aave-v3', got {precision!r}")
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
        self._coll_total: np.ndarray | None = None  # scaled collateral total by asset (None: to recompute)
        self._debt_total: np.ndarray | None = None  # scaled debt total by asset (None: to recompute)
        # --- Aave's fuller account model (inactive until a book uses it) ---
        self.precision = precision
        self.emodes = {c.id: c for c in (emodes or [])}
        self.emode_oracles = dict(emode_oracles or {})
        unknown = sorted(set(self.emode_oracles) - set(self.emodes))
        if unknown:
            raise ValueError(f"{protocol_id}: price sources for unknown e-mode categories {unknown}")
        self.asset_category = np.array([a.emode_category for a in assets], dtype=np.int64)
        for a in assets:
            if a.emode_category and a.emode_category not in self.emodes:
                raise ValueError(
                    f"{protocol_id}: asset {a.symbol} is in e-mode category {a.emode_category}, which is not defined "
                    f"(defined: {sorted(self.emodes)})"
                )
        self.debt_ceiling = np.array([a.debt_ceiling for a in assets], dtype=float)
        self.borrowable_in_isolation = np.array([a.borrowable_in_isolation for a in assets], dtype=bool)
        self.supply_cap = np.array([a.supply_cap for a in assets], dtype=float)
        self.borrow_cap_tokens = np.array([a.borrow_cap for a in assets], dtype=float)
        self.borrowing_enabled = np.array([a.borrowing_enabled for a in assets], dtype=bool)
        self.decimals = np.array([a.decimals for a in assets], dtype=np.int64)
        self.ltv_bps = np.round(self.ltv * 1e4)
        self.lt_bps = np.round(self.lt * 1e4)
        self.iso_debt = np.zeros(n_a)  # Aave isolationModeTotalDebt per isolated collateral, borrowed-token units
        self._coll_on: np.ndarray | None = None  # (n, A) used-as-collateral flags; None: every supply counts
        self._emode: np.ndarray | None = None  # (n,) e-mode category per account; None: nobody in e-mode

    # --- views ------------------------------------------------------------------------------------
    @property
    def n_accounts(self) -> int:
        return self.coll_scaled.shape[0]

    def prices(self) -> np.ndarray:
        """Oracle prices, USD per token, in asset order (to 8 decimals, as AaveOracle returns them, under precision
        "aave-v3"). Read-only: the array is reused until an oracle's price changes (every call reads every oracle's
        `price`, so any update invalidates it, whatever path set it: simulated, replayed, 8-decimal chain feeds)."""
        vals = [o.price for o in self.oracles]
        if vals == self._price_vals:
            return self._price_arr
        p = np.array(vals, dtype=float)
        if self.precision == "aave-v3":
            p = np.round(p * BASE_UNIT) / BASE_UNIT
        p.flags.writeable = False
        self._price_vals, self._price_arr, self._price_bytes = vals, p, p.tobytes()
        return p

    _price_vals: list | None = None  # the oracle prices `_price_arr` was built from
    _price_arr: np.ndarray
    _price_bytes: bytes = b""

    def emode_prices(self) -> dict[int, float]:
        """Price of each e-mode category's own price source (USD), for the categories that have one."""
        out = {c: float(o.price) for c, o in self.emode_oracles.items()}
        if self.precision == "aave-v3":
            out = {c: round(v * BASE_UNIT) / BASE_UNIT for c, v in out.items()}
        return out

    @property
    def collateral_enabled(self) -> np.ndarray:
        """(n, A) bool: the asset counts as the account's collateral (Aave's used-as-collateral flag)."""
        if self._coll_on is None or self._coll_on.shape[0] != self.n_accounts:
            self._grow_flags()
        if self._coll_on is None:
            return np.ones(self.coll_scaled.shape, dtype=bool)
        return self._coll_on

    @property
    def user_emode(self) -> np.ndarray:
        """(n,) e-mode category of each account (0: none)."""
        if self._emode is None:
            return np.zeros(self.n_accounts, dtype=np.int64)
        self._grow_flags()
        return self._emode

    def _grow_flags(self) -> None:
        """Extend the flag and e-mode rows to the number of accounts (new rows: flags on, no e-mode)."""
        n = self.n_accounts
        if self._coll_on is not None and self._coll_on.shape[0] < n:
            pad = np.ones((n - self._coll_on.shape[0], len(self.assets)), dtype=bool)
            self._coll_on = np.vstack([self._coll_on, pad])
        if self._emode is not None and self._emode.shape[0] < n:
            self._emode = np.concatenate([self._emode, np.zeros(n - self._emode.shape[0], dtype=np.int64)])

    def _flags(self) -> np.ndarray:
        """The flag array, materialised (all on) for writing."""
        if self._coll_on is None:
            self._coll_on = np.ones(self.coll_scaled.shape, dtype=bool)
        self._grow_flags()
        return self._coll_on

    def _special_rows(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows (of `rows`, or of all) whose values need the account model: a flag off or an e-mode category."""
        if self._coll_on is None and self._emode is None:
            return np.zeros(0, dtype=np.int64)
        n = self.n_accounts
        self._grow_flags()
        mask = np.zeros(n, dtype=bool)
        if self._coll_on is not None:
            mask |= ~self._coll_on.all(axis=1)
        if self._emode is not None:
            mask |= self._emode != 0
        return np.flatnonzero(mask) if rows is None else rows[mask[rows]]

    def _terms(self, category: int, p: np.ndarray):
        """Per-asset price / LTV / LT / bonus vectors for an account in `category` (0: the reserves' own)."""
        cat = self.emodes.get(int(category)) if category else None
        cp = self.emode_prices().get(int(category)) if cat is not None else None
        return category_terms(cat, self.asset_category, p, self.ltv, self.lt, self.bonus, cp)

    def _counted_collateral(self, rows) -> np.ndarray:
        """Scaled collateral of `rows` that counts (flag on), (r, A)."""
        cs = self.coll_scaled[rows]
        if self._coll_on is not None:
            cs = cs * self._coll_on[rows]
        return cs

    def _fix_special(self, vals: dict[str, np.ndarray], rows: np.ndarray | None = None) -> None:
        """Recompute, in place, the values of rows with a flag off or in e-mode (one matmul per category)."""
        if self._coll_on is None and self._emode is None:  # no such rows (the common book): nothing to do
            return
        special = self._special_rows(rows)
        if special.size == 0:
            return
        p = self.prices()
        emode = self.user_emode[special]
        for c in np.unique(emode):
            rr = special[emode == c]
            t = self._terms(int(c), p)
            cp, dp = self.liq_index * t.price, self.borrow_index * t.price
            cs = self._counted_collateral(rr)
            d = self.debt_scaled[rr] @ dp
            w = cs @ (cp * t.lt)
            vals["coll_usd"][rr] = cs @ cp
            vals["debt_usd"][rr] = d
            vals["weighted"][rr] = w
            with np.errstate(divide="ignore", invalid="ignore"):
                vals["hf"][rr] = np.where(d > 0, w / d, np.inf)
            if "borrow_cap" in vals:
                vals["borrow_cap"][rr] = cs @ (cp * t.ltv)

    def _account_values_aave(self) -> dict[str, np.ndarray]:
        """Every account's values with GenericLogic's rounding (precision "aave-v3"); no incremental refresh."""
        n = self.n_accounts
        p = self.prices()
        names = ("coll_usd", "debt_usd", "weighted", "hf", "borrow_cap")
        out = {k: np.empty(n) for k in names}
        emode = self.user_emode
        counted = self.lt > 0
        for c in np.unique(emode) if n else []:
            rows = np.flatnonzero(emode == c) if self._emode is not None else slice(None)
            t = self._terms(int(c), p)
            vals = aave_account_values(
                self._balance(self._counted_collateral(rows) * self.liq_index) * counted,
                self._balance(self.debt_scaled[rows] * self.borrow_index),
                np.round(t.price * BASE_UNIT),
                np.round(t.ltv * 1e4),
                np.round(t.lt * 1e4),
            )
            for k in names:
                out[k][rows] = vals[k]
        return out

    def collateral(self) -> np.ndarray:
        """Collateral per account and asset, token units (whole base units under precision "aave-v3")."""
        return self._balance(self.coll_scaled * self.liq_index)

    def debt(self) -> np.ndarray:
        """Debt per account and asset, token units (whole base units under precision "aave-v3")."""
        return self._balance(self.debt_scaled * self.borrow_index)

    def _balance(self, tokens: np.ndarray, j: int | None = None) -> np.ndarray:
        """Under precision "aave-v3", a balance is scaled x index rounded half up to whole base units, as the token
        contracts compute it (WadRayMath.rayMul); otherwise unchanged. `j`: the asset of a 1-d or scalar input."""
        if self.precision != "aave-v3":
            return tokens
        unit = 10.0 ** (self.decimals if j is None else int(self.decimals[j]))
        return np.floor(tokens * unit + 0.5) / unit

    def _account_values(self) -> dict[str, np.ndarray]:
        """Per-account USD figures at oracle prices, cached until prices or state change.

        When only a few rows changed since the cache was filled (liquidate, repay: see `_touch`), only those
        rows are recomputed. Arrays that nobody outside the cache holds are overwritten in place (no new
        100k-row allocations per block); arrays a caller still holds are copied first, so a caller's array
        never changes under it."""
        p = self.prices()
        key = (self._price_bytes, self._version)
        if self.emode_oracles:
            key = (key[0] + np.array(list(self.emode_prices().values())).tobytes(), key[1])
        if key == self._cache_key:
            return self._cache
        if self.precision == "aave-v3":
            self._cache, self._cache_key, self._pending_rows = self._account_values_aave(), key, None
            self._coll_gen += 1
            return self._cache
        fast = self._one_row_refresh(key)
        if fast is not None:
            return fast
        cp, dp = self.liq_index * p, self.borrow_index * p  # USD per scaled unit
        wp = cp * self.lt  # USD of liquidation-threshold-weighted collateral per scaled unit
        free = self._free_values()  # before naming the cache here (`_free_values` counts its references)
        old, n = self._cache, self.n_accounts
        names = _VALUE_NAMES  # "borrow_cap" only when asked for (_AccountValues)
        kept = _KEPT_NAMES if "borrow_cap" in old else names
        pend = getattr(self, "_pending_rows", None)
        if pend is None and self._cache_key is not None and self._cache_key[1] == self._version:
            pend, self._pending_base = [], self._version  # no row changed since the cache was filled (prices did)
        # the cached values are right for every row but the pending ones, at the per-unit prices `_cache_vecs`
        rows_ok = (
            pend is not None
            and self._cache_key is not None
            and self._cache_key[1] == self._pending_base
            and self._version == self._pending_base + len(pend)
            and set(names) <= set(old)
            and old["hf"].shape == (n,)
        )
        vecs = self.__dict__.get("_cache_vecs")
        rows = np.zeros(0, dtype=np.int64)
        touched = [r for r in pend if r.size] if rows_ok and pend is not None else []  # (interest touches no row)
        if touched:
            first = touched[0]
            # one row, touched once or more (a liquidation and its write-off): that row, no sort of the pending rows
            one = first.size == 1 and all(r.size == 1 and r[0] == first[0] for r in touched)
            rows = first if one else np.unique(np.concatenate(touched))
        same = (
            rows_ok
            and vecs is not None
            and self._cache_key is not None
            and self._cache_key[0] == key[0]
            and _same_bits(cp, vecs[0])
            and _same_bits(wp, vecs[1])
            and _same_bits(dp, vecs[2])
        )
        keep_c = keep_d = False
        plain = self._coll_on is None and self._emode is None and not self.emode_oracles  # no flags, no e-mode
        if not same and rows_ok and vecs is not None and plain and n >= _KEEP_MIN_ACCOUNTS:
            keep_c = self._same_products("coll", (cp, vecs[0]), (wp, vecs[1]))
            keep_d = self._same_products("debt", (dp, vecs[2]))
        if same:
            # one row (a liquidation): its (1, A) view, not a gathered copy (the same products, fewer numpy calls)
            at = slice(int(rows[0]) % n, int(rows[0]) % n + 1) if rows.size == 1 else rows
            new = {k: free[k] if k in free else old[k].copy() for k in kept}
            self._row_products(new, at, cp, wp, dp)
            self._fix_special(new, rows)
        elif keep_c or keep_d:
            # prices per unit moved (interest, an oracle) only where every account's balance is zero: those products
            # are the same, so the side whose vector moved nowhere else keeps its values but for the pending rows
            # (their products on their own, as above); the other side is recomputed whole. No flags or e-mode here.
            new = {}
            for k, arr, vec, keep in (
                ("coll_usd", self.coll_scaled, cp, keep_c),
                ("weighted", self.coll_scaled, wp, keep_c),
                ("debt_usd", self.debt_scaled, dp, keep_d),
            ):
                if keep:
                    new[k] = free[k] if k in free else old[k].copy()
                    if rows.size:
                        new[k][rows] = arr[rows] @ vec
                else:
                    new[k] = self._products("coll" if arr is self.coll_scaled else "debt", vec, free.get(k))
            hf = free.get("hf")
            new["hf"] = self._health_whole(new["weighted"], new["debt_usd"], np.empty(n) if hf is None else hf)
        else:
            new = {
                "coll_usd": self._products("coll", cp, free.get("coll_usd")),
                "debt_usd": self._products("debt", dp, free.get("debt_usd")),
                "weighted": self._products("coll", wp, free.get("weighted")),
            }
            hf = free.get("hf")
            hf = np.empty(n) if hf is None else hf
            new["hf"] = self._health_whole(new["weighted"], new["debt_usd"], hf)
            self._fix_special(new)
        if not ((same or keep_c) and rows.size == 0):  # collateral values written (maybe the same ones)
            self._coll_gen += 1
        self._cache = _AccountValues(self, new)
        self._cache_key = key
        self._cache_vecs = (cp, wp, dp)
        self._cache_inputs = self._vec_inputs()
        self._pending_rows = None
        return self._cache

    def _vec_inputs(self) -> tuple[bytes, bytes, bytes]:
        """The bytes of what the per-unit prices (`_cache_vecs`: USD per scaled unit) are computed from besides the
        oracle prices (which the cache key holds): the liquidity and borrow indices and the liquidation thresholds.
        The vectors are their elementwise products with the prices, so the same bytes give the same vectors' bits."""
        return (self.liq_index.tobytes(), self.borrow_index.tobytes(), self.lt.tobytes())

    def _free_values(self) -> dict[str, np.ndarray]:
        """The cached value arrays (n rows each) that nothing outside the cache refers to, by name: a refresh may
        overwrite these in place (no new n-row allocation per block) and copies the others first, so an array a caller
        still holds never changes under it. None of them when anything outside holds the cache dict itself (a caller
        may read any array through it) or the dict lacks one of the four values (nothing to reuse).

        The threshold is 3 references because `getrefcount` counts its own argument and the local name here besides
        the one from the cache (`self._cache` for the dict, its entry for an array). So a caller calls this before it
        names the cache or one of its arrays itself; a name it held would only make the arrays copied (the same
        values)."""
        old, n = self._cache, self.n_accounts
        if getrefcount(old) > 3 or not old.keys() >= _VALUE_NAMES_SET:
            return {}
        free = {}
        for k in _KEPT_NAMES if "borrow_cap" in old else _VALUE_NAMES:
            a = old[k]
            if a.shape == (n,) and getrefcount(a) <= 3:
                free[k] = a
        return free

    def _one_row_refresh(self, key: tuple[bytes, int]) -> dict[str, np.ndarray] | None:
        """`_account_values` when one account changed since the cache was filled (once or more: a liquidation and its
        write-off) and the per-unit prices did not: what its general path does then (its `same` branch for one row),
        without its checks for the other cases. The per-unit prices are known unchanged from the bytes of their inputs
        (oracle prices in `key`, the indices and thresholds), which give the kept vectors' bits again. None when any
        condition fails: the general path decides."""
        pend = self.__dict__.get("_pending_rows")
        ck = self._cache_key
        inputs = self.__dict__.get("_cache_inputs")
        if (
            not pend
            or ck is None
            or inputs is None
            or ck[0] != key[0]
            or ck[1] != self._pending_base
            or self._version != ck[1] + len(pend)
        ):
            return None
        first = pend[0]
        if any(r.size != 1 or r[0] != first[0] for r in pend):
            return None
        if inputs != self._vec_inputs():
            return None
        n = self.n_accounts
        if not self._cache.keys() >= _VALUE_NAMES_SET or self._cache["hf"].shape != (n,):
            return None
        free = self._free_values()  # before naming the cache here (`_free_values` counts its references)
        old = self._cache
        cp, wp, dp = self._cache_vecs
        r = int(first[0]) % n
        new = {
            k: free[k] if k in free else old[k].copy() for k in (_KEPT_NAMES if "borrow_cap" in old else _VALUE_NAMES)
        }
        vals = self._row_values(r, cp, wp, dp)
        at = slice(r, r + 1)
        if vals is not None:  # its products in Python floats (the same bits: `_row_values`)
            new["coll_usd"][r], new["weighted"][r], new["debt_usd"][r] = vals
            new["hf"][r] = vals[1] / vals[2] if vals[2] > 0 else math.inf  # `_health` of one row
            if "borrow_cap" in new:
                new["borrow_cap"][at] = self.coll_scaled[at] @ (cp * self.ltv)
        else:
            self._row_products(new, at, cp, wp, dp)
        self._fix_special(new, first)
        self._coll_gen += 1
        self._cache = _AccountValues(self, new)
        self._cache_key = key
        self._pending_rows = None
        return self._cache

    def _row_products(
        self, new: dict[str, np.ndarray], at: slice | np.ndarray, cp: np.ndarray, wp: np.ndarray, dp: np.ndarray
    ) -> None:
        """Write the cached values of rows `at` (a slice or indices) into `new`: their scaled balances times the
        per-unit prices `cp`, `wp`, `dp` (USD per scaled unit; the rows' matrix products) and their health factor,
        and "borrow_cap" when the cache holds it."""
        cs = self.coll_scaled[at]
        d = self.debt_scaled[at] @ dp
        w = cs @ wp
        new["coll_usd"][at] = cs @ cp
        new["debt_usd"][at] = d
        new["weighted"][at] = w
        new["hf"][at] = _health(w, d, np.empty_like(w))
        if "borrow_cap" in new:
            new["borrow_cap"][at] = cs @ (cp * self.ltv)

    def _row_values(self, r: int, cp: np.ndarray, wp: np.ndarray, dp: np.ndarray) -> tuple[float, float, float] | None:
        """(collateral, weighted collateral, debt) USD of account `r`: `coll_scaled[r] @ cp`, `@ wp` and
        `debt_scaled[r] @ dp` with the kernel's bits, in Python floats when each side of the row holds one asset at most
        and every per-unit price is finite and positive (`row_nonzero`: a liquidation's refresh without three matrix
        products); None otherwise."""
        lists = self.__dict__.get("_vec_lists")  # the vectors as Python lists, and whether all are finite and > 0
        if lists is None or lists[0] is not cp or lists[1] is not wp or lists[2] is not dp:
            vl = (cp.tolist(), wp.tolist(), dp.tolist())
            lists = self._vec_lists = (cp, wp, dp, vl, all(0.0 < v < math.inf for vec in vl for v in vec))
        if not lists[4]:
            return None
        cs, ds = self.coll_scaled[r].tolist(), self.debt_scaled[r].tolist()
        i, j = row_nonzero(cs), row_nonzero(ds)
        if i is None or j is None:
            return None
        cl, wl, dl = lists[3]
        c, w = (cs[i] * cl[i], cs[i] * wl[i]) if i >= 0 else (0.0, 0.0)
        return c, w, ds[j] * dl[j] if j >= 0 else 0.0

    def _rows(self, side: str) -> RowSparsity:
        """Whether `side`'s scaled array ("coll" or "debt") holds one asset at most per account (kept)."""
        key = f"_{side}_rows"
        rs = self.__dict__.get(key)
        if rs is None:
            rs = RowSparsity()
            setattr(self, key, rs)
        return rs

    def _products(self, side: str, vec: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """Every account's `side` scaled balances x per-unit price `vec`, USD ((n,)): `scaled @ vec`, by column
        multiplies on a large book whose accounts hold one asset each on that side (the same bits)."""
        arr = self.coll_scaled if side == "coll" else self.debt_scaled
        if arr.shape[0] >= _ROWS_MIN_ACCOUNTS:
            res = self._rows(side).products(arr, vec, out)
            if res is not None:
                return res
        return np.matmul(arr, vec, out=out)

    def _health_whole(self, weighted: np.ndarray, debt: np.ndarray, out: np.ndarray) -> np.ndarray:
        """`_health` of every account. On a large book the debt-free rows (debt not > 0, NaN included) are set from a
        list of them kept from the last call and amended by the rows whose `debt > 0` flipped since: few rows flip in a
        block, and finding them takes a scan of 8-byte words; listing every debt-free row again each time one flipped
        (a byte-by-byte scan of the book) cost more than the division. The list is unsorted (each row once)."""
        n = out.size
        if n < _ROWS_MIN_ACCOUNTS:
            return _health(weighted, debt, out)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(weighted, debt, out=out)
        # (rows, `debt > 0` at the last call, a row for this call's, a scratch row of one entry a word, the debt-free
        # rows): bool rows padded with False to whole 8-byte words, reused (no allocation a block)
        state = self.__dict__.get("_debt_free")
        if state is None or state[0] != n:
            size = -(-n // 8) * 8
            owes = np.zeros(size, dtype=bool)
            np.greater(debt, 0.0, out=owes[:n])
            last = np.flatnonzero(np.logical_not(owes[:n]))
            state = (n, np.zeros(size, dtype=bool), owes, np.empty(size // 8, dtype=bool), last)
        else:
            owes, last = state[2], state[4]
            np.greater(debt, 0.0, out=owes[:n])
            flipped = _flipped_rows(state[1], owes, state[3])
            now = owes[flipped]
            if now.any():  # rows that took on debt leave the list
                last = last[np.logical_not(owes[last])]
            if not now.all():  # rows that became debt-free join it (they were not in it: they owed)
                last = np.concatenate((last, flipped[np.logical_not(now)]))
        self._debt_free = (n, owes, state[1], state[3], last)  # this call's row is the next call's last one
        out[last] = np.inf
        return out

    def _same_products(self, side: str, *pairs: tuple[np.ndarray, np.ndarray]) -> bool:
        """Whether every account's products balance x per-unit price are the same bits with each pair's new vector as
        with its old one, for `side`'s scaled array ("coll" or "debt"): every asset whose entry changed (bitwise)
        has a zero (+-0) balance on every account, and its old and new entries are finite and positive (so each
        product is a zero of the balance's sign either way). In Python floats: a handful of assets."""
        moved = []
        for new, old in pairs:
            for j, (a, b) in enumerate(zip(new.tolist(), old.tolist())):
                if a == b and math.copysign(1.0, a) == math.copysign(1.0, b):
                    continue  # the same bits (NaN is never equal to itself: it counts as moved)
                if not (0.0 < a < math.inf and 0.0 < b < math.inf):
                    return False
                moved.append(j)
        if not moved:
            return True
        arr = self.coll_scaled if side == "coll" else self.debt_scaled
        if arr.shape[0] >= _ROWS_MIN_ACCOUNTS and (rs := self._rows(side)).known_clean(arr):
            # a clean array's kept columns say which assets anyone holds: no product over the book for the total
            return not any(rs.holds(j) for j in moved)
        total = (self.coll_scaled_total if side == "coll" else self.debt_scaled_total).tolist()
        if any(total[j] != 0 for j in moved):  # a nonzero total: some balance is not zero (NaN too)
            return False
        zero = self.__dict__.setdefault(f"_{side}_zero", {})  # asset -> no balance at all, until the array changes
        for j in moved:
            if j not in zero:
                zero[j] = not arr[:, j].any()
            if not zero[j]:
                return False
        return True

    def _borrow_caps(self) -> np.ndarray:
        """Per account: Σ collateral · price · LTV, USD (what `_account_values` would have filled in for
        "borrow_cap"; its e-mode and flag rows included)."""
        cp = self.liq_index * self.prices()
        out = np.matmul(self.coll_scaled, cp * self.ltv)
        special = self._special_rows()
        if special.size:
            p = self.prices()
            emode = self.user_emode[special]
            for c in np.unique(emode):
                rr = special[emode == c]
                t = self._terms(int(c), p)
                out[rr] = self._counted_collateral(rr) @ ((self.liq_index * t.price) * t.ltv)
        return out

    _version = 0
    _coll_gen = 0  # bumped whenever the cached collateral values may change (the metrics' collateral sum is kept)

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
        # the scaled arrays the change left alone ("coll", "debt" or both), if a caller says so: their totals stay
        kept = self.__dict__.pop("_touch_kept", ())
        if "coll" not in kept:
            self._coll_total, self._coll_zero = None, {}
            self._coll_gen += 1
            self._rows("coll").touched(rows)
            self._total_rows_touched("coll", rows)
        if "debt" not in kept:
            self._debt_total, self._debt_zero = None, {}
            self._rows("debt").touched(rows)
            self._total_rows_touched("debt", rows)

    def _total_rows_touched(self, side: str, rows: np.ndarray | None) -> None:
        """Note the rows of `side`'s scaled array that changed for its exact total (None: any row may have): they are
        summed again at the next read; a long list (totals not read for many changes) is a full sum instead."""
        key = f"_{side}_dirty"
        dirty = self.__dict__.get(key)
        if rows is None or dirty is None or len(dirty) >= _DIRTY_MAX:
            self.__dict__[key] = None
        else:
            dirty.append(rows)

    def _scaled_total(self, side: str) -> np.ndarray:
        """Σ over accounts of `side`'s scaled (n, A) array ("coll" or "debt") by asset, exactly rounded
        (protocols/exact_sums.py: the same bits in any order, on any CPU). Kept from the rows changed since the last
        read (`_touch` names them): their new values are added and the values last summed (a shadow copy) taken off.
        Summed whole when any row may have changed (a `_touch` without rows) or the array was replaced (accounts
        added)."""
        arr = self.coll_scaled if side == "coll" else self.debt_scaled
        # (ExactColumnSums, shadow copy, the array it copies): set by the first sum, before which `dirty` is None
        state = cast("tuple[ExactColumnSums, np.ndarray, np.ndarray]", self.__dict__.get(f"_{side}_sums"))
        dirty = self.__dict__.get(f"_{side}_dirty")  # None until the first sum (and after a change naming no rows)
        # a new array object (accounts added: a numpy array held here cannot be resized in place) is summed whole
        if dirty is None or state[2] is not arr:
            sums = ExactColumnSums(arr.shape[1])
            sums.build(arr)
            state = self.__dict__[f"_{side}_sums"] = (sums, arr.copy(), arr)
        elif dirty:
            sums, shadow, n = state[0], state[1], arr.shape[0]
            if sum(r.size for r in dirty) <= _FEW_DIRTY:  # a few rows (a liquidation, a repay): in Python floats
                # each row once (repeated, negative indices: `% n`), so that its old values are taken off once
                few = sorted({i % n for r in dirty for i in r.tolist()})
                sums.update_lists([arr[i].tolist() for i in few], [shadow[i].tolist() for i in few])
                for i in few:
                    shadow[i] = arr[i]
            else:
                rows = np.unique(np.concatenate(dirty) % n)  # as above, sorted
                new = arr[rows]
                sums.update(new, shadow[rows])
                shadow[rows] = new
        self.__dict__[f"_{side}_dirty"] = []
        return state[0].totals()

    @property
    def coll_scaled_total(self) -> np.ndarray:
        """Scaled collateral by asset, kept until a change to `coll_scaled` (see `_touch`)."""
        if self._coll_total is None:
            self._coll_total = self._scaled_total("coll")
        return self._coll_total

    @property
    def debt_scaled_total(self) -> np.ndarray:
        """Scaled debt by asset, kept until a change to `debt_scaled` (see `_touch`)."""
        if self._debt_total is None:
            self._debt_total = self._scaled_total("debt")
        return self._debt_total

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
        self._grow_flags()
        self._touch()
        return np.arange(start, start + n)

    def supply_liquidity(self, holder: str, asset: str, amount: float) -> None:
        """Passive lenders deposit `amount` tokens (they are not borrowers)."""
        j = self.idx[asset]
        amount = float(self._whole_units(np.asarray(amount, float), j))
        self._check_supply_cap(j, float(amount))
        self.env.ledger.transfer(asset, holder, self.id, amount)
        self.lender_scaled[j] += amount / self.liq_index[j]

    def supply(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> None:
        """Deposit collateral for many accounts; tokens come from `holder` (the population's wallet). A first supply
        of an asset counts as collateral unless Aave v3.0.2 would not enable it (LTV 0, an isolated asset, or an
        account already in isolation mode: SupplyLogic.executeSupply, ValidationLogic.validateUseAsCollateral)."""
        j = self.idx[asset]
        self.require_active(asset)  # Aave v3 validateSupply: reserve active, not paused, not frozen
        amounts = self._whole_units(np.asarray(amounts, float), j)
        accounts = np.asarray(accounts)
        self._check_supply_cap(j, float(amounts.sum()))
        self.env.ledger.transfer(asset, holder, self.id, float(amounts.sum()))
        first = accounts[self.coll_scaled[accounts, j] <= 0]
        iso_before = self.isolation_state(first)[0] if first.size else first.astype(bool)
        np.add.at(self.coll_scaled[:, j], accounts, amounts / self.liq_index[j])
        if first.size:
            enable = ~iso_before & (self.ltv[j] > 0) & (self.debt_ceiling[j] == 0)
            if self._coll_on is not None or not enable.all():
                self._flags()[first, j] = enable
        self._touch_kept = "debt"  # collateral changed, not debt
        self._touch()

    def _whole_units(self, amounts: np.ndarray, j: int) -> np.ndarray:
        """Under precision "aave-v3", token amounts are whole base units (10**-decimals), floored as a transaction
        for a float amount would send them; otherwise unchanged."""
        if self.precision != "aave-v3":
            return amounts
        unit = 10.0 ** int(self.decimals[j])
        return np.floor(amounts * unit) / unit

    def _check_supply_cap(self, j: int, amount: float) -> None:
        """Aave ValidationLogic.validateSupply: supplied tokens (incl. the new ones) within the supply cap."""
        cap = self.supply_cap[j]
        if cap > 0:
            supplied = (self.coll_scaled_total[j] + self.lender_scaled[j]) * self.liq_index[j]
            if supplied + amount > cap * (1 + 1e-12):
                raise Revert(
                    f"SUPPLY_CAP_EXCEEDED: {self.assets[j]} supply {supplied + amount:.6g} > cap {cap:.6g} tokens"
                )

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
        amounts = self._whole_units(np.asarray(amounts, float), j)
        accounts = np.asarray(accounts)
        iso, iso_asset = self._check_borrow_rules(accounts, j, amounts)
        p = self.prices()
        v = self._account_values()
        new_debt_usd = v["debt_usd"][accounts] + amounts * self._price_for_rows(accounts, j, p)
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
        if iso.any():
            np.add.at(self.iso_debt, iso_asset[iso], amounts[iso])
        self._touch_kept = "coll"  # debt changed, not collateral
        self._touch()

    def _check_borrow_rules(self, accounts: np.ndarray, j: int, amounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aave ValidationLogic.validateBorrow beyond the LTV: borrowing enabled, the e-mode category, isolation mode
        (borrowable in isolation, debt ceiling) and the borrow cap. Returns the isolation state of `accounts`."""
        name = self.assets[j]
        if not self.borrowing_enabled[j]:
            raise Revert(f"BORROWING_NOT_ENABLED: {name}")
        if self._emode is not None:
            em = self.user_emode[accounts]
            off = (em != 0) & (em != self.asset_category[j])
            if off.any():
                raise Revert(
                    f"INCONSISTENT_EMODE_CATEGORY: {name} is not in the e-mode category of account "
                    f"#{int(accounts[off][0])} ({int(em[off][0])})"
                )
        iso, iso_asset = self.isolation_state(accounts)
        if iso.any():
            if not self.borrowable_in_isolation[j]:
                raise Revert(f"ASSET_NOT_BORROWABLE_IN_ISOLATION: {name}, account #{int(accounts[iso][0])}")
            add = np.zeros(len(self.assets))
            np.add.at(add, iso_asset[iso], amounts[iso])
            over = np.flatnonzero(self.iso_debt + add > self.debt_ceiling * (1 + 1e-12) + 1e-9)
            if len(over):
                k = int(over[0])
                raise Revert(
                    f"DEBT_CEILING_EXCEEDED: isolated debt against {self.assets[k]} would be "
                    f"{self.iso_debt[k] + add[k]:.6g} > ceiling {self.debt_ceiling[k]:.6g} USD"
                )
        cap = self.borrow_cap_tokens[j]
        if cap > 0:
            owed = self.debt_scaled_total[j] * self.borrow_index[j]
            if owed + float(amounts.sum()) > cap * (1 + 1e-12):
                raise Revert(f"BORROW_CAP_EXCEEDED: {name} debt {owed + float(amounts.sum()):.6g} > cap {cap:.6g}")
        return iso, iso_asset

    def _price_for_rows(self, accounts: np.ndarray, j: int, p: np.ndarray):
        """Price of asset j as each account's values use it: the e-mode category's source for accounts in the
        asset's category when it has one, else the oracle (a scalar when nobody is affected)."""
        cat = int(self.asset_category[j])
        if self._emode is None or not cat or cat not in self.emode_oracles:
            return p[j]
        return np.where(self.user_emode[accounts] == cat, self.emode_prices()[cat], p[j])

    def repay(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> np.ndarray:
        """Repay debt of many accounts (capped at what each owes); returns the amounts repaid."""
        j = self.idx[asset]
        self.require_unpaused(asset)  # Aave v3 validateRepay: not paused (frozen reserves take repayments)
        owed = self._balance(self.debt_scaled[accounts, j] * self.borrow_index[j], j)
        paid = np.minimum(self._whole_units(np.asarray(amounts, float), j), owed)
        self.env.ledger.transfer(asset, holder, self.id, float(paid.sum()))
        np.subtract.at(self.debt_scaled[:, j], accounts, paid / self.borrow_index[j])
        if self.precision == "aave-v3":  # a debt repaid whole is gone, as in the contract
            whole = np.atleast_1d(accounts)[np.atleast_1d(paid >= owed * (1 - 1e-12))]
            self.debt_scaled[whole, j] = 0.0
        self._reduce_isolated_debt(np.atleast_1d(accounts), paid)
        self._touch_rows = accounts
        self._touch_kept = "coll"  # debt changed, not collateral
        self._touch()
        return paid

    def _reduce_isolated_debt(self, accounts: np.ndarray | int, repaid: np.ndarray | float) -> None:
        """IsolationModeLogic.updateIsolatedDebtIfIsolated: repaid debt of accounts in isolation mode leaves the
        isolated collateral's total (floored at 0). `accounts` and `repaid`: arrays, or one account and amount."""
        if not (self.debt_ceiling > 0).any():
            return
        iso, k = self.isolation_state(np.atleast_1d(accounts))
        if iso.any():
            cut = np.zeros(len(self.assets))
            np.add.at(cut, k[iso], np.atleast_1d(repaid)[iso])
            self.iso_debt = np.maximum(self.iso_debt - cut, 0.0)

    # --- the account model: collateral flags, e-mode, isolation, genesis books -----------------------------
    def isolation_state(self, accounts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(in isolation mode, index of the isolated collateral or -1) per account: exactly one asset counts as
        collateral and it has a debt ceiling (UserConfiguration.getIsolationModeState)."""
        rows = np.arange(self.n_accounts) if accounts is None else np.atleast_1d(np.asarray(accounts))
        if not (self.debt_ceiling > 0).any():
            return np.zeros(rows.size, dtype=bool), np.full(rows.size, -1)
        on = self.coll_scaled[rows] > 0
        if self._coll_on is not None:
            on &= self.collateral_enabled[rows]
        k = on.argmax(axis=1)
        iso = (on.sum(axis=1) == 1) & (self.debt_ceiling[k] > 0)
        return iso, np.where(iso, k, -1)

    def set_collateral(self, accounts: np.ndarray, asset: str, on: bool) -> None:
        """Turn an asset on or off as collateral for many accounts (Pool.setUserUseReserveAsCollateral). Reverts the
        whole batch when any account has no balance ('UNDERLYING_BALANCE_ZERO'), may not enable it (LTV 0, isolation
        mode: 'USER_IN_ISOLATION_MODE_OR_LTV_ZERO'), or would fall below HF 1 by disabling it."""
        j = self.idx[asset]
        accounts = np.atleast_1d(np.asarray(accounts))
        if np.any(self.coll_scaled[accounts, j] <= 0):
            empty = accounts[self.coll_scaled[accounts, j] <= 0]
            raise Revert(f"UNDERLYING_BALANCE_ZERO: {asset}, e.g. account #{int(empty[0])}")
        flags = self._flags()
        if on:
            others = (self.coll_scaled[accounts] > 0) & flags[accounts]
            others[:, j] = False
            iso, _ = self.isolation_state(accounts)
            bad = (self.ltv[j] <= 0) | (others.any(axis=1) & (iso | (self.debt_ceiling[j] > 0)))
            if np.any(bad):
                raise Revert(f"USER_IN_ISOLATION_MODE_OR_LTV_ZERO: {asset}, account #{int(accounts[bad][0])}")
            flags[accounts, j] = True
            self._touch()
            return
        before = flags[accounts, j].copy()
        flags[accounts, j] = False
        self._touch()
        hf = self.health()[accounts]
        if np.any(hf < 1.0):
            flags[accounts, j] = before
            self._touch()
            a = int(accounts[hf < 1.0][0])
            raise Revert(f"HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD: disabling {asset} for account #{a}")

    def set_emode(self, accounts: np.ndarray, category: int) -> None:
        """Put many accounts in e-mode `category` (0: leave it) (Pool.setUserEMode). Every borrowed asset must be in
        the category ('INCONSISTENT_EMODE_CATEGORY'); leaving a category must keep HF >= 1 (EModeLogic)."""
        accounts = np.atleast_1d(np.asarray(accounts))
        category = int(category)
        if category and category not in self.emodes:
            raise Revert(f"INCONSISTENT_EMODE_CATEGORY: no e-mode category {category}; defined: {sorted(self.emodes)}")
        if category:
            borrowed_outside = (self.debt_scaled[accounts] > 0) & (self.asset_category != category)
            if borrowed_outside.any():
                a = int(accounts[borrowed_outside.any(axis=1)][0])
                raise Revert(f"INCONSISTENT_EMODE_CATEGORY: account #{a} borrows outside category {category}")
        if self._emode is None:
            if category == 0:
                return
            self._emode = np.zeros(self.n_accounts, dtype=np.int64)
        self._grow_flags()
        before = self._emode[accounts].copy()
        self._emode[accounts] = category
        self._touch()
        leaving = before != 0
        if leaving.any():
            hf = self.health()[accounts[leaving]]
            if np.any(hf < 1.0):
                self._emode[accounts] = before
                self._touch()
                raise Revert(
                    f"HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD: account #{int(accounts[leaving][hf < 1.0][0])} "
                    "cannot leave its e-mode category"
                )

    def genesis_positions(
        self,
        holder: str,
        accounts: np.ndarray,
        collateral: np.ndarray,
        debt: np.ndarray,
        enabled: np.ndarray | None = None,
        emode: np.ndarray | None = None,
    ) -> None:
        """Place existing positions as they are (an imported book): collateral and debt per account and asset (token
        units, (r, A)), which of them count as collateral and each account's e-mode category. No LTV, health or
        e-mode check applies: the book is a fact. Collateral tokens come from `holder`; borrowed tokens go to it."""
        accounts = np.asarray(accounts)
        collateral = np.asarray(collateral, float)
        debt = np.asarray(debt, float)
        shape = (accounts.size, len(self.assets))
        if collateral.shape != shape or debt.shape != shape:
            raise ValueError(f"{self.id}: collateral and debt must have shape {shape}")
        if not (np.all(np.isfinite(collateral)) and np.all(np.isfinite(debt))) or collateral.min(initial=0) < 0:
            raise ValueError(f"{self.id}: positions must be finite and non-negative")
        if debt.min(initial=0) < 0:
            raise ValueError(f"{self.id}: positions must be finite and non-negative")
        led = self.env.ledger
        for j, a in enumerate(self.assets):
            c, d = float(collateral[:, j].sum()), float(debt[:, j].sum())
            if c > 0:
                led.transfer(a, holder, self.id, c)
            if d > 0:
                if led.balance(self.id, a) < d * (1 - 1e-12):
                    raise Revert(f"{self.id}: not enough {a} liquidity to place the book's debt {d:.6g}")
                led.transfer(a, self.id, holder, d)
        self.coll_scaled[accounts] += collateral / self.liq_index
        self.debt_scaled[accounts] += debt / self.borrow_index
        # the book's flags and categories replace the rows' own; all on / all none are the defaults, written only
        # where the market already keeps flags or categories (a row switched earlier takes the book's)
        if enabled is not None and (self._coll_on is not None or not np.all(enabled)):
            self._flags()[accounts] = np.asarray(enabled, bool)
        if emode is not None and (self._emode is not None or np.any(emode)):
            unknown = sorted(set(np.unique(emode).tolist()) - set(self.emodes) - {0})
            if unknown:
                raise ValueError(f"{self.id}: accounts in undefined e-mode categories {unknown}")
            if self._emode is None:
                self._emode = np.zeros(self.n_accounts, dtype=np.int64)
            self._grow_flags()
            self._emode[accounts] = np.asarray(emode, dtype=np.int64)
        self._touch()
        iso, k = self.isolation_state(accounts)
        if iso.any():
            np.add.at(self.iso_debt, k[iso], debt[iso][:, self.borrowable_in_isolation].sum(axis=1))

    def best_liquidation_pairs(
        self, rows: np.ndarray, budget_usd: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each row, the (collateral, debt) pair a liquidator profits most from now, at oracle prices: the close
        factor caps the repayment, the collateral balance caps the seizure, the bonus and protocol fee of the
        row's terms (e-mode included) set the gain. `budget_usd` (A,) caps the repayment per debt asset.
        Returns (collateral index, debt index, profit USD), with -1 / -inf where no pair can be liquidated."""
        return self.liquidation_pairs_and_caps(rows, budget_usd)[:3]

    def liquidation_pairs_and_caps(
        self, rows: np.ndarray, budget_usd: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`best_liquidation_pairs` and, per debt asset, the largest close-factor cap of any row and collateral
        (USD, (A,); NaN where undefined): any budget at least this large gives the same pairs as no budget."""
        rows = np.atleast_1d(np.asarray(rows))
        r, n_a = rows.size, len(self.assets)
        if r == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0), np.zeros(n_a)
        p = self.prices()
        v = self._account_values()
        if self._emode is None:  # every row on the reserves' own terms: (A,) vectors broadcast over the rows
            price, bonus, lt = p, self.bonus[None, :], self.lt
        else:
            emode = self.user_emode[rows]
            price = np.empty((r, n_a))
            bonus = np.empty((r, n_a))
            lt = np.empty((r, n_a))
            for c in np.unique(emode):
                t = self._terms(int(c), p)
                m = emode == c
                price[m], bonus[m], lt[m] = t.price, t.bonus, t.lt
        coll = self._counted_collateral(rows) * self.liq_index * price * (lt > 0)
        debt = self.debt_scaled[rows] * self.borrow_index * price
        hf = v["hf"][rows]
        coll3, debt3 = coll[:, :, None], debt[:, None, :]  # (r, A, 1) collateral and (r, 1, A) debt, views
        if self.rule == "aave-v3.0":
            cf = np.where(hf > CLOSE_FACTOR_HF_THRESHOLD, DEFAULT_LIQUIDATION_CLOSE_FACTOR, 1.0)
            cap = np.broadcast_to((debt * cf[:, None])[:, None, :], (r, n_a, n_a))
        else:
            big = (coll3 >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD) & (debt3 >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
            half = np.minimum(debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * v["debt_usd"][rows][:, None])
            cap = np.where(big & (hf > CLOSE_FACTOR_HF_THRESHOLD)[:, None, None], half[:, None, :], debt3)
        cap_max = cap.max(axis=(0, 1))  # NaN where any cap is
        repay = cap if budget_usd is None else np.minimum(cap, np.asarray(budget_usd, float)[None, None, :])
        b = bonus[:, :, None]
        owed = repay * b  # the seizure the repayment asks for, USD (computed once: the same floats twice)
        seized = np.minimum(owed, coll3)
        repay = np.where(owed > coll3, coll3 / b, repay)
        fee = (seized - seized / b) * self.fee[None, :, None]
        profit = seized - fee - repay
        ok = (coll3 > 0) & (debt3 > 0) & (repay > 0)
        profit = np.where(ok, profit, -np.inf).reshape(r, -1)
        k = profit.argmax(axis=1)
        best = profit[np.arange(r), k]
        has = np.isfinite(best)
        ci = np.where(has, k // n_a, -1)
        dj = np.where(has, k % n_a, -1)
        return ci, dj, best, cap_max

    # --- liquidation -------------------------------------------------------------------------------
    def _row_terms(self, account: int):
        """Prices and bonus factors of one account's liquidation: its e-mode category's, else the reserves'."""
        return self._terms(int(self.user_emode[account]) if self._emode is not None else 0, self.prices())

    def max_debt_to_cover(self, account: int, debt_asset: str, collateral_asset: str | None = None) -> float:
        """Close-factor cap on the debt repayable in one call (token units), per the chosen rule. Under v3.3
        the $2,000 test applies to the collateral reserve being seized (all collateral if none is named)."""
        j = self.idx[debt_asset]
        if self.rule == "aave-v3.0" or collateral_asset is None:
            return self._max_debt_to_cover(account, j, None, None)
        return self._max_debt_to_cover(account, j, self.idx[collateral_asset], None)

    def _max_debt_to_cover(self, account: int, j: int, i: int | None, price: np.ndarray | None) -> float:
        """`max_debt_to_cover` of debt asset `j` and collateral asset `i` (None: all collateral); `price`: the
        account's liquidation prices (`_row_terms(account).price`) if the caller has them, else looked up."""
        v = self._account_values()
        hf = v["hf"][account]
        reserve_debt = cast(float, self._balance(self.debt_scaled[account, j] * self.borrow_index[j], j))
        if self.rule == "aave-v3.0":
            cf = DEFAULT_LIQUIDATION_CLOSE_FACTOR if hf > CLOSE_FACTOR_HF_THRESHOLD else 1.0
            # v3.0.2 LiquidationLogic._calculateDebt: userVariableDebt.percentMul(closeFactor), half up to a base unit
            return cast(float, self._balance(np.multiply(reserve_debt, cf), j))
        p = self._row_terms(account).price if price is None else price
        if i is None:
            reserve_coll_usd = v["coll_usd"][account]
        else:  # aave-v3.3 LiquidationLogic: userReserveCollateralInBaseCurrency
            reserve_coll_usd = self.coll_scaled[account, i] * self.liq_index[i] * p[i]
        if (
            reserve_coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and reserve_debt * p[j] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and hf > CLOSE_FACTOR_HF_THRESHOLD
        ):
            return min(reserve_debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * v["debt_usd"][account] / p[j])
        return reserve_debt

    def preview(self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float) -> Preview:
        """Amounts a liquidation would move now (LiquidationLogic._calculateAvailableCollateralToLiquidate), with the
        e-mode bonus and price source when the account's category covers the assets (_getConfigurationData)."""
        return self.cap_and_preview(account, collateral_asset, debt_asset, debt_to_cover)[1]

    def cap_and_preview(
        self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float
    ) -> tuple[float, Preview]:
        """(`max_debt_to_cover(account, debt_asset, collateral_asset)`, `preview(...)`), the cap computed once."""
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        t = self._row_terms(account)
        if type(self).max_debt_to_cover is LendingMarket.max_debt_to_cover:
            cap = self._max_debt_to_cover(account, j, i, t.price)
        else:  # a subclass's own cap
            cap = self.max_debt_to_cover(account, debt_asset, collateral_asset)
        return cap, self._preview(account, i, j, t.price, t.bonus, min(debt_to_cover, cap))

    def preview_within(
        self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float, cap: float
    ) -> Preview:
        """`preview(...)` given `cap`, the account's `max_debt_to_cover(account, debt_asset, collateral_asset)` in
        the market's current state (as `cap_and_preview` returned it): the same figures without recomputing it."""
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        t = self._row_terms(account)
        return self._preview(account, i, j, t.price, t.bonus, min(debt_to_cover, cap))

    def _preview(self, account: int, i: int, j: int, p: np.ndarray, bonus: np.ndarray, debt: float) -> Preview:
        """`preview` of a repayment of `debt` tokens (within the close-factor cap) with the account's liquidation
        prices `p` and bonus factors `bonus` (A,)."""
        coll_balance = cast(float, self._balance(self.coll_scaled[account, i] * self.liq_index[i], i))
        seized = debt * p[j] / p[i] * bonus[i]
        if seized > coll_balance:
            seized = coll_balance
            debt = coll_balance * p[i] / p[j] / bonus[i]
        fee = (seized - seized / bonus[i]) * self.fee[i]
        return Preview(debt, seized - fee, fee, debt * p[j], (seized - fee) * p[i])

    def liquidate(
        self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float, liquidator: str
    ) -> Liquidated:
        """Repay part of an unhealthy account's debt and seize collateral with the bonus (Aave liquidationCall). The
        liquidator names the pair; the collateral must count as the account's collateral."""
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
        # ValidationLogic.validateLiquidationCall's order: HF ('45'), collateral ('46'), debt ('47')
        if self.coll_scaled[account, i] <= 0 or (self._coll_on is not None and not self.collateral_enabled[account, i]):
            raise Revert("COLLATERAL_CANNOT_BE_LIQUIDATED")
        if self.debt_scaled[account, j] <= 0:
            raise Revert("SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER")
        pv = self.preview(account, collateral_asset, debt_asset, debt_to_cover)
        p = self._row_terms(account).price
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
        coll_before = self.coll_scaled[account, i] * self.liq_index[i]
        debt_before = self.debt_scaled[account, j] * self.borrow_index[j]
        self._reduce_isolated_debt(account, pv.debt_to_repay)
        self.debt_scaled[account, j] = max(self.debt_scaled[account, j] - pv.debt_to_repay / self.borrow_index[j], 0.0)
        self.coll_scaled[account, i] = max(
            self.coll_scaled[account, i] - (pv.collateral_seized + pv.protocol_fee) / self.liq_index[i], 0.0
        )
        if self.precision == "aave-v3":  # balances stay whole base units, as in the contract (no float dust)
            if pv.collateral_seized + pv.protocol_fee >= coll_before * (1 - 1e-12):
                self.coll_scaled[account, i] = 0.0
            if pv.debt_to_repay >= debt_before * (1 - 1e-12):
                self.debt_scaled[account, j] = 0.0
            for arr, k, idx in ((self.coll_scaled, i, self.liq_index), (self.debt_scaled, j, self.borrow_index)):
                arr[account, k] = (
                    self._whole_units(
                        np.round(arr[account, k] * idx[k] * 10.0 ** int(self.decimals[k]))
                        / 10.0 ** int(self.decimals[k]),
                        k,
                    )
                    / idx[k]
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
        if self.rule != "aave-v3.3":
            return
        # any collateral left: the same products and test as on the (A,) row, in Python floats (one row per call)
        if any(c * x > 1e-12 for c, x in zip(self.coll_scaled[account].tolist(), self.liq_index.tolist())):
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

    def borrow_rate(self, u: np.ndarray | None = None) -> np.ndarray:
        """Annual variable borrow rate per asset from the kink model (DefaultReserveInterestRateStrategy), at
        utilisation `u` (default: now)."""
        u = self.utilisation() if u is None else u
        base, s1, s2, opt = self._rate_params
        below = base + s1 * u / opt
        above = base + s1 + s2 * (u - opt) / (1 - opt)
        return np.where(u <= opt, below, above)

    def accrue(self, dt_seconds: float) -> None:
        """Grow the borrow index and the liquidity index (linear per block, Aave MathUtils). Under precision "aave-v3"
        interest follows the contract instead: a reserve's rates are set when an action changes its supply or debt
        and then hold; since that update the borrow index compounds (MathUtils.calculateCompoundedInterest, three
        terms) and the liquidity index grows linearly (calculateLinearInterest)."""
        if self.precision == "aave-v3":
            self._accrue_as_the_contract(dt_seconds)
            return
        # per reserve in Python floats: `utilisation` and `borrow_rate` (kink) with the same IEEE operations in the
        # same order as their (A,) vector arithmetic, so the same bits, without a dozen numpy calls per block
        f = dt_seconds / SECONDS_PER_YEAR
        debt, coll = self.debt_scaled_total.tolist(), self.coll_scaled_total.tolist()
        base, s1, s2, opt = (x.tolist() for x in self._rate_params)
        bi, li = self.borrow_index.tolist(), self.liq_index.tolist()
        lend, rf = self.lender_scaled.tolist(), self.reserve_factor.tolist()
        for k in range(len(bi)):
            supply = (coll[k] + lend[k]) * li[k]
            u = min(max(debt[k] * bi[k] / supply, 0.0), 1.0) if supply > 0 else 0.0
            if u <= opt[k]:
                rb = base[k] + s1[k] * u / opt[k]
            else:
                rb = base[k] + s1[k] + s2[k] * (u - opt[k]) / (1 - opt[k])
            bi[k] *= 1 + rb * f
            li[k] *= 1 + rb * u * (1 - rf[k]) * f
        self.borrow_index, self.liq_index = np.array(bi), np.array(li)
        # values change through the indices (no row does; scaled totals stay): `_account_values` compares them
        self._touch_rows, self._touch_kept = _NO_ROWS, ("coll", "debt")
        self._touch()

    def _accrue_as_the_contract(self, dt_seconds: float) -> None:
        st = cast("dict[str, Any] | None", self.__dict__.get("_reserve_clock"))
        totals = np.concatenate([self.coll_scaled_total + self.lender_scaled, self.debt_scaled_total])
        n_a = len(self.assets)
        if st is None:  # the first block: every reserve takes its rates now
            st = {
                "t": 0.0,
                "since": np.zeros(n_a),
                "liq0": self.liq_index.copy(),
                "bor0": self.borrow_index.copy(),
                "totals": np.full(2 * n_a, np.nan),
                "rb": np.zeros(n_a),
                "rs": np.zeros(n_a),
            }
            self._reserve_clock = st
        moved = (totals[:n_a] != st["totals"][:n_a]) | (totals[n_a:] != st["totals"][n_a:])
        if moved.any():  # ReserveLogic.updateState + updateInterestRates of the reserves an action touched
            u = self.utilisation()
            rb = self.borrow_rate()
            for k, v in (("liq0", self.liq_index), ("bor0", self.borrow_index)):
                st[k] = np.where(moved, v, st[k])
            st["since"] = np.where(moved, st["t"], st["since"])
            st["rb"] = np.where(moved, rb, st["rb"])
            st["rs"] = np.where(moved, rb * u * (1 - self.reserve_factor), st["rs"])
            st["totals"] = totals
        st["t"] += dt_seconds
        x = st["t"] - st["since"]  # seconds since each reserve's last update
        b = st["rb"] / SECONDS_PER_YEAR  # per second
        compound = (
            1
            + b * x
            + b * b * x * np.maximum(x - 1, 0) / 2
            + b**3 * x * np.maximum(x - 1, 0) * np.maximum(x - 2, 0) / 6
        )
        self.borrow_index = st["bor0"] * compound
        self.liq_index = st["liq0"] * (1 + st["rs"] * x / SECONDS_PER_YEAR)
        self._version += 1

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
        n = v["coll_usd"].size
        kept = self.__dict__.get("_coll_sum")  # (generation, rows, sum): the collateral values have not changed since
        if kept is not None and kept[0] == self._coll_gen and kept[1] == n:
            coll_total = kept[2]
        else:
            coll_total = float(v["coll_usd"].sum())
            self._coll_sum = (self._coll_gen, n, coll_total)
        debt_total = float(v["debt_usd"].sum())
        flag = self.__dict__.get("_flag_scratch")  # a reused (n,) bool row: no allocation per block
        if flag is None or flag.shape != (n,):
            flag = self._flag_scratch = np.empty(n, dtype=bool)
        # the test below only skips the sum: where it passes, the sum is 0.0 too. After a block with a shortfall the
        # next one most likely has one as well (insolvent accounts stay so): the sum is taken without the test
        if (
            not self.__dict__.get("_short_last", False)
            and math.isfinite(coll_total)
            and math.isfinite(debt_total)
            and not np.greater(v["debt_usd"], v["coll_usd"], out=flag).any()
        ):
            # no account owes more than it holds and every value is finite (both sums are): each max(debt - coll, 0)
            # is +0.0 (np.maximum(-0.0, 0.0) is +0.0 too), so their sum is 0.0 exactly, without the two passes
            shortfall = 0.0
        else:  # insolvent_debt_usd().sum() computed in a reused scratch row (called every block: no (n,) temporaries)
            short = self.__dict__.get("_scratch")
            if short is None or short.shape != v["debt_usd"].shape:
                short = self._scratch = np.empty_like(v["debt_usd"])
            np.subtract(v["debt_usd"], v["coll_usd"], out=short)
            np.maximum(short, 0.0, out=short)
            shortfall = float(short.sum())
        self._short_last = shortfall != 0.0  # (NaN too)
        return {
            "collateral_usd": coll_total,
            "debt_usd": debt_total,
            "accounts_unhealthy": int(np.count_nonzero(np.less(v["hf"], 1.0, out=flag))),
            "deficit_usd": deficit_usd,
            "bad_debt_usd": deficit_usd + shortfall,
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
        self._touch_kept = "debt"  # collateral changed, not debt
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
        self._touch_kept = "coll"  # debt changed, not collateral
        self._touch()
        return out
