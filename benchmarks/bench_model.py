"""Speed and memory of the flagship scenario (eth-crash, seed 1, one simulated day of 12 s blocks): the
vectorised engine (`sim.runs.run_scenario`) against the one-Mesa-agent-per-account baseline
(benchmarks/naive_model.py), for 10k and 100k borrower accounts.

Run: python benchmarks/bench_model.py [--quick] [--accounts 10000 100000] [--blocks N]
     -> prints a table, writes benchmarks/results/model.json (model-quick.json with --quick).

Each case runs in a fresh child process (this script with `--child`), so imports, caches and memory
of one case never help or hurt another. Wall time is `time.perf_counter()` around the whole call
(engine: `run_scenario`, set-up and post-processing included; naive: building the agents plus stepping).
Peak memory is the child's peak resident set size, `resource.getrusage(RUSAGE_SELF).ru_maxrss` read by
the child just before it exits (the same figure `RUSAGE_CHILDREN` gives for that one child); it includes
the interpreter and the imported libraries, whose share is reported as `rss_after_imports_mb`.
CPU seconds (user + system, `getrusage`) and the load average at the start and end of each case are
recorded too: wall time well above CPU time means the machine was shared.
The naive model stops when its wall budget (`--naive-budget-s`, default 600 s) runs out; its time for
the whole horizon is then extrapolated from the measured seconds per block and labelled as such. The
measured blocks are the day's first hours (the shock starts at 2 h); its later, busier blocks cost the
naive model more per block, so the extrapolated time is a lower bound and the speedup an underestimate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCENARIO = "eth-crash"
SEED = 1
DEFAULT_ACCOUNTS = (10_000, 100_000)
QUICK_ACCOUNTS, QUICK_BLOCKS, QUICK_BUDGET_S = (1_000,), 720, 120.0
NAIVE_BUDGET_S = 600.0  # the brief: shorten the naive horizon when a day would pass ~10 minutes
TARGET_100K_DAY_S = 60.0  # issue: 100k accounts for one day in under 60 s on 2 cores
TARGET_SPEEDUP = 20.0  # issue: at least 20x the one-agent-per-account version
MB = 1024.0  # ru_maxrss is in KiB on Linux


def _rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (MB * MB if sys.platform == "darwin" else MB), 1)


def _cpu_s() -> float:
    """User + system CPU seconds of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    """Where the figures were measured; load average shows whether other work shared the cores."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "mesa": _version("mesa"),
        "defistress": _version("defistress"),
        "load_average_1_5_15": _load(),
    }


def day_blocks(scenario: str = SCENARIO) -> tuple[int, float]:
    """Blocks in the scenario's horizon (one day for eth-crash) and seconds per block."""
    from defistress.scenarios.loader import load

    s = load(scenario).scenario
    return s.n_blocks, s.run.block_seconds


def shocks_inside(scenario: str, duration_s: float) -> list[str]:
    """Overrides that move shocks starting after a shortened run's end to its end (shock times must lie inside
    the run; a shock at the very end acts on nothing, as a shock after the end did before)."""
    from defistress.scenarios.loader import load

    s = load(scenario).scenario
    return [f"shocks.{i}.at={duration_s}" for i, sh in enumerate(s.shocks) if sh.at > duration_s]


