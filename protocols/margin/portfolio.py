"""Many accounts' derivative positions as flat arrays (struct of arrays), and the market state margin reads.

P positions over N accounts: `account[p]` says which account position p belongs to. Models aggregate
per account with np.bincount / np.add.at over `account`, never with a Python loop over accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import pandas as pd

# instrument kinds (int8 codes)
SPOT, PERP, FUTURE, CALL, PUT = 0, 1, 2, 3, 4
KIND_NAMES: tuple[str, ...] = ("spot", "perp", "future", "call", "put")
KIND_CODES: dict[str, int] = {name: code for code, name in enumerate(KIND_NAMES)}
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_YEAR = 365.0 * SECONDS_PER_DAY  # Lyra/Derive Black76.sol and Deribit use a 365-day year


class VolSurfaceLike(TypingProtocol):
    """Anything that returns an annualised implied vol per (strike USD, expiry seconds, forward USD)."""

    def vol(self, strike: np.ndarray, expiry_s: np.ndarray, forward: np.ndarray) -> np.ndarray: ...


def is_option(kind: np.ndarray) -> np.ndarray:
    """Boolean mask of calls and puts."""
    return (kind == CALL) | (kind == PUT)


@dataclass
class Portfolio:
    """Many accounts at once, as flat position arrays (struct of arrays). P positions over N accounts."""

    n_accounts: int
    underlyings: tuple[str, ...]
    account: np.ndarray  # (P,) int64 account index 0..N-1
    kind: np.ndarray  # (P,) int8 SPOT/PERP/FUTURE/CALL/PUT
    und: np.ndarray  # (P,) int64 index into underlyings
    qty: np.ndarray  # (P,) float64 signed units of the underlying (long > 0)
    strike: np.ndarray  # (P,) float64 USD (0 for non-options)
    expiry_s: np.ndarray  # (P,) float64 seconds to expiry from now (0 for spot/perp)
    entry_price: np.ndarray  # (P,) float64 USD, perps/futures entry for unrealised PnL (0 otherwise)
    cash: np.ndarray  # (N,) float64 USD (stablecoin) balance per account
    labels: tuple[str, ...] = ()

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
        self.validate()

    @property
    def n_positions(self) -> int:
        return int(self.account.shape[0])

    @classmethod
    def from_records(
        cls, accounts: list[dict[str, Any]], underlyings: tuple[str, ...] | list[str] | None = None
    ) -> Portfolio:
        """Build from the record form: [{"name", "cash", "positions": [{"kind", "underlying", "qty", ...}]}]."""
        if underlyings is None:
            seen: dict[str, None] = {}
            for a in accounts:
                for p in a.get("positions", []):
                    seen.setdefault(str(p["underlying"]), None)
            underlyings = tuple(seen)
        und_index = {u: i for i, u in enumerate(underlyings)}
        cols: dict[str, list] = {k: [] for k in ("account", "kind", "und", "qty", "strike", "expiry_s", "entry_price")}
        for i, a in enumerate(accounts):
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
                cols["account"].append(i)
                cols["kind"].append(KIND_CODES[kind])
                cols["und"].append(und_index[u])
                cols["qty"].append(float(p["qty"]))
                cols["strike"].append(float(p.get("strike", 0.0)))
                cols["expiry_s"].append(exp)
                cols["entry_price"].append(float(p.get("entry_price", 0.0)))
        labels = tuple(str(a.get("name", f"account-{i}")) for i, a in enumerate(accounts))
        return cls(
            n_accounts=len(accounts),
            underlyings=tuple(underlyings),
            account=np.array(cols["account"], dtype=np.int64),
            kind=np.array(cols["kind"], dtype=np.int8),
            und=np.array(cols["und"], dtype=np.int64),
            qty=np.array(cols["qty"], dtype=np.float64),
            strike=np.array(cols["strike"], dtype=np.float64),
            expiry_s=np.array(cols["expiry_s"], dtype=np.float64),
            entry_price=np.array(cols["entry_price"], dtype=np.float64),
            cash=np.array([float(a.get("cash", 0.0)) for a in accounts], dtype=np.float64),
            labels=labels,
        )

    def to_records(self) -> list[dict[str, Any]]:
        """Inverse of from_records (expiry given in expiry_s)."""
        out = []
        for i in range(self.n_accounts):
            df = self.positions_of(i)
            out.append(
                {
                    "name": self.labels[i] if self.labels else f"account-{i}",
                    "cash": float(self.cash[i]),
                    "positions": df.drop(columns=["position"]).to_dict("records"),
                }
            )
        return out

    def positions_of(self, i: int) -> pd.DataFrame:
        """One account's positions as a tidy frame (for reports)."""
        if not 0 <= i < self.n_accounts:
            raise ValueError(f"account index i={i}: allowed 0..{self.n_accounts - 1}")
        idx = np.flatnonzero(self.account == i)
        return pd.DataFrame(
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

    def subset(self, accounts: np.ndarray | list[int]) -> Portfolio:
        """A new portfolio holding only the given accounts (renumbered 0..len-1 in the given order)."""
        accounts = np.asarray(accounts, dtype=np.int64)
        remap = np.full(self.n_accounts, -1, dtype=np.int64)
        remap[accounts] = np.arange(accounts.size)
        keep = remap[self.account] >= 0
        order = np.argsort(remap[self.account[keep]], kind="stable")
        sel = np.flatnonzero(keep)[order]
        return Portfolio(
            n_accounts=int(accounts.size),
            underlyings=self.underlyings,
            account=remap[self.account[sel]],
            kind=self.kind[sel],
            und=self.und[sel],
            qty=self.qty[sel],
            strike=self.strike[sel],
            expiry_s=self.expiry_s[sel],
            entry_price=self.entry_price[sel],
            cash=self.cash[accounts],
            labels=tuple(self.labels[i] for i in accounts) if self.labels else (),
        )

    def validate(self) -> None:
        """Raise ValueError naming the offending field and the allowed values."""
        if self.n_accounts < 0:
            raise ValueError(f"n_accounts={self.n_accounts}: allowed >= 0")
        p = self.account.shape
        for name in ("kind", "und", "qty", "strike", "expiry_s", "entry_price"):
            arr = getattr(self, name)
            if arr.shape != p:
                raise ValueError(f"{name}.shape={arr.shape}: allowed {p} (same as account)")
        if self.cash.shape != (self.n_accounts,):
            raise ValueError(f"cash.shape={self.cash.shape}: allowed ({self.n_accounts},)")
        if self.account.size and (self.account.min() < 0 or self.account.max() >= self.n_accounts):
            raise ValueError(f"account: allowed 0..{self.n_accounts - 1}")
        if self.kind.size and not np.isin(self.kind, np.arange(len(KIND_NAMES))).all():
            raise ValueError(f"kind: allowed {dict(KIND_CODES)}")
        if self.und.size and (self.und.min() < 0 or self.und.max() >= len(self.underlyings)):
            raise ValueError(f"und: allowed 0..{len(self.underlyings) - 1} (underlyings={self.underlyings})")
        for name in ("qty", "strike", "expiry_s", "entry_price", "cash"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name}: allowed finite float64 values")
        opt = is_option(self.kind)
        if (self.strike[opt] < 0).any():
            raise ValueError("strike: allowed >= 0 for options")
        if (self.expiry_s < 0).any():
            raise ValueError("expiry_s: allowed >= 0 seconds")
        if self.labels and len(self.labels) != self.n_accounts:
            raise ValueError(f"labels: allowed empty or {self.n_accounts} names, got {len(self.labels)}")


@dataclass
class MarketState:
    """Market inputs for margin: per-underlying spot/forward/vol and global stable price."""

    spot: dict[str, float]  # USD per unit
    vol: dict[str, Any]  # float (annualised) or VolSurfaceLike
    rate: dict[str, float] = field(default_factory=dict)  # annual continuously compounded, default 0
    perp_price: dict[str, float] = field(default_factory=dict)  # USD perp mark, default spot
    stable_price: float = 1.0  # USD per stablecoin
    confidence: dict[str, float] = field(default_factory=dict)  # oracle confidence 0..1, default 1

    def __post_init__(self) -> None:
        for u, s in self.spot.items():
            if not (np.isfinite(s) and s >= 0):
                raise ValueError(f"spot[{u!r}]={s}: allowed finite >= 0 USD")
        for u, c in self.confidence.items():
            if not 0.0 <= c <= 1.0:
                raise ValueError(f"confidence[{u!r}]={c}: allowed 0..1")
        if not (np.isfinite(self.stable_price) and self.stable_price >= 0):
            raise ValueError(f"stable_price={self.stable_price}: allowed finite >= 0 USD")

    def _per_und(self, underlyings: tuple[str, ...], table: dict[str, float], default: Any, name: str) -> np.ndarray:
        out = np.empty(len(underlyings), dtype=np.float64)
        for i, u in enumerate(underlyings):
            if u in table:
                out[i] = float(table[u])
            elif default is None:
                raise ValueError(f"{name}: missing underlying {u!r}; allowed keys {list(table)}")
            else:
                out[i] = float(default[u] if isinstance(default, dict) else default)
        return out

    def scalars(self, underlying: str) -> tuple[float, float, float, float]:
        """(spot USD, rate, perp mark USD, confidence) of one underlying; only spot is required."""
        if underlying not in self.spot:
            raise ValueError(f"spot: missing underlying {underlying!r}; allowed keys {list(self.spot)}")
        s = float(self.spot[underlying])
        return (
            s,
            float(self.rate.get(underlying, 0.0)),
            float(self.perp_price.get(underlying, s)),
            float(self.confidence.get(underlying, 1.0)),
        )

    def spot_array(self, underlyings: tuple[str, ...]) -> np.ndarray:
        """(U,) USD spot per underlying, in the portfolio's underlying order."""
        return self._per_und(underlyings, self.spot, None, "spot")

    def rate_array(self, underlyings: tuple[str, ...]) -> np.ndarray:
        return self._per_und(underlyings, self.rate, 0.0, "rate")

    def perp_array(self, underlyings: tuple[str, ...]) -> np.ndarray:
        return self._per_und(underlyings, self.perp_price, self.spot, "perp_price")

    def confidence_array(self, underlyings: tuple[str, ...]) -> np.ndarray:
        return self._per_und(underlyings, self.confidence, 1.0, "confidence")

    def forward(
        self, und_idx_array: np.ndarray, expiry_s: np.ndarray, underlyings: tuple[str, ...] | None = None
    ) -> np.ndarray:
        """USD forward F = S * exp(r * T) per position (T in 365-day years). Without `underlyings`, the
        spot dict's key order is the underlying index order."""
        unds = tuple(self.spot) if underlyings is None else tuple(underlyings)
        s = self.spot_array(unds)[np.asarray(und_idx_array, dtype=np.int64)]
        r = self.rate_array(unds)[np.asarray(und_idx_array, dtype=np.int64)]
        return s * np.exp(r * np.asarray(expiry_s, dtype=np.float64) / SECONDS_PER_YEAR)

    def vols(
        self,
        underlyings: tuple[str, ...],
        und_idx: np.ndarray,
        strike: np.ndarray,
        expiry_s: np.ndarray,
        forward: np.ndarray,
    ) -> np.ndarray:
        """Annualised implied vol per position, from a flat number or a surface per underlying."""
        out = np.zeros(np.shape(strike), dtype=np.float64)
        for i, u in enumerate(underlyings):
            m = und_idx == i
            if not m.any():
                continue
            if u not in self.vol:
                raise ValueError(f"vol: missing underlying {u!r}; allowed keys {list(self.vol)}")
            v = self.vol[u]
            if hasattr(v, "vol"):
                out[m] = v.vol(strike[m], expiry_s[m], forward[m])
            else:
                out[m] = float(v)
        return out
