"""The options / inter-protocol scenarios (issue 14: `inter-protocol-pm` and `defi-contagion` 5x faster at the same
results): CPU seconds per run and per block, this checkout beside a baseline commit, each case in a fresh process.

Run: python benchmarks/bench_pm.py [--size full|medium|small] [--baseline REF] [--reps 1] [--out PATH]
     -> prints a table, writes benchmarks/results/pm.json.

Cases: `inter-protocol-pm` under the silo and the portfolio regime, and `defi-contagion`, seed 1. Sizes: full (the
built-ins as shipped: 1,800 and 3,600 blocks), medium (full populations, the first 2 hours: the shock starts at
1 h), small (the reduced sizes pinned by tests/test_pinned_results.py). `--baseline REF` extracts that commit with
`git archive` into a temporary folder and runs the same cases on it (the package assembled there comes first on
PYTHONPATH, ahead of this checkout's editable install), interleaved with this checkout's runs, so both see the
same load. CPU time is the child's user + system time of `run_scenario` (set-up, every block, summary), from
`time.process_time()` inside the child; the 1-minute load average before and after each case is recorded. Each
child also reports the summary's liquidations and bad debt, so a speed-up that moved a result shows here too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from pinned_results import CASES as PINNED  # noqa: E402

#: the package's folders (pyproject.toml [tool.setuptools] package-dir) -> subpackage of `defistress`
FOLDERS = {"sim": "sim", "agents": "agents", "protocols": "protocols", "scenarios": "scenarios"}
MEDIUM = ['run.duration="2h"']
CASES: dict[str, tuple[str, list[str]]] = {
    "inter-protocol-pm/silo": ("inter-protocol-pm", ["margin.regime=silo"]),
    "inter-protocol-pm/portfolio": ("inter-protocol-pm", ["margin.regime=portfolio"]),
    "defi-contagion": ("defi-contagion", []),
}


def overrides(case: str, size: str) -> tuple[str, list[str]]:
    name, base = CASES[case]
    if size == "small":
        return PINNED[case][0], list(PINNED[case][1])
    return name, [*base, *(MEDIUM if size == "medium" else [])]


def child(case: str, size: str) -> dict:
    """Run one case here (a fresh process) and return its figures."""
    import time

    t0 = time.process_time()
    import defistress
    from defistress.sim.experiments.runs import run_scenario

    t_import = time.process_time() - t0
    name, ov = overrides(case, size)
    t1 = time.process_time()
    res = run_scenario(name, seed=1, overrides=ov)
    cpu = time.process_time() - t1
    blocks = int(res.metrics["blocks"])
    return {
        "package": str(Path(defistress.__file__).resolve().parent.parent),
        "cpu_s": round(cpu, 3),
        "import_cpu_s": round(t_import, 3),
        "blocks": blocks,
        "cpu_ms_per_block": round(1000 * cpu / max(blocks, 1), 3),
        "liquidations": int(res.metrics["liquidations"]),
        "bad_debt_usd": float(res.metrics["bad_debt_usd"]),
    }


def baseline_tree(ref: str, into: Path) -> Path:
    """Extract commit `ref` and assemble its `defistress` package under `into/pkg` (the package-dir mapping)."""
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = into / "pkg"
    shutil.copytree(src / "defistress", pkg / "defistress")
    for folder, sub in FOLDERS.items():
        (pkg / "defistress" / sub).symlink_to(src / folder, target_is_directory=True)
    return pkg


def run_child(case: str, size: str, pythonpath: Path | None) -> dict:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    load_before = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", case, "--size", size],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    if out.returncode != 0:
        raise SystemExit(f"{case} ({'baseline' if pythonpath else 'this'}) failed:\n{out.stderr[-3000:]}")
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    return {**fig, "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("full", "medium", "small"), default="medium")
    ap.add_argument("--baseline", default=None, help="git commit to compare with (e.g. the commit before a change)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {list(CASES)}")
    ap.add_argument("--reps", type=int, default=1, help="runs per case and checkout (best CPU reported)")
    ap.add_argument("--out", type=Path, default=RESULTS / "pm.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size)))
        return
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; allowed {list(CASES)}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_pm_"))
    try:
        base = baseline_tree(args.baseline, tmp) if args.baseline else None
        who = {"this": None} | ({"baseline": base} if base is not None else {})
        runs: dict[str, dict[str, list[dict]]] = {c: {w: [] for w in who} for c in cases}
        for _ in range(args.reps):
            for c in cases:  # interleaved: baseline and this checkout back to back, case by case
                for w, path in reversed(who.items()):
                    runs[c][w].append(run_child(c, args.size, path))
                    print(f"{c:<28} {w:<9} {runs[c][w][-1]['cpu_s']:>9.1f} s CPU", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {c: {w: min(r, key=lambda x: x["cpu_s"]) for w, r in by.items()} for c, by in runs.items()}
    speedup = {c: round(b["baseline"]["cpu_s"] / b["this"]["cpu_s"], 2) for c, b in best.items() if "baseline" in b}
    same = {
        c: all((b["this"][k] == b["baseline"][k]) for k in ("blocks", "liquidations", "bad_debt_usd"))
        for c, b in best.items()
        if "baseline" in b
    }
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "commit": commit.strip(),
        "baseline": args.baseline,
        "size": args.size,
        "overrides": {c: overrides(c, args.size)[1] for c in cases},
        "best": best,
        "speedup_cpu": speedup,
        "same_summary": same,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nsize {args.size}; CPU seconds per run (ms per block), best of {args.reps}")
    for c, b in best.items():
        line = f"{c:<28}" + "".join(
            f" {w}: {f['cpu_s']:.1f} s ({f['cpu_ms_per_block']:.1f} ms/block, load {f['load_1min_before']})"
            for w, f in b.items()
        )
        print(line + (f"  speed-up {speedup[c]}x, same summary: {same[c]}" if c in speedup else ""))
    print(args.out)


if __name__ == "__main__":
    main()
