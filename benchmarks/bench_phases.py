"""Where the engine's CPU per block goes: `eth-crash` (seed 1) at several account counts, split by block phase, by
agent kind (`submit`), by protocol (`accrue`, `metrics`) and the pools' TWAP sample, each with a fit
fixed µs per block + ns per account and block over the account counts (issue 14: the fixed per-block cost).

Run: python benchmarks/bench_phases.py [--accounts 1000 10000] [--blocks N] [--out PATH]
     -> prints a table, writes benchmarks/results/phases.json

Method (a shared 2-core machine; see bench_speed.py):
- A fresh child process per account count, one BLAS thread, CPU time (`time.process_time()`) around every call of
  the timed methods, wrapped on the built model's instances (the code itself is unchanged). The 1-minute load
  average before and after is recorded beside the figures.
- Components nest: `phase_decide` holds the agents' `submit`, `phase_accrue` the protocols' `accrue` and the pools'
  `record`, `phase_metrics` the protocols' `metrics`; `<phase> (rest)` is a phase less its timed parts and
  `step (rest)` the run less its phases (the step loop, Mesa's step wrapper).
- The wrappers cost CPU too: an empty wrapped call is timed and, times the wrapped calls, reported as
  `wrapper_us_per_block`. The figures include it (each `(rest)` row carries its share), so compare runs of this
  script with each other, and bench_speed.py for the engine's own CPU per block.
- Also counted: blocks in which the lending markets have unhealthy accounts and blocks with at least one
  liquidation, which says how much of the liquidators' per-block work finds nothing to do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCENARIO = "eth-crash"
SEED = 1
PHASES = (
    "phase_governance",
    "phase_market",
    "phase_oracles",
    "phase_decide",
    "phase_build",
    "phase_accrue",
    "phase_metrics",
)
#: which timed parts run inside which phase (for the "(rest)" rows)
PARTS_OF = {"phase_decide": "submit:", "phase_accrue": ("accrue:", "pool record"), "phase_metrics": "metrics:"}


class Timer:
    """CPU seconds and calls per component, accumulated by wrappers set on instances."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, obj: Any, method: str, key: str) -> None:
        f = getattr(obj, method)
        cpu, calls, clock = self.cpu, self.calls, time.process_time

        def timed(*a: Any, **k: Any) -> Any:
            t = clock()
            try:
                return f(*a, **k)
            finally:
                cpu[key] += clock() - t
                calls[key] += 1

        setattr(obj, method, timed)


def wrapper_cost_s() -> float:
    """CPU seconds one wrapped call adds over a direct one (best of 5 x 20,000 calls of an empty method)."""

    class Probe:
        def noop(self) -> None:
            return None

    direct, wrapped = Probe(), Probe()
    Timer().wrap(wrapped, "noop", "probe")
    best: dict[str, float] = {}
    for _ in range(5):
        for name, fn in (("direct", direct.noop), ("wrapped", wrapped.noop)):
            t = time.process_time()
            for _ in range(20_000):
                fn()
            best[name] = min(best.get(name, float("inf")), (time.process_time() - t) / 20_000)
    return max(best["wrapped"] - best["direct"], 0.0)


