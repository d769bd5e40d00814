"""Write tests/data/pinned_results.json: the seed-1 summary metrics of every built-in scenario at reduced size.

tests/test_pinned_results.py re-runs the same cases and compares metric by metric, so a speed-up that changes a
result fails the suite. Re-run this script only for a change that is MEANT to move results (a model fix), and say
so in the commit message; never to make a failing optimisation pass.

Comparison policy (applied by the test, recorded in the file under "policy"):
- integers, booleans, strings and lists of them (counts of liquidations, blocks, names): exact;
- floats: |a - b| <= rtol * max(|a|, |b|) + atol with rtol = 1e-9 and atol = 1e-9 (the unit of the metric: USD,
  tokens, fractions), because an optimisation may reorder a sum (BLAS products, incremental totals) and move the
  last bits; nothing a model decides (a liquidation, a count) may move;
- floats listed under "bit_identical" (none at present) must be equal bit for bit.

Usage: python benchmarks/pinned_results.py [OUT] [--only KEY ...]   (--only refreshes those cases, keeps the rest)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "pinned_results.json"

# reduced sizes: every case under about 10 s of CPU on one core; shocks stay inside the (shortened) runs
CASES: dict[str, tuple[str, list[str]]] = {
    "eth-crash": ("eth-crash", ['run.duration="4h"', "agents.borrowers.accounts=2000"]),
    "calm": ("calm", ['run.duration="3h"', "agents.borrowers.accounts=1000"]),
    "black-thursday-lending": (
        "black-thursday-lending",
        ["run.block_seconds=60", "agents.borrowers.accounts=1000"],
    ),
    "black-thursday-maker": ("black-thursday-maker", ["run.block_seconds=60", "agents.vaults.accounts=800"]),
    "comet-eth-crash": (
        "comet-eth-crash",
        ["agents.borrowers.accounts=400", "run.block_seconds=30", "run.duration=6h"],
    ),
    "compound-dai-oracle-2020": (
        "compound-dai-oracle-2020",
        [
            "agents.dai-farmers.accounts=60",
            "agents.eth-dai-borrowers.accounts=150",
            "agents.eth-usdc-borrowers.accounts=150",
            "run.block_seconds=60",
            "run.duration=10h",
        ],
    ),
    "crvusd-aug5": ("crvusd-aug5", ["run.block_seconds=120"]),
    "defi-contagion": (
        "defi-contagion",
        [
            'run.duration="6h"',
            "run.block_seconds=36",
            "agents.vaults.accounts=800",
            "agents.borrowers.accounts=1200",
            "agents.traders.params.accounts=1200",
        ],
    ),
    "inter-protocol-pm/silo": ("inter-protocol-pm", []),
    "inter-protocol-pm/portfolio": ("inter-protocol-pm", []),
    # the crash-window replays at their own reduced size (each scenario's run.smoke)
    "aave-crv-2022": ("aave-crv-2022", ["run.block_seconds=60"]),
    "aug5-2024": ("aug5-2024", ["agents.borrowers.accounts=300", "run.block_seconds=120"]),
    "ftx-nov2022": ("ftx-nov2022", ["agents.borrowers.accounts=300", "run.block_seconds=300"]),
    "luna-venus": ("luna-venus", ["agents.borrowers.accounts=200"]),
    "may19-aave": ("may19-aave", ["agents.borrowers.accounts=400", "run.block_seconds=60"]),
    "oct10-2025": ("oct10-2025", ["agents.borrowers.accounts=300", "run.block_seconds=120"]),
    "steth-june2022": ("steth-june2022", ["agents.borrowers.accounts=300", "run.block_seconds=300"]),
    "usdc-depeg-2023": ("usdc-depeg-2023", ["agents.borrowers.accounts=300", "run.block_seconds=300"]),
}
PM_SMALL = [
    "run.duration=2h",
    "run.block_seconds=36",
    "agents.hedged.accounts=100",
    "agents.borrowers.accounts=150",
    "agents.traders.params.accounts=150",
    "agents.writers.params.accounts=100",
    "agents.delta-hedgers.params.accounts=50",
    "agents.protection-buyers.params.accounts=100",
]
CASES["inter-protocol-pm/silo"] = ("inter-protocol-pm", [*PM_SMALL, "margin.regime=silo"])
CASES["inter-protocol-pm/portfolio"] = ("inter-protocol-pm", [*PM_SMALL, "margin.regime=portfolio"])

SEED = 1
POLICY = {"float_rtol": 1e-9, "float_atol": 1e-9, "bit_identical": [], "exact": "int, bool, str and lists of them"}


def _plain(x: object) -> object:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to strings (JSON has no NaN/inf)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()  # numpy scalar
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def case_metrics(key: str) -> dict:
    """Run one case and return its summary metrics as plain JSON types (conservation errors dropped)."""
    from defistress.sim.experiments.runs import run_scenario

    name, overrides = CASES[key]
    metrics = dict(run_scenario(name, seed=SEED, overrides=overrides).metrics)
    metrics.pop("conservation_errors", None)
    return _plain(metrics)  # type: ignore[return-value]


def main(out: Path, only: list[str] | None = None) -> None:
    from defistress import __version__

    unknown = sorted(set(only or []) - set(CASES))
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; allowed: {sorted(CASES)}")
    data: dict = {"seed": SEED, "package_version": __version__, "policy": POLICY, "cases": {}}
    if only and out.exists():
        data["cases"] = json.loads(out.read_text())["cases"]
    for key, (name, overrides) in CASES.items():
        if only and key not in only:
            continue
        t0 = time.process_time()
        data["cases"][key] = {"scenario": name, "overrides": overrides, "metrics": case_metrics(key)}
        print(f"{key}: {time.process_time() - t0:.1f} s CPU", flush=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(out)


if __name__ == "__main__":
    args = sys.argv[1:]
    keys = args[args.index("--only") + 1 :] if "--only" in args else None
    paths = args[: args.index("--only")] if "--only" in args else args
    main(Path(paths[0]) if paths else OUT, keys)
