"""Write tests/data/readme_figures.json: the seed-1 summaries behind the README's figures for the scenarios too
slow to run inside the test suite (defi-contagion, black-thursday-maker, inter-protocol-pm under both regimes,
compound-dai-oracle-2020, comet-eth-crash).

tests/test_readme.py checks the README's sentences and table against this file (eth-crash it runs itself).
Re-run after a change that moves these results (`make readme-figures`, about 10 minutes on 2 cores), then
update the README until the tests pass.

Usage: python benchmarks/readme_figures.py [OUT] [--only KEY ...]   (--only refreshes those runs, keeps the rest)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from defistress import __version__, run_scenario

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "defi-contagion": [],
    "black-thursday-maker": [],
    "inter-protocol-pm/silo": ["margin.regime=silo"],
    "inter-protocol-pm/portfolio": ["margin.regime=portfolio"],
    "compound-dai-oracle-2020": [],
    "comet-eth-crash": [],
}


def main(out: Path, only: list[str] | None = None) -> None:
    unknown = sorted(set(only or []) - set(RUNS))
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; allowed: {sorted(RUNS)}")
    figures: dict = {"seed": 1, "package_version": __version__, "runs": {}}
    if only and out.exists():
        figures["runs"] = json.loads(out.read_text())["runs"]
    for key, overrides in RUNS.items():
        if only and key not in only:
            continue
        t0 = time.perf_counter()
        r = run_scenario(key.split("/")[0], seed=1, overrides=overrides)
        summary = json.loads(json.dumps(r.metrics, default=float))  # plain JSON types
        summary.pop("conservation_errors", None)
        figures["runs"][key] = {"scenario_sha256": r.manifest["scenario_sha256"], "metrics": summary}
        print(f"{key}: {time.perf_counter() - t0:.0f} s", flush=True)
    out.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(out)


if __name__ == "__main__":
    args = sys.argv[1:]
    keys = args[args.index("--only") + 1 :] if "--only" in args else None
    paths = args[: args.index("--only")] if "--only" in args else args
    main(Path(paths[0]) if paths else ROOT / "tests" / "data" / "readme_figures.json", keys)
