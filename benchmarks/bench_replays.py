"""Every built-in replay at full size through `defistress replay`: wall time and runs per event, and each
published figure's band with its verdict (inside or not).

Run: python benchmarks/bench_replays.py [--seeds 1] [--samples 10] [--workers 2] [--smoke] [--only NAME ...]
Writes results/replays.json (results/replays-smoke.json with --smoke) and the replay folders under
build/bench-replays/. Nothing here is asserted: the figures are measured and reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--smoke", action="store_true", help="reduced size (run.smoke), as the tests run them")
    ap.add_argument("--only", nargs="*", default=None, help="replay only these built-ins")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--folder", type=Path, default=HERE.parent / "build" / "bench-replays")
    args = ap.parse_args(argv)

    from defistress.sim.experiments.replay import replay, replay_builtins

    names = args.only or replay_builtins()
    events = []
    for name in names:
        t0, c0 = time.perf_counter(), time.process_time()
        res = replay(
            name,
            args.folder / name,
            list(range(1, args.seeds + 1)),
            args.samples,
            workers=args.workers,
            backend="process" if args.workers > 1 else "inline",
            smoke=args.smoke,
        )
        wall = time.perf_counter() - t0
        pub = res.published_rows()
        events.append(
            {
                "event": name,
                "runs": int(len(res.runs)),
                "wall_s": round(wall, 1),
                "client_cpu_s": round(time.process_time() - c0, 1),
                "figures": [
                    {
                        "figure": r["key"],
                        "published": r["published"],
                        "published_range": [r["published_low"], r["published_high"]],
                        "band": [r["band_low"], r["band_median"], r["band_high"]],
                        "inside": r["inside"],
                    }
                    for _, r in pub.iterrows()
                ],
            }
        )
        print(f"{name}: {len(res.runs)} runs in {wall:.0f} s", flush=True)
        for f in events[-1]["figures"]:
            lo, med, hi = f["band"]
            print(f"  {f['figure']}: published {f['published']:.4g}, band {lo:.4g}..{hi:.4g} (median {med:.4g}): "
                  f"{'inside' if f['inside'] else 'OUTSIDE'}")  # fmt: skip
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seeds": args.seeds,
        "samples": args.samples,
        "workers": args.workers,
        "smoke": args.smoke,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average": list(os.getloadavg()),
        },  # fmt: skip
        "events": events,
    }
    out = args.out or HERE / "results" / ("replays-smoke.json" if args.smoke else "replays.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
