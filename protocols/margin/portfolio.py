"""Many accounts' derivative positions as flat arrays (struct of arrays), and the market state margin reads.

P positions over N accounts: `account[p]` says which account position p belongs to. Models aggregate
per account with np.bincount / np.add.at over `account`, never with a Python loop over accounts.

Instrument kinds and their `qty` units:
- spot: units of the underlying held (base asset), valued at spot / stable price;
- perp, future: linear (USD-settled) contracts, units of the underlying;
- call, put: options on one unit of the underlying each; USD payoff (an inverse exchange's coin-settled option
  has the same USD payoff, so the same position; a coin-margined account values it in coin);
- inverse_perp, inverse_future: coin-settled (inverse) contracts, qty in USD face value (BitMEX/Deribit/OKX
  coin-margined books): value in coin q*(1/entry - 1/mark), in USD q*(mark/entry - 1);
- collateral: `qty` units of the collateral asset `assets[asset[p]]`, valued at MarketState.collateral_price /
  stable price, held in the margin market of underlying `und[p]` (Derive PM2 multi-collateral rows).

Each account has a margin currency (`numeraire`): -1 for USD, or the index of an underlying whose coin margins
the account (a coin-margined account: requirement and equity in coin, all its positions on that underlying).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from defistress.protocols.margin.market import (
    SECONDS_PER_DAY,
    SECONDS_PER_YEAR,
    MarketState,
    VolSurfaceLike,
)
from defistress.protocols.margin.result import MarginResult

__all__ = [
    "CALL",
    "COLLATERAL",
    "FUTURE",
    "INVERSE_FUTURE",
    "INVERSE_PERP",
    "KIND_CODES",
    "KIND_NAMES",
    "PERP",
    "PUT",
    "SECONDS_PER_DAY",
    "SECONDS_PER_YEAR",
    "SPOT",
    "USD",
    "UnsupportedBook",
    "MarketState",
    "Portfolio",
    "VolSurfaceLike",
    "add_funding",
    "check_supported",
    "is_option",
]

# instrument kinds (int8 codes)
SPOT, PERP, FUTURE, CALL, PUT, INVERSE_PERP, INVERSE_FUTURE, COLLATERAL = 0, 1, 2, 3, 4, 5, 6, 7
KIND_NAMES: tuple[str, ...] = ("spot", "perp", "future", "call", "put", "inverse_perp", "inverse_future", "collateral")
KIND_CODES: dict[str, int] = {name: code for code, name in enumerate(KIND_NAMES)}
USD = -1  # numeraire code of a USD-margined account
LINEAR_KINDS = (SPOT, PERP, FUTURE, CALL, PUT)  # what every model understands

Arr = npt.NDArray[Any]


def is_option(kind: Arr) -> npt.NDArray[np.bool_]:
    """Boolean mask of calls and puts."""
    return np.asarray((kind == CALL) | (kind == PUT), dtype=bool)


def _empty(dtype: type) -> Arr:
    return np.zeros(0, dtype=dtype)


@dataclass
class Portfolio:
    """Many accounts at once, as flat position arrays (struct of arrays). P positions over N accounts."""

    n_accounts: int
    underlyings: tuple[str, ...]
    account: Arr  # (P,) int64 account index 0..N-1
    kind: Arr  # (P,) int8 kind code (KIND_NAMES)
    und: Arr  # (P,) int64 index into underlyings
    qty: Arr  # (P,) float64 signed (long > 0): units of the underlying; USD face for inverse; asset units
    strike: Arr  # (P,) float64 USD (0 for non-options)
    expiry_s: Arr  # (P,) float64 seconds to expiry from now (0 for spot/perp)
    entry_price: Arr  # (P,) float64 USD, perps/futures entry for unrealised PnL (0 = at the current mark)
    cash: Arr  # (N,) float64 USD (stablecoin) balance per account
    labels: tuple[str, ...] = ()
    numeraire: Arr = field(default_factory=lambda: _empty(np.int64))  # (N,) USD=-1 or underlying index
    asset: Arr = field(default_factory=lambda: _empty(np.int64))  # (P,) index into assets, -1 if not collateral
    assets: tuple[str, ...] = ()  # collateral asset names
    funding: Arr = field(default_factory=lambda: _empty(np.float64))  # (P,) USD unsettled funding, in equity

    def __post_init__(self) -> None:
        self.underlyings = tuple(self.underlyings)
        self.account = np.asarray(self.account, dtype=np.int64)
        self.kind = np.asarray(self.kind, dtype=np.int8)
        self.und = np.asarray(self.und, dtype=np.int64)
        self.qty = np.asarray(self.qty, dtype=np.float64)
        self.strike = np.asarray(self.strike, dtype=np.float64)
        self.expiry_s = np.asarray(self.expiry_s, dtype=np.float64)
        self.entry_price = np.asarray(self.entry_price, dtype=np.float64)
        self.cash = np.asarray(self.cash, dtype=np.float64)
        self.labels = tuple(self.labels)
        self.assets = tuple(self.assets)
        p = self.account.shape[0]
        self.numeraire = np.asarray(self.numeraire, dtype=np.int64)
        if self.numeraire.size == 0:
            self.numeraire = np.full(self.n_accounts, USD, dtype=np.int64)
        self.asset = np.asarray(self.asset, dtype=np.int64)
        if self.asset.size == 0:
            self.asset = np.full(p, -1, dtype=np.int64)
        self.funding = np.asarray(self.funding, dtype=np.float64)
        if self.funding.size == 0:
            self.funding = np.zeros(p, dtype=np.float64)
        self.validate()

    @property
    def n_positions(self) -> int:
        return int(self.account.shape[0])

    @property
    def coin_margined(self) -> npt.NDArray[np.bool_]:
        """(N,) True for accounts margined in an underlying's coin."""
        return np.asarray(self.numeraire != USD)

    def margin_currency(self, i: int) -> str:
        """Name of account i's margin currency ('USD' or an underlying)."""
        n = int(self.numeraire[i])
        return "USD" if n == USD else self.underlyings[n]

    @classmethod
    def from_records(cls, accounts: list[dict[str, Any]], underlyings: Iterable[str] | None = None) -> Portfolio:
        """Build from the record form: [{"name", "cash", "margin_currency", "positions": [{"kind", "underlying",
        "qty", "strike", "expiry_s" | "expiry_days", "entry_price", "asset", "funding"}]}]."""
        if underlyings is None:
            seen: dict[str, None] = {}
            for a in accounts:
                for p in a.get("positions", []):
                    seen.setdefault(str(p["underlying"]), None)
                cur = a.get("margin_currency", "USD")
                if cur != "USD":
                    seen.setdefault(str(cur), None)
            underlyings = tuple(seen)
        underlyings = tuple(underlyings)
        und_index = {u: i for i, u in enumerate(underlyings)}
        cols: dict[str, list[Any]] = {
            k: [] for k in ("account", "kind", "und", "qty", "strike", "expiry_s", "entry_price", "asset", "funding")
        }
        assets: dict[str, int] = {}
        numeraire = []
        for i, a in enumerate(accounts):
            cur = str(a.get("margin_currency", "USD"))
            if cur != "USD" and cur not in und_index:
                raise ValueError(f"margin_currency={cur!r} of account {i}: allowed 'USD' or {list(underlyings)}")
            numeraire.append(USD if cur == "USD" else und_index[cur])
            for p in a.get("positions", []):
                kind = str(p["kind"]).lower()
                if kind not in KIND_CODES:
                    raise ValueError(f"positions[].kind={p['kind']!r} of account {i}: allowed {list(KIND_NAMES)}")
                u = str(p["underlying"])
                if u not in und_index:
                    raise ValueError(f"positions[].underlying={u!r} of account {i}: allowed {list(underlyings)}")
                if "expiry_s" in p:
                    exp = float(p["expiry_s"])
                else:
                    exp = float(p.get("expiry_days", 0.0)) * SECONDS_PER_DAY
                asset = -1
                if kind == "collateral":
                    if not p.get("asset"):
                        raise ValueError(f"positions[].asset: required for kind 'collateral' (account {i})")
                    asset = assets.setdefault(str(p["asset"]), len(assets))
                elif p.get("asset") is not None:
                    raise ValueError(f"positions[].asset: allowed only for kind 'collateral' (account {i})")
                cols["account"].append(i)
                cols["kind"].append(KIND_CODES[kind])
                cols["und"].append(und_index[u])
                cols["qty"].append(float(p["qty"]))
                cols["strike"].append(float(p.get("strike", 0.0)))
                cols["expiry_s"].append(exp)
                cols["entry_price"].append(float(p.get("entry_price", 0.0)))
                cols["asset"].append(asset)
                cols["funding"].append(float(p.get("funding", 0.0)))
        labels = tuple(str(a.get("name", f"account-{i}")) for i, a in enumerate(accounts))
        return cls(
            n_accounts=len(accounts),
            underlyings=underlyings,
            account=np.array(cols["account"], dtype=np.int64),
            kind=np.array(cols["kind"], dtype=np.int8),
            und=np.array(cols["und"], dtype=np.int64),
            qty=np.array(cols["qty"], dtype=np.float64),
            strike=np.array(cols["strike"], dtype=np.float64),
            expiry_s=np.array(cols["expiry_s"], dtype=np.float64),
            entry_price=np.array(cols["entry_price"], dtype=np.float64),
            cash=np.array([float(a.get("cash", 0.0)) for a in accounts], dtype=np.float64),
            labels=labels,
            numeraire=np.array(numeraire, dtype=np.int64),
            asset=np.array(cols["asset"], dtype=np.int64),
            assets=tuple(assets),
            funding=np.array(cols["funding"], dtype=np.float64),
        )

    def to_records(self) -> list[dict[str, Any]]:
        """Inverse of from_records (expiry given in expiry_s; asset/funding/margin_currency only when used)."""
        out = []
        for i in range(self.n_accounts):
            df = self.positions_of(i)
            rec: dict[str, Any] = {
                "name": self.labels[i] if self.labels else f"account-{i}",
                "cash": float(self.cash[i]),
                "positions": [
                    {k: v for k, v in r.items() if not (k == "asset" and v is None)}
                    for r in df.drop(columns=["position"]).to_dict("records")
                ],
            }
            if self.numeraire[i] != USD:
                rec["margin_currency"] = self.margin_currency(i)
            out.append(rec)
        return out

    def positions_of(self, i: int) -> pd.DataFrame:
        """One account's positions as a tidy frame (for reports)."""
        if not 0 <= i < self.n_accounts:
            raise ValueError(f"account index i={i}: allowed 0..{self.n_accounts - 1}")
        idx = np.flatnonzero(self.account == i)
        df = pd.DataFrame(
            {
                "position": idx,
                "kind": [KIND_NAMES[k] for k in self.kind[idx]],
                "underlying": [self.underlyings[u] for u in self.und[idx]],
                "qty": self.qty[idx],
                "strike": self.strike[idx],
                "expiry_s": self.expiry_s[idx],
                "entry_price": self.entry_price[idx],
            }
        )
        if (self.asset[idx] >= 0).any():
            df["asset"] = [self.assets[a] if a >= 0 else None for a in self.asset[idx]]
        if (self.funding[idx] != 0).any():
            df["funding"] = self.funding[idx]
        return df

    def subset(self, accounts: npt.ArrayLike) -> Portfolio:
        """A new portfolio holding only the given accounts (renumbered 0..len-1 in the given order)."""
        acc = np.asarray(accounts, dtype=np.int64)
        remap = np.full(self.n_accounts, -1, dtype=np.int64)
        remap[acc] = np.arange(acc.size)
        keep = remap[self.account] >= 0
        order = np.argsort(remap[self.account[keep]], kind="stable")
        sel = np.flatnonzero(keep)[order]
        return Portfolio(
            n_accounts=int(acc.size),
            underlyings=self.underlyings,
            account=remap[self.account[sel]],
            kind=self.kind[sel],
            und=self.und[sel],
            qty=self.qty[sel],
            strike=self.strike[sel],
            expiry_s=self.expiry_s[sel],
            entry_price=self.entry_price[sel],
            cash=self.cash[acc],
            labels=tuple(self.labels[i] for i in acc) if self.labels else (),
            numeraire=self.numeraire[acc],
            asset=self.asset[sel],
            assets=self.assets,
            funding=self.funding[sel],
        )

    def validate(self) -> None:
        """Raise ValueError naming the offending field and the allowed values. A book that passes `_plainly_valid`
        (every check at once, from a few reductions) is valid; any other is checked field by field, which raises
        the first failing check's error (or finds it valid after all)."""
        if self._plainly_valid():
            return
        self._validate_fields()

    def _plainly_valid(self) -> bool:
        """True only if every check of `_validate_fields` passes, for the common book (USD-margined or on one's own
        coin, no collateral rows, non-negative strikes) in about a dozen array reductions instead of thirty: the
        float fields' finiteness in one pass over their concatenation, a minimum >= 0 bounds every element, and a
        book with no kind code >= COLLATERAL has no collateral rows. False sends the book to the field-by-field
        checks, so a False for a valid book costs time only."""
        n, p = self.n_accounts, self.account.shape
        if n < 0 or self.labels and len(self.labels) != n:
            return False
        if any(getattr(self, k).shape != p for k in ("kind", "und", "qty", "strike", "expiry_s", "entry_price")):
            return False
        if self.asset.shape != p or self.funding.shape != p or self.cash.shape != (n,) or self.numeraire.shape != (n,):
            return False
        if not np.isfinite(self.cash).all():
            return False
        if not self.account.size:  # no positions: the cash and numeraire checks only
            return not n or bool(self.numeraire.min() >= USD and self.numeraire.max() < len(self.underlyings))
        if self.account.min() < 0 or self.account.max() >= n or self.und.min() < 0:
            return False
        if self.und.max() >= len(self.underlyings) or self.kind.min() < 0 or self.kind.max() >= COLLATERAL:
            return False  # COLLATERAL is the last code: a smaller maximum means no collateral rows
        if self.asset.min() != -1 or self.asset.max() != -1:
            return False
        floats = np.concatenate((self.qty, self.strike, self.expiry_s, self.entry_price, self.funding))
        if not np.isfinite(floats).all() or min(self.strike.min(), self.expiry_s.min(), self.entry_price.min()) < 0:
            return False
        if self.numeraire.max() == USD:  # USD-margined accounts only: no coin check
            return bool(self.numeraire.min() == USD)
        if self.numeraire.min() < USD or self.numeraire.max() >= len(self.underlyings):
            return False
        coin = self.numeraire[self.account]
        return bool(((coin == USD) | (coin == self.und)).all())

    def _validate_fields(self) -> None:
        """The checks of `validate` one field at a time: raises ValueError for the first that fails."""
        if self.n_accounts < 0:
            raise ValueError(f"n_accounts={self.n_accounts}: allowed >= 0")
        p = self.account.shape
        for name in ("kind", "und", "qty", "strike", "expiry_s", "entry_price", "asset", "funding"):
            arr = getattr(self, name)
            if arr.shape != p:
                raise ValueError(f"{name}.shape={arr.shape}: allowed {p} (same as account)")
        for name in ("cash", "numeraire"):
            if getattr(self, name).shape != (self.n_accounts,):
                raise ValueError(f"{name}.shape={getattr(self, name).shape}: allowed ({self.n_accounts},)")
        if self.account.size and (self.account.min() < 0 or self.account.max() >= self.n_accounts):
            raise ValueError(f"account: allowed 0..{self.n_accounts - 1}")
        if self.kind.size and (self.kind.min() < 0 or self.kind.max() >= len(KIND_NAMES)):  # int8 codes
            raise ValueError(f"kind: allowed {dict(KIND_CODES)}")
        if self.und.size and (self.und.min() < 0 or self.und.max() >= len(self.underlyings)):
            raise ValueError(f"und: allowed 0..{len(self.underlyings) - 1} (underlyings={self.underlyings})")
        if self.numeraire.size and (
            self.numeraire.min() < USD or self.numeraire.max() >= max(len(self.underlyings), 0)
        ):
            raise ValueError(f"numeraire: allowed -1 (USD) or 0..{len(self.underlyings) - 1} ({self.underlyings})")
        for name in ("qty", "strike", "expiry_s", "entry_price", "cash", "funding"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name}: allowed finite float64 values")
        opt = is_option(self.kind)
        if (self.strike[opt] < 0).any():
            raise ValueError("strike: allowed >= 0 for options")
        if (self.expiry_s < 0).any():
            raise ValueError("expiry_s: allowed >= 0 seconds")
        if (self.entry_price < 0).any():
            raise ValueError("entry_price: allowed >= 0 USD (0 = at the current mark)")
        coll = self.kind == COLLATERAL
        if (self.asset[coll] < 0).any() or (self.asset[coll] >= len(self.assets)).any():
            raise ValueError(f"asset: allowed 0..{len(self.assets) - 1} (assets={self.assets}) for collateral rows")
        if (self.asset[~coll] != -1).any():
            raise ValueError("asset: allowed -1 for rows that are not of kind 'collateral'")
        if (self.qty[coll] < 0).any():
            raise ValueError("qty: allowed >= 0 units of the asset for collateral rows")
        coin = self.numeraire[self.account] if self.account.size else self.account
        bad = (coin != USD) & (coin != self.und)
        if bad.any():
            i = int(self.account[np.flatnonzero(bad)[0]])
            raise ValueError(
                f"numeraire of account {i} ({self.margin_currency(i)}): a coin-margined account holds positions "
                f"on its own underlying only; allowed underlying {self.margin_currency(i)!r}"
            )
        if self.labels and len(self.labels) != self.n_accounts:
            raise ValueError(f"labels: allowed empty or {self.n_accounts} names, got {len(self.labels)}")