# --- one case, measured in the current process ------------------------------------------------------
def engine_case(accounts: int, blocks: int, seed: int = SEED, scenario: str = SCENARIO) -> dict:
    """Time `run_scenario` for `accounts` borrowers over `blocks` blocks."""
    from defistress.sim.experiments.runs import run_scenario

    _, block_s = day_blocks(scenario)
    rss0 = _rss_mb()
    overrides = [f"agents.borrowers.accounts={accounts}", f"run.duration={blocks * block_s}"]
    overrides += shocks_inside(scenario, blocks * block_s)
    marks: list[float] = []
    load0, cpu0 = _load(), _cpu_s()
    t0 = time.perf_counter()
    r = run_scenario(
        scenario, seed=seed, overrides=overrides, progress=lambda done, total: marks.append(time.perf_counter())
    )
    wall = time.perf_counter() - t0
    return {
        "model": "vectorised",
        "accounts": accounts,
        "blocks": int(r.metrics["blocks"]),
        "wall_s": round(wall, 3),
        "cpu_s": round(_cpu_s() - cpu0, 3),
        "load_average_start_end": [load0, _load()],
        "blocks_per_s": round(r.metrics["blocks"] / wall, 2),
        "s_per_block": wall / r.metrics["blocks"],
        "post_processing_s": round(wall - (marks[-1] - t0), 3) if marks else None,
        "extrapolated": False,
        "liquidations": int(r.metrics["liquidations"]),
        "bad_debt_usd": round(float(r.metrics["bad_debt_usd"]), 2),
        "rss_after_imports_mb": rss0,
        "peak_rss_mb": _rss_mb(),
    }


def naive_case(
    accounts: int, blocks: int, seed: int = SEED, budget_s: float = NAIVE_BUDGET_S, scenario: str = SCENARIO
) -> dict:
    """Build and step the one-agent-per-account model until `blocks` or the wall budget is reached."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from naive_model import NaiveLendingModel

    rss0 = _rss_mb()
    load0, cpu0 = _load(), _cpu_s()
    t0 = time.perf_counter()
    model = NaiveLendingModel(scenario, seed=seed, overrides=[f"agents.borrowers.accounts={accounts}"], n_blocks=blocks)
    setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    deadline = t1 + budget_s
    while model.block < blocks and time.perf_counter() < deadline:
        model.step()
    loop = time.perf_counter() - t1
    done = model.block
    per_block = loop / max(done, 1)
    full = done >= blocks
    return {
        "model": "naive-mesa",
        "accounts": accounts,
        "blocks": blocks,
        "blocks_measured": done,
        "setup_s": round(setup, 3),
        "loop_s": round(loop, 3),
        "cpu_s": round(_cpu_s() - cpu0, 3),
        "load_average_start_end": [load0, _load()],
        "s_per_block": per_block,
        "blocks_per_s": round(done / loop, 3) if loop > 0 else None,
        "wall_s_measured": round(setup + loop, 3),
        "wall_s": round(setup + per_block * blocks, 3),
        "extrapolated": not full,
        "extrapolation": None
        if full
        else (
            f"setup_s + s_per_block x {blocks} blocks, s_per_block from the first {done} blocks "
            f"({done * model.block_seconds / 3600:.1f} h of {blocks * model.block_seconds / 3600:.1f} h); "
            "later crash blocks cost more per block, so this is a lower bound"
        ),
        "liquidations": model.liquidations,
        "rss_after_imports_mb": rss0,
        "peak_rss_mb": _rss_mb(),
    }


# --- cases in fresh child processes ------------------------------------------------------------------
def run_child(kind: str, accounts: int, blocks: int, seed: int, budget_s: float) -> dict:
    """Run one case in a fresh interpreter; its last stdout line is the JSON result."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--accounts",
        str(accounts),
        "--blocks",
        str(blocks),
        "--seed",
        str(seed),
        "--naive-budget-s",
        str(budget_s),
    ]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=str(HERE.parent))
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(cases: list[dict], horizon: int) -> list[dict]:
    """Naive over vectorised, per account count: whole-horizon wall time and seconds per block."""
    rows = []
    for n in sorted({c["accounts"] for c in cases}):
        eng = next((c for c in cases if c["accounts"] == n and c["model"] == "vectorised"), None)
        nai = next((c for c in cases if c["accounts"] == n and c["model"] == "naive-mesa"), None)
        if eng is None or nai is None:
            continue
        rows.append(
            {
                "accounts": n,
                "blocks": horizon,
                "vectorised_wall_s": eng["wall_s"],
                "naive_wall_s": nai["wall_s"],
                "naive_extrapolated": nai["extrapolated"],
                "speedup": round(nai["wall_s"] / eng["wall_s"], 1),
                "speedup_per_block": round(nai["s_per_block"] / eng["s_per_block"], 1),
            }
        )
    return rows


