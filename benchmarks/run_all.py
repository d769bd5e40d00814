"""Run every benchmark in sequence: bench_model.py, bench_margin.py and bench_evm.py when they exist (bench_evm
needs `make chain`), bench_pm.py (the options / inter-protocol scenarios at full size), bench_sweep.py and the
sweep scaling projection built on its figures, then bench_replays.py (every built-in replay at full size).

Run: python benchmarks/run_all.py [arguments passed on to bench_model.py, e.g. --quick]
Each benchmark runs as its own process with this interpreter; the first failure stops the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    steps = [[str(HERE / "bench_model.py"), *argv]]
    if (HERE / "bench_margin.py").exists():
        steps.append([str(HERE / "bench_margin.py")])
    if (HERE / "bench_evm.py").exists():  # needs `make chain` (the Anvil node and the contracts)
        steps.append([str(HERE / "bench_evm.py")])
    if (HERE / "bench_pm.py").exists():  # inter-protocol-pm and defi-contagion at full size (this checkout only)
        steps.append([str(HERE / "bench_pm.py"), "--size", "full"])
    steps += [[str(HERE / "bench_sweep.py")], [str(HERE / "sweep_projection.py")]]
    if (HERE / "bench_replays.py").exists():  # every built-in replay at full size (defistress replay)
        steps.append([str(HERE / "bench_replays.py")])
    for step in steps:
        print(f"== {Path(step[0]).name} {' '.join(step[1:])}", flush=True)
        rc = subprocess.run([sys.executable, *step], cwd=str(HERE.parent)).returncode
        if rc != 0:
            print(f"{Path(step[0]).name} failed with exit code {rc}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
