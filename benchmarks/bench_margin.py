"""Times full-revaluation scenario-grid margin (Deribit-style 27-cell grid) of 10,000 accounts x 20 options.

Run: python benchmarks/bench_margin.py  -> prints the figure, writes benchmarks/results/margin.json.
"""

from __future__ import annotations

import json
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

from defistress.protocols.margin.portfolio import CALL, PUT, MarketState, Portfolio
from defistress.protocols.margin.presets_pm import DERIBIT_ETH
from defistress.protocols.margin.scenario_params import DOWN, NONE, UP, ScenarioGrid
from defistress.protocols.margin.scenario_pm import ScenarioPM
from defistress.protocols.margin.surface import FlatVol

N_ACCOUNTS, N_POSITIONS, SEED, REPEATS = 10_000, 20, 7, 5


def book(n: int, k: int, seed: int) -> Portfolio:
    """n accounts of k random ETH options each (strikes 50%-150% of spot, 1-180 days)."""
    rng = np.random.default_rng(seed)
    p = n * k
    return Portfolio(
        n_accounts=n,
        underlyings=("ETH",),
        account=np.repeat(np.arange(n), k),
        kind=np.where(rng.random(p) < 0.5, CALL, PUT).astype(np.int8),
        und=np.zeros(p, dtype=np.int64),
        qty=np.round(rng.normal(0, 5, p), 2),
        strike=np.round(rng.uniform(1000, 3000, p), -1),
        expiry_s=rng.choice(np.array([1, 7, 14, 30, 60, 90, 180]) * 86_400.0, p),
        entry_price=np.zeros(p),
        cash=np.full(n, 50_000.0),
    )


def main() -> dict:
    pf = book(N_ACCOUNTS, N_POSITIONS, SEED)
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": FlatVol(0.65)}, rate={"ETH": 0.03})
    grid = ScenarioGrid.product(tuple(0.18 * i / 4 for i in range(-4, 5)), (UP, NONE, DOWN))  # 27 cells
    model = ScenarioPM(DERIBIT_ETH).with_grid(grid)
    model.requirements(pf, mkt)  # warm-up
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        model.requirements(pf, mkt)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    model.requirements(pf, mkt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {
        "accounts": N_ACCOUNTS,
        "positions": N_ACCOUNTS * N_POSITIONS,
        "scenarios": grid.size,
        "seconds": round(min(times), 4),
        "seconds_median": round(float(np.median(times)), 4),
        "peak_mem_mb": round(peak / 2**20, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    path = Path(__file__).parent / "results" / "margin.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"scenario-grid margin: {out['accounts']} accounts x {N_POSITIONS} positions x {out['scenarios']} "
        f"scenarios in {out['seconds']:.3f} s (median {out['seconds_median']:.3f} s), "
        f"peak traced memory {out['peak_mem_mb']} MB"
    )
    return out


if __name__ == "__main__":
    main()