def table(result: dict) -> str:
    lines = [
        f"{'model':<11} {'accounts':>9} {'blocks':>7} {'wall s':>10} {'cpu s':>8} {'blocks/s':>9} {'peak MB':>8}  note",
        "-" * 82,
    ]
    for c in result["cases"]:
        note = f"extrapolated from {c['blocks_measured']} blocks" if c["extrapolated"] else "measured"
        lines.append(
            f"{c['model']:<11} {c['accounts']:>9,} {c['blocks']:>7} {c['wall_s']:>10.1f} {c['cpu_s']:>8.1f} "
            f"{c['blocks_per_s']:>9.2f} {c['peak_rss_mb']:>8.0f}  {note}"
        )
    for r in result["comparison"]:
        lines.append(
            f"speedup at {r['accounts']:,} accounts: {r['speedup']}x over {r['blocks']} blocks"
            f"{' (naive extrapolated)' if r['naive_extrapolated'] else ''}, {r['speedup_per_block']}x per block"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k accounts, 720 blocks (CI smoke)")
    ap.add_argument("--accounts", type=int, nargs="+", default=None)
    ap.add_argument("--blocks", type=int, default=None, help="horizon in blocks (default: the scenario's day)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--naive-budget-s", type=float, default=None, help="wall budget of each naive case")
    ap.add_argument("--skip-naive", action="store_true", help="measure the vectorised engine only")
    ap.add_argument(
        "--in-process", action="store_true", help="no child processes (tests); memory is then this process's"
    )
    ap.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    ap.add_argument("--child", choices=["vectorised", "naive"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    horizon, block_s = day_blocks()
    accounts = a.accounts or (list(QUICK_ACCOUNTS) if a.quick else list(DEFAULT_ACCOUNTS))
    blocks = a.blocks or (QUICK_BLOCKS if a.quick else horizon)
    budget = a.naive_budget_s if a.naive_budget_s is not None else (QUICK_BUDGET_S if a.quick else NAIVE_BUDGET_S)

    if a.child:  # inside a fresh child: one case, JSON on the last stdout line
        fn = engine_case if a.child == "vectorised" else naive_case
        kw = {} if a.child == "vectorised" else {"budget_s": budget}
        print(json.dumps(fn(accounts[0], blocks, a.seed, **kw)))
        return {}

    info = machine_info()
    cases = []
    for n in accounts:
        for kind in ("vectorised",) + (() if a.skip_naive else ("naive",)):
            print(f"measuring {kind} model, {n:,} accounts, {blocks} blocks ...", flush=True)
            if a.in_process:
                c = engine_case(n, blocks, a.seed) if kind == "vectorised" else naive_case(n, blocks, a.seed, budget)
            else:
                c = run_child(kind, n, blocks, a.seed, budget)
            cases.append(c)
    result = {
        "benchmark": "model",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scenario": SCENARIO,
        "seed": a.seed,
        "block_seconds": block_s,
        "blocks": blocks,
        "machine": info,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "timing": "time.perf_counter() around run_scenario (vectorised) or model build + steps (naive)",
        "memory": (
            "peak RSS of this process (in-process run)"
            if a.in_process
            else "peak RSS of each case's fresh child process: getrusage(RUSAGE_SELF).ru_maxrss read in the child"
        ),
        "naive_budget_s": budget,
        "cases": cases,
        "comparison": compare(cases, blocks),
    }
    big = [c for c in cases if c["model"] == "vectorised" and c["accounts"] >= 100_000 and c["blocks"] >= horizon]
    result["targets"] = {
        "vectorised_100k_day_under_60s": (big[0]["wall_s"] < TARGET_100K_DAY_S) if big else None,
        "speedup_at_least_20x": (
            all(r["speedup"] >= TARGET_SPEEDUP for r in result["comparison"]) if result["comparison"] else None
        ),
    }
    out = a.out or RESULTS / ("model-quick.json" if a.quick else "model.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
