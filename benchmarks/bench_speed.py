"""How close the engine is to the numpy floor: `eth-crash` (seed 1) at several account counts, CPU time per block
beside the numpy work a block really needs, the fixed per-block cost, and (optionally) another checkout's engine
run interleaved with this one for before/after figures.

Run: python benchmarks/bench_speed.py [--accounts 1000 10000 100000] [--blocks 7200] [--reps 1]
                                      [--baseline-python /path/to/other/.venv/bin/python] [--out PATH]
     -> prints a table, writes benchmarks/results/speed.json.
     python benchmarks/bench_speed.py --readme   -> the README's rows from benchmarks/results/speed.json

Method (issue 14; a shared 2-core machine):
- CPU time, not wall time: `time.process_time()` of a fresh child process per case, around building the model
  (`StressModel(load(...))`) and stepping every block (`model.run()`); post-processing (tables, summary) is left
  out. The 1-minute load average before and after each case is recorded beside it: figures taken at a load above
  ~2 on 2 cores are slower than the machine can do (caches and memory bandwidth are shared), even in CPU time.
- Interleaved: with `--baseline-python`, every repetition runs the baseline case and this checkout's case back to
  back, account count by account count, so both see the same load.
- The floor: after the run, the child times the numpy work one block needs on the final book, which is the
  crash's (many unhealthy rows): the health refresh (collateral x liquidation-threshold prices and debt x prices,
  two matrix-vector products, and their ratio), the unhealthy scan (`hf < 1`, its indices), the per-block sums
  (collateral and debt USD) and the liquidators' top-k pick (`argpartition` of the unhealthy rows' debt). Best of
  5 timings of 200 repetitions; the engine's CPU per block over this is "x floor".
- One BLAS thread in every child (OPENBLAS/OMP/MKL_NUM_THREADS=1): idle BLAS threads spin and count as CPU time
  on a shared machine, which inflated the floor's matrix-vector products eightfold at 100k accounts.
- Fixed per-block cost: a least-squares fit of CPU per block = fixed + per_account x accounts over the account
  counts measured (needs at least two).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCENARIO = "eth-crash"
SEED = 1


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def floor_ms_per_block(market, k: int) -> float:
    """CPU milliseconds of the numpy work one block needs on `market`'s book (see the module docstring)."""
    import numpy as np

    coll, debt = np.ascontiguousarray(market.coll_scaled), np.ascontiguousarray(market.debt_scaled)
    p = np.asarray(market.prices(), dtype=float)
    cp_lt, dp = market.liq_index * p * market.lt, market.borrow_index * p
    cp = market.liq_index * p
    n = coll.shape[0]
    weighted, debt_usd, hf, ones = np.empty(n), np.empty(n), np.empty(n), np.ones(n)

    def block() -> None:
        np.matmul(coll, cp_lt, out=weighted)
        np.matmul(debt, dp, out=debt_usd)
        hf.fill(np.inf)
        np.divide(weighted, debt_usd, out=hf, where=debt_usd > 0)
        rows = np.flatnonzero(hf < 1.0)
        float((ones @ coll) @ cp), float(ones @ debt_usd)  # BLAS sums, as the engine does them
        if rows.size > k:
            np.argpartition(-debt_usd[rows], k - 1)[:k]

    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(200):
            block()
        best = min(best, (time.process_time() - t0) / 200)
    return best * 1e3


def child(accounts: int, blocks: int | None, floor: bool) -> dict:
    t0 = time.process_time()
    from defistress.protocols.lending import LendingMarket
    from defistress.scenarios.loader import load
    from defistress.sim.engine.model import StressModel

    t_import = time.process_time() - t0
    overrides = [f"agents.borrowers.accounts={accounts}"]
    if blocks is not None:
        overrides.append(f"run.duration={blocks * 12}")
        if blocks * 12 <= 2 * 3600:  # the crash starts at 2 h: a shorter run moves its three shocks to a third in
            overrides += [f"shocks.{k}.at={blocks * 4}" for k in range(3)]
    t1 = time.process_time()
    model = StressModel(load(SCENARIO, overrides), SEED)
    t_build = time.process_time() - t1
    t2 = time.process_time()
    model.run()
    t_run = time.process_time() - t2
    out = {
        "accounts": accounts,
        "blocks": model.n_blocks,
        "import_cpu_s": round(t_import, 3),
        "build_cpu_s": round(t_build, 3),
        "run_cpu_s": round(t_run, 3),
        "ms_per_block": round(t_run / model.n_blocks * 1e3, 4),
        "liquidations": sum(1 for e in model.env.events if type(e).__name__ == "Liquidated"),
    }
    if floor:
        m = next(p for p in model.protocols.values() if isinstance(p, LendingMarket))
        liq = next((a for a in model.agents if hasattr(a, "spec") and hasattr(a.spec, "max_tx_per_block")), None)
        k = 4 * (liq.spec.max_tx_per_block if liq is not None else 5)
        out["floor_ms_per_block"] = round(floor_ms_per_block(m, k), 4)
    return out


def run_case(python: str, accounts: int, blocks: int | None, floor: bool) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--child", str(accounts), "--floor" if floor else "--no-floor"]
    if blocks is not None:
        cmd += ["--blocks", str(blocks)]
    return run_child(cmd)


def machine() -> dict:
    """The machine a result was measured on (platform, CPU count, Python), for every benchmark's results file."""
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}


def run_child(cmd: list[str]) -> dict:
    """One benchmark case in a fresh process: its last stdout line read as JSON, with the 1-minute load average
    before and after. One BLAS thread for engine and floor alike: on a shared machine OpenBLAS's idle worker
    threads spin and count as CPU time (the 100k floor read 6.2 ms/block with the default threads, 0.77 ms with
    one; the engine's CPU was the same within noise either way). Also used by bench_phases and bench_scale."""
    before = _load_avg()
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["load_before"], res["load_after"] = before, _load_avg()
    return res


