"""Published SPAN risk arrays: the 16 scenario losses and the composite delta a clearing house publishes per
contract, for `Span` to use instead of building its own arrays from Black-76.

Scenario order and meaning are SPAN's (docs/margin-methods.md 6.1; CME "SPAN Risk Parameter File Layouts for
the Positional Formats", Type 8 records): 1-2 futures unchanged / vol up, down; 3-4 up 1/3; 5-6 down 1/3;
7-8 up 2/3; 9-10 down 2/3; 11-12 up 3/3; 13-14 down 3/3; 15-16 extreme up / down times the cover fraction.
Values are losses for one LONG contract in the performance-bond currency (positive = loss), the composite
delta is the contract's probability-weighted delta in futures-equivalents per contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

N_SCENARIOS = 16
ARRAY_KINDS = ("future", "call", "put")
_EXPIRY_TOL_S = 0.5 * 86_400.0  # a position matches a contract whose expiry is within half a day


@dataclass(frozen=True)
class RiskArray:
    """One contract's published risk array.

    kind: "future", "call" or "put"; expiry_s: seconds to expiry; strike: USD (0 for futures);
    losses: 16 USD per contract, positive = loss of one long contract; composite_delta: futures-equivalents
    per contract; contract_size: units of the underlying per contract (a position's qty / contract_size
    contracts); price: settlement price, USD per unit of the underlying (None: Span values options itself).
    """

    kind: str
    expiry_s: float
    losses: tuple[float, ...]
    composite_delta: float
    strike: float = 0.0
    contract_size: float = 1.0
    price: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ARRAY_KINDS:
            raise ValueError(f"kind={self.kind!r}: allowed {list(ARRAY_KINDS)}")
        losses = tuple(float(v) for v in self.losses)
        if len(losses) != N_SCENARIOS or not all(math.isfinite(v) for v in losses):
            raise ValueError(f"losses: allowed {N_SCENARIOS} finite numbers (USD per contract), got {len(losses)}")
        object.__setattr__(self, "losses", losses)
        for name, lo in (("expiry_s", 0.0), ("strike", 0.0)):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v >= lo):
                raise ValueError(f"{name}={v!r}: allowed a finite number >= {lo}")
        if not (math.isfinite(self.composite_delta) and abs(self.composite_delta) <= 100.0):
            raise ValueError(f"composite_delta={self.composite_delta!r}: allowed a number in [-100, 100]")
        if not (math.isfinite(self.contract_size) and self.contract_size > 0):
            raise ValueError(f"contract_size={self.contract_size!r}: allowed > 0 units of the underlying")
        if self.kind != "future" and not self.strike > 0:
            raise ValueError(f"strike={self.strike!r}: allowed > 0 USD for kind {self.kind!r}")
        if self.price is not None and not (math.isfinite(self.price) and self.price >= 0):
            raise ValueError(f"price={self.price!r}: allowed None or a finite number >= 0 USD")


@dataclass(frozen=True)
class PublishedRiskArrays:
    """The published risk arrays of one underlying's contracts (a combined commodity)."""

    arrays: tuple[RiskArray, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "arrays", tuple(self.arrays))
        if not self.arrays:
            raise ValueError("arrays: allowed at least one RiskArray")

    def match(self, kind: npt.ArrayLike, expiry_s: npt.ArrayLike, strike: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Index of each position's contract (kind name, expiry within half a day, strike within 1e-9 USD
        relative), -1 where none matches."""
        k = np.asarray(kind, dtype=object)
        t = np.asarray(expiry_s, dtype=np.float64)
        x = np.asarray(strike, dtype=np.float64)
        a_kind = np.array([a.kind for a in self.arrays], dtype=object)
        a_t = np.array([a.expiry_s for a in self.arrays])
        a_x = np.array([a.strike for a in self.arrays])
        hit = (
            (k[:, None] == a_kind[None, :])
            & (np.abs(t[:, None] - a_t[None, :]) <= _EXPIRY_TOL_S)
            & ((k[:, None] == "future") | (np.abs(x[:, None] - a_x[None, :]) <= 1e-9 * np.maximum(a_x, 1.0)))
        )
        found = hit.any(axis=1)
        return np.where(found, hit.argmax(axis=1), -1).astype(np.int64)

    def table(self) -> dict[str, Any]:
        """Column arrays: losses (A, 16), composite_delta, contract_size, price (NaN when absent)."""
        return {
            "losses": np.array([a.losses for a in self.arrays], dtype=np.float64),
            "composite_delta": np.array([a.composite_delta for a in self.arrays]),
            "contract_size": np.array([a.contract_size for a in self.arrays]),
            "price": np.array([math.nan if a.price is None else a.price for a in self.arrays]),
        }
