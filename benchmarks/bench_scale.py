"""The lending book at scale (issue 14): `eth-crash` (seed 1) with up to a million borrower accounts, CPU seconds
of the day, milliseconds per block and peak memory, each case in a fresh process.

Run: python benchmarks/bench_scale.py [--accounts 100000 1000000] [--blocks 7200] [--out PATH]
     -> prints a table, writes benchmarks/results/scale.json.

Method (a shared 2-core machine):
- CPU time (`time.process_time()`) of building the model and of stepping every block, in a child process with one
  BLAS thread (idle BLAS threads spin and count as CPU on a shared machine); the 1-minute load average before and
  after each case is recorded beside it.
- Peak memory: the child's peak resident set (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, KiB on Linux) after the
  run, and the size of the book's arrays (scaled collateral and debt, accounts x assets float64).
- `--blocks N` below the scenario's 7,200 runs the scenario for N blocks (`run.duration`; the same shocks, but the
  random paths are drawn for the run's length, so the stablecoin's path and any jump differ from the day's first N
  blocks); the crash starts at 2 h (600 blocks), so a run of a few thousand blocks covers the crash and part of the
  calm after it. `extrapolated_day_cpu_s` is the run's
  CPU per block x 7,200: an estimate, said as such beside the measured figure.
- The book's refresh on 16,384+ accounts: a side whose accounts hold one asset each is valued by column multiplies
  of contiguous copies of its columns (the BLAS gemv's bits: protocols/lending_rows.py), not by a matrix-vector
  product over the strided (n, A) array; the metrics' collateral sum is kept while no collateral value moved.
- Per-block work of the book is today's dense scan: the health refresh, the metrics' whole-book sums and the scaled
  totals grow with the book (an index by liquidation price was tried and did not pay on this scenario: about a tenth
  of the book stays unhealthy after the crash, so the rows to list each block still grow with the book).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCENARIO = "eth-crash"
SEED = 1
DAY_BLOCKS = 7_200


def child(accounts: int, blocks: int | None) -> dict:
    import resource

    from defistress.protocols.lending import LendingMarket
    from defistress.scenarios.loader import load
    from defistress.sim.engine.model import StressModel

    overrides = [f"agents.borrowers.accounts={accounts}"]
    if blocks is not None:
        overrides.append(f"run.duration={blocks * 12}")
    t1 = time.process_time()
    model = StressModel(load(SCENARIO, overrides), SEED)
    t_build = time.process_time() - t1
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t2 = time.process_time()
    model.run()
    t_run = time.process_time() - t2
    m = next(p for p in model.protocols.values() if isinstance(p, LendingMarket))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "accounts": accounts,
        "blocks": model.n_blocks,
        "build_cpu_s": round(t_build, 3),
        "run_cpu_s": round(t_run, 3),
        "ms_per_block": round(t_run / model.n_blocks * 1e3, 4),
        "extrapolated_day_cpu_s": round(t_run / model.n_blocks * DAY_BLOCKS, 1),
        "peak_rss_mib_after_build": round(rss_built / 1024, 1),
        "peak_rss_mib": round(rss / 1024, 1),
        "book_arrays_mib": round((m.coll_scaled.nbytes + m.debt_scaled.nbytes) / 2**20, 3),
        "liquidations": sum(1 for e in model.env.events if type(e).__name__ == "Liquidated"),
    }


def run_case(accounts: int, blocks: int | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(accounts)]
    if blocks is not None:
        cmd += ["--blocks", str(blocks)]
    from bench_speed import run_child  # benchmarks/ is the script's folder, first on sys.path

    return run_child(cmd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--blocks", type=int, default=None, help="blocks of 12 s (default: the scenario's day, 7,200)")
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.blocks)))
        return
    cases = []
    for n in args.accounts:
        r = run_case(n, args.blocks)
        cases.append(r)
        print(
            f"{n:>9,} accounts x {r['blocks']:,} blocks: {r['run_cpu_s']:8.1f} s CPU ({r['ms_per_block']:.2f} ms/block,"
            f" day ~{r['extrapolated_day_cpu_s']:.0f} s), build {r['build_cpu_s']:.1f} s, peak RSS "
            f"{r['peak_rss_mib']:.0f} MiB, liquidations {r['liquidations']}, load {r['load_before']}->{r['load_after']}"
        )
    from bench_speed import machine  # benchmarks/ is the script's folder, first on sys.path

    out = {
        "scenario": SCENARIO,
        "seed": SEED,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