def fit_fixed(cases: list[dict]) -> dict | None:
    """Least squares: ms per block = fixed + per_account x accounts, over the cases given."""
    import numpy as np

    if len({c["accounts"] for c in cases}) < 2:
        return None
    a = np.array([[1.0, c["accounts"]] for c in cases])
    y = np.array([c["ms_per_block"] for c in cases])
    (fixed, per), *_ = np.linalg.lstsq(a, y, rcond=None)
    return {"fixed_ms_per_block": round(float(fixed), 4), "ns_per_account_block": round(float(per) * 1e6, 3)}


def summarise(cases: list[dict]) -> dict:
    by: dict[int, list[dict]] = {}
    for c in cases:
        by.setdefault(c["accounts"], []).append(c)
    rows = []
    for n, cs in sorted(by.items()):
        best = min(cs, key=lambda c: c["run_cpu_s"])
        row = {
            "accounts": n,
            "blocks": best["blocks"],
            "runs": len(cs),
            "run_cpu_s_best": best["run_cpu_s"],
            "run_cpu_s_all": [c["run_cpu_s"] for c in cs],
            "build_cpu_s": best["build_cpu_s"],
            "ms_per_block": best["ms_per_block"],
            "liquidations": sorted({c["liquidations"] for c in cs}),
            "load_1min": [c["load_before"][0] for c in cs],
        }
        floors = [c["floor_ms_per_block"] for c in cs if "floor_ms_per_block" in c]
        if floors:
            row["floor_ms_per_block"] = min(floors)
            row["x_floor"] = round(best["ms_per_block"] / min(floors), 2)
        rows.append(row)
    return {"by_accounts": rows, "fit": fit_fixed([min(cs, key=lambda c: c["run_cpu_s"]) for cs in by.values()])}


def readme_lines(data: dict) -> list[str]:
    """The README's "engine against the numpy floor" table rows, from a results file (speed.json)."""
    base = {r["accounts"]: r for r in (data["baseline"] or {"by_accounts": []})["by_accounts"]}
    lines = [
        "| accounts x blocks | CPU s | ms per block | numpy floor, ms per block | x floor | before (main) CPU s |"
        " load, 1 min |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in data["this"]["by_accounts"]:
        b = base.get(r["accounts"])
        loads = r["load_1min"] + (b["load_1min"] if b else [])
        lines.append(
            f"| {r['accounts']:,} x {r['blocks']:,} | {r['run_cpu_s_best']:.1f} | {r['ms_per_block']:.2f} | "
            f"{r['floor_ms_per_block']:.2f} | {r['x_floor']:.1f} | {b['run_cpu_s_best'] if b else float('nan'):.1f} | "
            f"{min(loads):.0f}-{max(loads):.0f} |"
        )
    fit = data["this"]["fit"]
    if fit:
        lines.append("")
        lines.append(
            f"Fixed cost per block (fit over these account counts): {fit['fixed_ms_per_block']:.2f} ms, plus "
            f"{fit['ns_per_account_block']:.0f} ns per account and block."
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--blocks", type=int, default=None, help="blocks of 12 s (default: the scenario's day, 7,200)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--baseline-python", default=None, help="another checkout's venv python, run interleaved")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--floor", dest="floor", action="store_true", default=True, help=argparse.SUPPRESS)
    ap.add_argument("--no-floor", dest="floor", action="store_false", help=argparse.SUPPRESS)
    ap.add_argument("--readme", action="store_true", help="print the README rows from --out's results and stop")
    args = ap.parse_args()
    if args.readme:
        print("\n".join(readme_lines(json.loads(args.out.read_text()))))
        return
    if args.child is not None:
        print(json.dumps(child(args.child, args.blocks, args.floor)))
        return
    results: dict = {"this": [], "baseline": []}
    for rep in range(args.reps):
        for n in args.accounts:
            if args.baseline_python:
                r = run_case(args.baseline_python, n, args.blocks, floor=False)
                results["baseline"].append(r)
                print(f"rep {rep} baseline {n:>7,} accounts: {r['run_cpu_s']:7.2f} s CPU  load {r['load_before']}")
            r = run_case(sys.executable, n, args.blocks, floor=True)
            results["this"].append(r)
            print(
                f"rep {rep} this     {n:>7,} accounts: {r['run_cpu_s']:7.2f} s CPU "
                f"({r['ms_per_block']:.3f} ms/block, floor {r['floor_ms_per_block']:.3f})  load {r['load_before']}"
            )
    out = {
        "scenario": SCENARIO,
        "seed": SEED,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "baseline_python": args.baseline_python and Path(args.baseline_python).name,  # no machine paths in results
        "this": summarise(results["this"]),
        "baseline": summarise(results["baseline"]) if results["baseline"] else None,
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for label in ("baseline", "this"):
        s = out[label]
        if not s:
            continue
        print(f"\n{label}: fit {s['fit']}")
        for row in s["by_accounts"]:
            print(
                f"  {row['accounts']:>8,} accounts x {row['blocks']:,} blocks: {row['run_cpu_s_best']:7.2f} s CPU, "
                f"{row['ms_per_block']:.3f} ms/block"
                + (f", floor {row['floor_ms_per_block']:.3f} ms ({row['x_floor']}x)" if "x_floor" in row else "")
                + f", liquidations {row['liquidations']}, load {row['load_1min']}"
            )
    print(args.out)


if __name__ == "__main__":
    main()
