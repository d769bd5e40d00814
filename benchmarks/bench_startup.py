"""CLI start-up: CPU seconds of `defistress --help`, `import defistress`, the CLI app and a run's modules, each in a
fresh process, with the heaviest imports from `python -X importtime` (issue 14: start-up under 0.5 s).

Run: python benchmarks/bench_startup.py [--reps 5] [--baseline-python /path/to/other/.venv/bin/python] [--out PATH]
     -> prints a table, writes benchmarks/results/startup.json.

CPU time (user + system of the child, `resource.getrusage(RUSAGE_CHILDREN)` differences), best of --reps,
cases interleaved (and interleaved with the baseline checkout's python when given); the 1-minute load average is
recorded beside each figure. Python's own start-up (`python -c pass`) is measured too, so what the package adds
is visible.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CASES = {
    "python -c pass": ["-c", "pass"],
    "import defistress": ["-c", "import defistress"],
    "defistress --help": [
        "-c",
        "import sys; sys.argv = ['defistress', '--help']; from defistress.sim.cli.app import app; app()",
    ],
    "import the CLI app": ["-c", "import defistress.sim.cli.app"],
    "import a run's modules": ["-c", "import defistress.sim.experiments.runs"],
}


def cpu_of(cmd: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def top_imports(python: str, module: str, k: int = 12) -> list[dict]:
    """The `k` imports with the largest cumulative time (microseconds) under `python -X importtime`."""
    err = subprocess.run([python, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, self_us, cum_us, name = (x.strip() for x in line.replace("import time:", "|").split("|"))
        rows.append(
            {
                "module": name,
                "self_us": int(self_us),
                "cumulative_us": int(cum_us),
                "depth": len(name) - len(name.lstrip()),
            }
        )
    rows.sort(key=lambda r: -r["cumulative_us"])
    return [{**r, "module": r["module"].strip()} for r in rows[:k]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--baseline-python", default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    args = ap.parse_args()
    pythons = {"this": sys.executable} | ({"baseline": args.baseline_python} if args.baseline_python else {})
    samples: dict[str, dict[str, list]] = {who: {c: [] for c in CASES} for who in pythons}
    loads: list[float] = []
    for _ in range(args.reps):
        for case, argv in CASES.items():
            for who, py in pythons.items():
                loads.append(round(os.getloadavg()[0], 2))
                samples[who][case].append(round(cpu_of([py, *argv]), 4))
    out = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_1min": {"min": min(loads), "max": max(loads)},
        "cpu_s_best": {who: {c: min(v) for c, v in s.items()} for who, s in samples.items()},
        "cpu_s_all": samples,
        "top_imports_cli_app": {who: top_imports(py, "defistress.sim.cli.app") for who, py in pythons.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"CPU seconds, best of {args.reps}; 1-minute load {out['load_1min']['min']} to {out['load_1min']['max']}")
    print(f"{'case':<26}" + "".join(f"{who:>12}" for who in pythons))
    for case in CASES:
        print(f"{case:<26}" + "".join(f"{out['cpu_s_best'][who][case]:>12.3f}" for who in pythons))
    print(args.out)


if __name__ == "__main__":
    main()