def add_funding(res: MarginResult, pf: Portfolio) -> MarginResult:
    """`res` with each account's unsettled funding (Portfolio.funding) added to its equity and native margin
    figures, for the models that value positions without it."""
    if not pf.funding.any():
        return res
    f = np.bincount(pf.account, weights=pf.funding, minlength=pf.n_accounts)[: pf.n_accounts]
    res.equity = res.equity + f
    for k in ("native_margin_mm", "native_margin_im"):
        if k in res.drivers:
            res.drivers[k] = np.asarray(res.drivers[k], dtype=np.float64) + f
    return res


class UnsupportedBook(ValueError):
    """A model cannot value this portfolio (instrument kinds or margin currencies it does not know)."""


def check_supported(pf: Portfolio, model: str, kinds: tuple[int, ...] = LINEAR_KINDS, coin: bool = False) -> None:
    """UnsupportedBook (a ValueError) if `pf` holds kinds `model` does not value, or coin-margined accounts it
    cannot margin."""
    bad = ~np.isin(pf.kind, np.asarray(kinds, dtype=np.int8))
    if bad.any():
        got = sorted({KIND_NAMES[k] for k in pf.kind[bad]})
        raise UnsupportedBook(
            f"positions of kind {got}: model {model!r} supports {[KIND_NAMES[k] for k in kinds]} "
            "(the scenario-grid presets value every kind)"
        )
    if not coin and pf.coin_margined.any():
        i = int(np.flatnonzero(pf.coin_margined)[0])
        raise UnsupportedBook(
            f"margin_currency={pf.margin_currency(i)!r} (account {i}): model {model!r} margins in USD only; "
            "allowed 'USD' (coin-margined accounts need a scenario-grid preset)"
        )
