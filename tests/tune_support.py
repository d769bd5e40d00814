"""Cheap, scenario-free run functions with known answers, for the tune and stress-search tests.

Module-level functions (a process pool pickles them by name). Each returns per-run metrics like a simulation's
flat summary, with a little seed-dependent noise so that trials are sets of different runs.
"""

from __future__ import annotations

import numpy as np

#: where `bowl` is lowest (its known optimum) and its floor value
BOWL_OPTIMUM = {"x": 0.3, "y": -0.2}


def _noise(seed: int, scale: float) -> float:
    return float(np.random.default_rng(seed).normal(0.0, scale))


def bowl(params: dict, seed: int) -> dict:
    """loss = (x - 0.3)^2 + (y + 0.2)^2 plus noise of mean zero; risk = x (a constraint may cap it)."""
    x, y = float(params["x"]), float(params.get("y", BOWL_OPTIMUM["y"]))
    loss = (x - BOWL_OPTIMUM["x"]) ** 2 + (y - BOWL_OPTIMUM["y"]) ** 2
    return {"loss_usd": loss + _noise(seed, 1e-4), "risk_usd": x + 0.01 * abs(_noise(seed + 1000, 1.0))}


bowl.metrics = ("loss_usd", "risk_usd")  # type: ignore[attr-defined]


def gap_lending(params: dict, seed: int) -> dict:
    """One lending position per seed, 1 token of collateral at $1 and debt r = 0.5 + 0.05 * (seed % 10) USD,
    hit by a price gap `shocks.0.jump` that leaves no time to liquidate: bad debt = max(0, r - (1 + jump)) USD.

    Over seeds 0..9, bad debt > 0 in the runs with r > 1 + jump: P(crossed) = #{s: 0.5 + 0.05 s > 1 + jump} / 10.
    With a target of 0.5 it needs five seeds (s = 5..9, r from 0.75): the break is at jump < -0.25."""
    jump = float(params["shocks.0.jump"])
    r = 0.5 + 0.05 * (seed % 10)
    bad = max(0.0, r - (1.0 + jump))
    return {"bad_debt_usd": bad, "liquidations": 0, "liquidator_value_leakage_usd": 0.0}


gap_lending.metrics = ("bad_debt_usd", "liquidations", "liquidator_value_leakage_usd")  # type: ignore[attr-defined]
