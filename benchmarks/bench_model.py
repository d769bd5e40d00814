"""Speed of the flagship scenario (eth-crash, seed 1, one simulated day of 12 s blocks): the vectorised engine
against two per-account baselines doing the same work (benchmarks/naive_model.py: one Mesa agent per account, and
one plain Python object per account), for 10k and 100k borrower accounts.

Run: python benchmarks/bench_model.py [--quick] [--accounts 10000 100000] [--blocks N] [--naive-budget-s S]
     -> prints a table, writes benchmarks/results/model.json (model-quick.json with --quick).

Each case (model x accounts) runs in a fresh child process (this script with `--child`), so imports, caches and
memory of one case never help or hurt another. Every model is timed the same way: building it from the scenario
(set-up) plus stepping its blocks, without post-processing. CPU seconds (user + system, `getrusage`) are the main
figure, with wall seconds and the 1/5/15-minute load average at the start and end of each case beside them; the
crash window (earliest shock start to latest shock end: 2 h to 6 h) is timed on its own. The ratios are
baseline CPU over engine CPU, for the crash window and for the whole horizon; the liquidations of each baseline
are checked against the engine's (naive_model.agree). A per-account case stops when its wall budget
(`--naive-budget-s`, default 600 s) runs out; its whole-horizon time is then set-up + CPU per measured block x
blocks, labelled as extrapolated (a lower bound: the crash's blocks cost it more than the calm ones before).
Peak memory is the child's peak resident set size (`ru_maxrss`), interpreter and libraries included
(`rss_after_imports_mb`).
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
QUICK_ACCOUNTS, QUICK_BLOCKS, QUICK_BUDGET_S = (1_000,), None, 300.0
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
MODELS = ("vectorised", "mesa-per-account", "plain-per-account")


def crash_window(loaded, blocks: int) -> tuple[int, int]:
    """Blocks [first, last) of the scenario's shock window (earliest shock start to latest shock end), clipped."""
    s = loaded.scenario
    block_s = s.run.block_seconds
    starts = [sh.at for sh in s.shocks]
    ends = [sh.until if sh.until is not None else sh.at for sh in s.shocks]
    if not starts:
        return 0, 0
    first = min(int(round(min(starts) / block_s)), blocks)
    return first, min(max(int(round(max(ends) / block_s)), first), blocks)


def build(kind: str, loaded, seed: int):
    """The model of `kind`: the engine (`StressModel`) or a per-account baseline (naive_model.py)."""
    if kind == "vectorised":
        from defistress.sim.engine.model import StressModel

        return StressModel(loaded, seed=seed)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from naive_model import MesaAccountModel, PlainAccountModel

    return (MesaAccountModel if kind == "mesa-per-account" else PlainAccountModel)(loaded, seed=seed)