def child(accounts: int, blocks: int | None) -> dict:
    from defistress.protocols.events import Liquidated
    from defistress.protocols.lending import LendingMarket
    from defistress.scenarios.loader import load
    from defistress.sim.engine.model import StressModel

    overrides = [f"agents.borrowers.accounts={accounts}"]
    if blocks is not None:
        overrides.append(f"run.duration={blocks * 12}")
        if blocks * 12 <= 2 * 3600:  # as bench_speed.py: a short run moves the crash's three shocks to a third in
            overrides += [f"shocks.{k}.at={blocks * 4}" for k in range(3)]
    model = StressModel(load(SCENARIO, overrides), SEED)
    timer = Timer()
    for phase in PHASES:
        timer.wrap(model, phase, phase)
    for a in model.actors:
        timer.wrap(a, "submit", f"submit:{type(a).__name__}")
    for pid, p in model.protocols.items():
        timer.wrap(p, "accrue", f"accrue:{pid}")
        timer.wrap(p, "metrics", f"metrics:{pid}")
    for pool in model.pools.values():
        timer.wrap(pool, "record", "pool record")
    lending = [p for p in model.protocols.values() if isinstance(p, LendingMarket)]
    unhealthy_blocks, count_s = 0, 0.0
    t0 = time.process_time()
    while model.env.clock.block < model.n_blocks:  # StressModel.run, with the count after each block left out
        model.step()
        t = time.process_time()
        unhealthy_blocks += any(bool((p.health() < 1.0).any()) for p in lending)
        count_s += time.process_time() - t
    for h in model.hooks["run_end"]:
        h(model)
    run_s = time.process_time() - t0 - count_s
    n = model.n_blocks
    comp = {k: v / n * 1e6 for k, v in timer.cpu.items()}
    for phase, prefixes in PARTS_OF.items():
        inside = sum(v for k, v in comp.items() if k.startswith(prefixes))
        comp[f"{phase} (rest)"] = comp[phase] - inside
    comp["step (rest)"] = run_s / n * 1e6 - sum(comp[p] for p in PHASES)
    liq_blocks = len({e.block for e in model.env.events if isinstance(e, Liquidated)})
    return {
        "accounts": accounts,
        "blocks": n,
        "run_cpu_s": round(run_s, 3),
        "ms_per_block": round(run_s / n * 1e3, 4),
        "us_per_block": {k: round(v, 2) for k, v in sorted(comp.items(), key=lambda kv: -kv[1])},
        "calls_per_block": {k: round(c / n, 2) for k, c in timer.calls.items()},
        "wrapper_us_per_block": round(wrapper_cost_s() * sum(timer.calls.values()) / n * 1e6, 2),
        "blocks_with_unhealthy_accounts": unhealthy_blocks,
        "blocks_with_a_liquidation": liq_blocks,
    }


def run_case(accounts: int, blocks: int | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(accounts)]
    if blocks is not None:
        cmd += ["--blocks", str(blocks)]
    from bench_speed import run_child  # benchmarks/ is the script's folder, first on sys.path

    return run_child(cmd)


def fit_components(cases: list[dict]) -> dict[str, dict[str, float]]:
    """Per component: least squares µs per block = fixed + per_account x accounts (needs two account counts)."""
    import numpy as np

    if len({c["accounts"] for c in cases}) < 2:
        return {}
    a = np.array([[1.0, c["accounts"]] for c in cases])
    out = {}
    for key in cases[0]["us_per_block"]:
        y = np.array([c["us_per_block"].get(key, 0.0) for c in cases])
        (fixed, per), *_ = np.linalg.lstsq(a, y, rcond=None)
        out[key] = {"fixed_us_per_block": round(float(fixed), 2), "ns_per_account_block": round(float(per) * 1e3, 3)}
    return out


def table(cases: list[dict], fit: dict[str, dict[str, float]]) -> list[str]:
    head = " | ".join(f"{c['accounts']:>9,}" for c in cases)
    lines = [f"{'µs per block':<34} | {head} | fixed µs | ns/acct"]
    for key in cases[0]["us_per_block"]:
        vals = " | ".join(f"{c['us_per_block'].get(key, 0.0):>9.1f}" for c in cases)
        f = fit.get(key)
        tail = f" | {f['fixed_us_per_block']:>8.1f} | {f['ns_per_account_block']:>7.2f}" if f else ""
        lines.append(f"{key:<34} | {vals}{tail}")
    lines.append(
        f"{'(wrappers, included above)':<34} | " + " | ".join(f"{c['wrapper_us_per_block']:>9.1f}" for c in cases)
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--blocks", type=int, default=None, help="blocks of 12 s (default: the scenario's day, 7,200)")
    ap.add_argument("--out", type=Path, default=RESULTS / "phases.json")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.blocks)))
        return
    cases = []
    for n in args.accounts:
        cases.append(run_case(n, args.blocks))
        c = cases[-1]
        print(
            f"{n:>9,} accounts: {c['run_cpu_s']:.2f} s CPU ({c['ms_per_block']:.3f} ms/block)  load {c['load_before']}"
        )
    fit = fit_components(cases)
    from bench_speed import machine  # benchmarks/ is the script's folder, first on sys.path

    out = {
        "scenario": SCENARIO,
        "seed": SEED,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "cases": cases,
        "fit": fit,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print("\n".join(table(cases, fit)))
    for c in cases:
        print(
            f"{c['accounts']:,} accounts: unhealthy accounts in {c['blocks_with_unhealthy_accounts']:,} of "
            f"{c['blocks']:,} blocks, a liquidation in {c['blocks_with_a_liquidation']:,}"
        )
    print(args.out)


if __name__ == "__main__":
    main()
