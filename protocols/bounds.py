"""Bounded numeric types shared by every parameter model (scenario schema, protocol and agent params).

A number in a scenario is finite, is not a boolean (`true` is not 1 account), and lies below a physical
ceiling declared here, so that no product or sum of two inputs comes near float64's range (1.8e308) and
a NaN can never enter a run. The types carry strictness only; each field states its own bounds with
`Field(ge=..., le=CEILING)` (pydantic lets a field's `le` override a type's, so bounds live on the field).
The scenario schema re-exports these names from `defistress.scenarios.units`.

The ceilings are modelling bounds, not protocol parameters:
- MAX_USD = 1e15 USD: any USD amount, price, capital or pool depth. World GDP is about 1.05e14 USD
  (World Bank, 2023), so the ceiling is ten times all output on Earth; products of two such amounts
  (1e30) stay 1e278 below float64 overflow.
- MIN_PRICE_USD = 1e-9 USD: the smallest price of a token (below any listed token's), which keeps token
  amounts (USD / price) below 1e24.
- MAX_TOKENS = 1e12 token units: a holding of one token (ETH's supply is about 1.2e8).
- MAX_GWEI = 1e6 gwei per gas unit: a thousand times Ethereum's highest base fees (thousands of gwei at
  the 2021-2022 peaks, etherscan gas tracker).
- MAX_GAS = 1e9 gas units: thirty times Ethereum's 30-36M block gas limit.
- MAX_SECONDS = 10 years: any duration or delay (runs are at most 90 days).
- MAX_BLOCKS = 1e7 blocks: a count of blocks (10 years of 12-second blocks is 2.6e7; delays are far shorter).
- MAX_ACCOUNTS = 5e6 accounts per population (Aave v3 Ethereum has about 1e5 active borrowers).
- MAX_SEED = 2**63 - 1: seeds fit a signed 64-bit integer (Parquet and numpy columns).
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le
from pydantic import AllowInfNan, ConfigDict, Strict

MAX_USD = 1e15
MIN_PRICE_USD = 1e-9
MAX_TOKENS = 1e12
MAX_GWEI = 1e6
MAX_GAS = 1_000_000_000
MAX_SECONDS = 10 * 365 * 86400.0
MAX_BLOCKS = 10_000_000
MAX_ACCOUNTS = 5_000_000
MAX_SEED = 2**63 - 1
#: largest magnitude of a unitless model number (a distribution's median, a multiplier) without a tighter bound
MAX_VALUE = 1e15

#: a finite real number; booleans and strings are refused (use with Field(ge=..., le=...))
Float = Annotated[float, Strict(), AllowInfNan(False)]
#: an integer; booleans, floats and strings are refused
Int = Annotated[int, Strict()]
#: true or false; numbers and strings are refused
Bool = Annotated[bool, Strict()]
#: a non-negative ceiling that may be +inf to mean "no ceiling" (NaN fails the `ge` bound); give the field
#: `Field(ge=0, json_schema_extra={"maximum": CEILING})` and check finite values with `check_ceiling`
Ceiling = Annotated[float, Strict(), AllowInfNan(True)]


def check_ceiling(name: str, value: float, limit: float, unit: str) -> None:
    """A finite ceiling is at most `limit`; +inf means "no ceiling" and is left alone."""
    if value != float("inf") and value > limit:
        raise ValueError(
            f"{name}: {value:g} is out of range; allowed 0..{limit:g} {unit}, or leave it out for no ceiling"
        )


#: a share in [0, 1] (for the values of weight tables; a field uses Float with its own Field bounds)
Share = Annotated[float, Strict(), AllowInfNan(False), Ge(0), Le(1)]

#: model config of every parameter model: unknown keys refused, frozen, no NaN or infinity in any float
PARAMS_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