def measure_case(
    kind: str,
    accounts: int,
    blocks: int,
    seed: int = SEED,
    budget_s: float = NAIVE_BUDGET_S,
    scenario: str = SCENARIO,
) -> dict:
    """Build `kind` for `accounts` borrowers and step it over `blocks` blocks (a per-account model until its wall
    budget runs out), with CPU and wall time of the set-up, of the crash window and of the whole horizon."""
    from defistress.scenarios.loader import load

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from naive_model import engine_liquidations

    _, block_s = day_blocks(scenario)
    overrides = [f"agents.borrowers.accounts={accounts}", f"run.duration={blocks * block_s}"]
    loaded = load(scenario, overrides + shocks_inside(scenario, blocks * block_s))
    w0, w1 = crash_window(loaded, blocks)
    rss0 = _rss_mb()
    load0 = _load()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    model = build(kind, loaded, seed)
    setup_cpu, setup_wall = _cpu_s() - cpu0, time.perf_counter() - t0
    deadline = time.perf_counter() + (budget_s if kind != "vectorised" else float("inf"))
    marks: dict[int, tuple[float, float]] = {0: (_cpu_s(), time.perf_counter())}
    while model.env.clock.block < blocks and time.perf_counter() < deadline:
        model.step()
        b = model.env.clock.block
        if b in (w0, w1):
            marks[b] = (_cpu_s(), time.perf_counter())
    done = model.env.clock.block
    marks[done] = (_cpu_s(), time.perf_counter())
    (c_start, t_start), (c_end, t_end) = marks[0], marks[done]
    cpu_per_block = (c_end - c_start) / max(done, 1)
    wall_per_block = (t_end - t_start) / max(done, 1)
    full = done >= blocks
    # crash window: measured when the run got through it; else per-block cost of its measured part (or of the
    # blocks before it) times its length, labelled as extrapolated
    if w1 in marks and w0 in marks:
        crash_cpu, crash_wall, crash_extra = marks[w1][0] - marks[w0][0], marks[w1][1] - marks[w0][1], False
    elif w0 in marks and done > w0:
        k = (w1 - w0) / (done - w0)
        crash_cpu, crash_wall, crash_extra = (c_end - marks[w0][0]) * k, (t_end - marks[w0][1]) * k, True
    else:
        crash_cpu, crash_wall, crash_extra = cpu_per_block * (w1 - w0), wall_per_block * (w1 - w0), True
    n_liq, usd_liq = engine_liquidations(model)
    return {
        "model": kind,
        "accounts": accounts,
        "blocks": blocks,
        "blocks_measured": done,
        "crash_window_blocks": [w0, w1],
        "setup_cpu_s": round(setup_cpu, 3),
        "setup_wall_s": round(setup_wall, 3),
        "cpu_s": round(setup_cpu + (c_end - c_start) if full else setup_cpu + cpu_per_block * blocks, 3),
        "wall_s": round(setup_wall + (t_end - t_start) if full else setup_wall + wall_per_block * blocks, 3),
        "cpu_s_measured": round(setup_cpu + c_end - c_start, 3),
        "crash_cpu_s": round(crash_cpu, 3),
        "crash_wall_s": round(crash_wall, 3),
        "crash_extrapolated": crash_extra,
        "s_per_block": cpu_per_block,
        "blocks_per_s": round(done / (t_end - t_start), 3) if t_end > t_start else None,
        "extrapolated": not full,
        "extrapolation": None
        if full
        else (
            f"set-up + CPU per block x {blocks} blocks, per block from the first {done} blocks "
            f"({done * block_s / 3600:.1f} h of {blocks * block_s / 3600:.1f} h); the crash's blocks cost a "
            "per-account model more, so this is a lower bound"
        ),
        "liquidations": n_liq,
        "liquidated_usd": round(float(usd_liq), 2),
        "load_average_start_end": [load0, _load()],
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
    """Per account count and per-account model: its CPU over the engine's, for the crash window and the whole
    horizon, and whether their liquidations agree (naive_model.agree) when both ran the whole horizon."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from naive_model import AGREEMENT_COUNT_ABS, AGREEMENT_COUNT_SHARE, AGREEMENT_USD_SHARE, agree

    rows = []
    for n in sorted({c["accounts"] for c in cases}):
        eng = next((c for c in cases if c["accounts"] == n and c["model"] == "vectorised"), None)
        for kind in MODELS[1:]:
            other = next((c for c in cases if c["accounts"] == n and c["model"] == kind), None)
            if eng is None or other is None:
                continue
            both_full = not (eng["extrapolated"] or other["extrapolated"])
            rows.append(
                {
                    "accounts": n,
                    "blocks": horizon,
                    "baseline": kind,
                    "engine_cpu_s": eng["cpu_s"],
                    "baseline_cpu_s": other["cpu_s"],
                    "baseline_extrapolated": other["extrapolated"],
                    "ratio_day": round(other["cpu_s"] / eng["cpu_s"], 1),
                    "ratio_crash_window": round(other["crash_cpu_s"] / eng["crash_cpu_s"], 1)
                    if eng["crash_cpu_s"] > 0
                    else None,
                    "crash_window_extrapolated": other["crash_extrapolated"],
                    "liquidations": [eng["liquidations"], other["liquidations"] if both_full else None],
                    "liquidated_usd": [eng["liquidated_usd"], other["liquidated_usd"] if both_full else None],
                    "agree": agree(
                        (eng["liquidations"], eng["liquidated_usd"]), (other["liquidations"], other["liquidated_usd"])
                    )
                    if both_full
                    else None,
                    "tolerance": f"count within max({AGREEMENT_COUNT_ABS}, {AGREEMENT_COUNT_SHARE:.0%}), "
                    f"liquidated USD within {AGREEMENT_USD_SHARE:.0%}",
                }
            )
    return rows


def table(result: dict) -> str:
    lines = [
        f"{'model':<18} {'accounts':>9} {'blocks':>7} {'cpu s':>9} {'crash cpu s':>11} {'wall s':>9} {'peak MB':>8} "
        f"{'liq':>6}  note",
        "-" * 96,
    ]
    for c in result["cases"]:
        note = f"extrapolated from {c['blocks_measured']} blocks" if c["extrapolated"] else "measured"
        lines.append(
            f"{c['model']:<18} {c['accounts']:>9,} {c['blocks']:>7} {c['cpu_s']:>9.1f} {c['crash_cpu_s']:>11.1f} "
            f"{c['wall_s']:>9.1f} {c['peak_rss_mb']:>8.0f} {c['liquidations']:>6}  {note}"
        )
    for r in result["comparison"]:
        lines.append(
            f"{r['baseline']} / engine at {r['accounts']:,} accounts: {r['ratio_day']}x over {r['blocks']} blocks"
            f"{' (baseline extrapolated)' if r['baseline_extrapolated'] else ''}, {r['ratio_crash_window']}x over "
            f"the crash window; liquidations agree: {r['agree']}"
        )
    return "\n".join(lines)


def _cpu_cell(c: dict, key: str = "cpu_s") -> str:
    extra = c["extrapolated"] if key == "cpu_s" else c["crash_extrapolated"]
    return f"{'≥ ' if extra else ''}{c[key]:,.1f} s"


def _ratio(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:,.0f}"


def readme_rows(result: dict) -> list[str]:
    """The rows of README.md's performance table that model.json backs (tests/test_readme.py checks them)."""
    case = {(c["model"], c["accounts"]): c for c in result["cases"]}
    ratio = {(r["baseline"], r["accounts"]): r for r in result["comparison"]}
    rows = []
    for n in sorted({c["accounts"] for c in result["cases"]}):
        if not all((k, n) in case for k in MODELS):
            continue
        v, m, p = (case[(k, n)] for k in MODELS)
        rm, rp = ratio[(MODELS[1], n)], ratio[(MODELS[2], n)]
        hours = result["blocks"] * result["block_seconds"] / 3600
        for label, key, rkey in (
            (f"{hours:.0f} h", "cpu_s", "ratio_day"),
            ("crash window (2 h to 6 h)", "crash_cpu_s", "ratio_crash_window"),
        ):
            ge = lambda c: "≥ " if (c["extrapolated"] if key == "cpu_s" else c["crash_extrapolated"]) else ""  # noqa: E731
            rows.append(
                f"| {n:,} accounts, {label} | {v[key]:,.1f} s | {_cpu_cell(m, key)} | {_cpu_cell(p, key)} | "
                f"{ge(m)}{_ratio(rm[rkey])}× / {ge(p)}{_ratio(rp[rkey])}× |"
            )
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k accounts for the whole day (smoke check)")
    ap.add_argument("--accounts", type=int, nargs="+", default=None)
    ap.add_argument("--blocks", type=int, default=None, help="horizon in blocks (default: the scenario's day)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--naive-budget-s", type=float, default=None, help="wall budget of each per-account case")
    ap.add_argument("--skip-naive", action="store_true", help="measure the vectorised engine only")
    ap.add_argument(
        "--in-process", action="store_true", help="no child processes (tests); memory is then this process's"
    )
    ap.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    ap.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    ap.add_argument("--readme", type=Path, nargs="?", const=RESULTS / "model.json", help="print README rows of a JSON")
    a = ap.parse_args(argv)
    if a.readme:
        print("\n".join(readme_rows(json.loads(a.readme.read_text()))))
        return {}

    horizon, block_s = day_blocks()
    accounts = a.accounts or (list(QUICK_ACCOUNTS) if a.quick else list(DEFAULT_ACCOUNTS))
    blocks = a.blocks or ((QUICK_BLOCKS or horizon) if a.quick else horizon)
    budget = a.naive_budget_s if a.naive_budget_s is not None else (QUICK_BUDGET_S if a.quick else NAIVE_BUDGET_S)

    if a.child:  # inside a fresh child: one case, JSON on the last stdout line
        print(json.dumps(measure_case(a.child, accounts[0], blocks, a.seed, budget)))
        return {}

    info = machine_info()
    cases = []
    for n in accounts:
        for kind in MODELS[:1] if a.skip_naive else MODELS:
            print(f"measuring {kind}, {n:,} accounts, {blocks} blocks ...", flush=True)
            if a.in_process:
                c = measure_case(kind, n, blocks, a.seed, budget)
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
        "quick": bool(a.quick),
        "machine": info,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "timing": (
            "CPU seconds (getrusage user + system) and wall seconds of building the model and stepping it, each "
            "model in a fresh process; post-processing (tables, summary) is left out of every model"
        ),
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
            all(r["ratio_day"] >= TARGET_SPEEDUP for r in result["comparison"]) if result["comparison"] else None
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
