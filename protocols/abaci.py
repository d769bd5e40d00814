"""Dutch-auction price curves ("abaci") of Maker Liquidations 2.0, vectorised over many auctions.

Each curve maps an auction's starting price `top` (stablecoin per collateral unit) and the seconds
since it started to the current price. Source: Maker dss src/abaci.sol (LinearDecrease,
StairstepExponentialDecrease, ExponentialDecrease). Inputs may be scalars or numpy arrays (broadcast);
scalars in give a float out. Negative durations count as zero (the contract reverts on them).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, Field

from defistress.protocols.bounds import MAX_SECONDS, PARAMS_CONFIG, Float


class _Abacus(BaseModel):
    model_config = PARAMS_CONFIG

    def price(self, top, dur_seconds):  # pragma: no cover - interface
        raise NotImplementedError


class LinearDecrease(_Abacus):
    """Price falls linearly from `top` to zero over `tau` seconds."""

    kind: Literal["linear"] = Field("linear", description="linear decrease (Maker dss abaci LinearDecrease)")
    tau: Float = Field(gt=0, le=MAX_SECONDS, description="seconds after the start when the price reaches zero")

    def price(self, top, dur_seconds):
        top_a, dur = _broadcast(top, dur_seconds)
        # Maker dss src/abaci.sol LinearDecrease.price: top·(tau − dur)/tau, and 0 once dur ≥ tau
        out = top_a * np.clip((self.tau - dur) / self.tau, 0.0, 1.0)
        return _result(out, top, dur_seconds)


class StairstepExponentialDecrease(_Abacus):
    """Price multiplies by `cut` once every `step` seconds (flat in between)."""

    kind: Literal["stairstep"] = Field(
        "stairstep", description="stairstep exponential decrease (Maker dss abaci StairstepExponentialDecrease)"
    )
    # forum.makerdao.com/t/eth-and-wbtc-vaults-liquidations-2-0-parameters/7628 (ETH-A): cut 0.99, step 90 s
    cut: Float = Field(
        0.99, gt=0, le=1, description="per-step price multiplier, in (0, 1] [published: Maker ETH-A 0.99]"
    )
    step: Float = Field(
        90.0, gt=0, le=MAX_SECONDS, description="seconds between price drops [published: Maker ETH-A 90 s]"
    )

    def price(self, top, dur_seconds):
        top_a, dur = _broadcast(top, dur_seconds)
        # Maker dss src/abaci.sol StairstepExponentialDecrease.price: top·cut^floor(dur/step)
        out = top_a * self.cut ** np.floor(dur / self.step)
        return _result(out, top, dur_seconds)


class ExponentialDecrease(_Abacus):
    """Price multiplies by `cut` every second (continuous exponential decay)."""

    kind: Literal["exponential"] = Field(
        "exponential", description="continuous exponential decrease (Maker dss abaci ExponentialDecrease)"
    )
    cut: Float = Field(gt=0, le=1, description="per-second price multiplier, in (0, 1]")

    def price(self, top, dur_seconds):
        top_a, dur = _broadcast(top, dur_seconds)
        # Maker dss src/abaci.sol ExponentialDecrease.price: top·cut^dur
        out = top_a * self.cut**dur
        return _result(out, top, dur_seconds)


#: any of the three curves, chosen in TOML by its `kind`
Abacus = Annotated[LinearDecrease | StairstepExponentialDecrease | ExponentialDecrease, Field(discriminator="kind")]


def _broadcast(top, dur_seconds) -> tuple[np.ndarray, np.ndarray]:
    top_a = np.asarray(top, dtype=float)
    dur = np.maximum(np.asarray(dur_seconds, dtype=float), 0.0)
    return top_a, dur


def _result(out: np.ndarray, top, dur_seconds):
    if np.ndim(top) == 0 and np.ndim(dur_seconds) == 0:
        return float(out)
    return out
