"""Exact final aggregation in 1e18 fixed point ("wei"), with Solidity's truncating arithmetic.

On-chain engines (Lyra PMRM, Derive PMRM_2) hold every amount as an int256 scaled by 1e18 and multiply with
`multiplyDecimal(a, b) = a * b / 1e18`, truncating toward zero (lyra-utils SignedDecimalMath.sol). A float
engine can land a hair on the other side of an integer: 824.9999999 truncates to 824 where the contract, whose
last step is exact, gives 825. Exact mode turns each per-account component (scenario PnL, basis floor,
contingencies, mark-to-market, cash) into wei once, truncating toward zero as the test harnesses do when they
read decimal inputs (TestPMRM_2_PortfolioCasesNEW.t.sol `_toBNInt`), parameters into wei from their decimal
text, and aggregates with Python integers. Amounts are numpy object arrays of Python ints (vectorised over
accounts; slower than float64, meant for the comparisons with contract outputs, not the per-block hot path).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

WAD = 10**18
ObjArray = npt.NDArray[np.object_]


def wei(x: float) -> int:
    """A float amount in wei, truncated toward zero (the float's exact binary value times 1e18)."""
    return int(Decimal(float(x)) * WAD)


def wei_param(x: float) -> int:
    """A parameter in wei from its shortest decimal text (0.8 -> 800000000000000000 exactly)."""
    return int(Decimal(repr(float(x))) * WAD)


def wei_array(a: npt.ArrayLike) -> ObjArray:
    """Elementwise `wei` of a float array, as an object array of Python ints of the same shape."""
    arr = np.asarray(a, dtype=np.float64)
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(arr.reshape(-1).tolist()):
        flat[i] = wei(v)
    return out


def mul(a: Any, b: Any) -> Any:
    """SignedDecimalMath.multiplyDecimal: a * b / 1e18, truncating toward zero (works on object arrays)."""
    p = a * b
    q = abs(p) // WAD
    return np.where(np.asarray(p < 0, dtype=bool), -q, q) if isinstance(p, np.ndarray) else (-q if p < 0 else q)


def sdiv_wad(a: Any) -> Any:
    """a / 1e18 with Solidity's truncation toward zero (the integer part a harness compares, `mm / 1e18`)."""
    q = abs(a) // WAD
    return np.where(np.asarray(a < 0, dtype=bool), -q, q) if isinstance(a, np.ndarray) else (-q if a < 0 else q)


def to_float(a: ObjArray) -> npt.NDArray[np.float64]:
    """Wei object array back to float64 units."""
    return np.array([int(v) / WAD for v in np.asarray(a).reshape(-1)], dtype=np.float64).reshape(np.shape(a))


def minimum(a: ObjArray, b: ObjArray) -> ObjArray:
    """Elementwise min of two object arrays of ints."""
    return np.where(np.asarray(a < b, dtype=bool), a, b).astype(object)


def maximum(a: ObjArray, b: ObjArray) -> ObjArray:
    """Elementwise max of two object arrays of ints."""
    return np.where(np.asarray(a > b, dtype=bool), a, b).astype(object)


def conf_factor(conf: npt.ArrayLike, margin: float) -> npt.NDArray[np.float64]:
    """(1 - confidence) * confMargin per element, rounded once from the decimal inputs (PMRMLib
    _getConfidenceContingency multiplies 1e18 decimals: (1 - 0.1) * 0.4 is exactly 0.36 there, while float gives
    0.36000000000000004 and a contingency of 720.0000000000001 where the contract has 720)."""
    c = np.asarray(conf, dtype=np.float64)
    uniq, inv = np.unique(c, return_inverse=True)
    m = Decimal(repr(float(margin)))
    vals = np.array([float((1 - Decimal(repr(float(x)))) * m) for x in uniq], dtype=np.float64)
    return vals[inv.reshape(c.shape)] if c.size else np.zeros(c.shape)
