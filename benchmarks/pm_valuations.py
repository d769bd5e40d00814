"""Which whole-book valuations of `inter-protocol-pm` could be shared or skipped without changing a number (issue 14).

Run: python benchmarks/pm_valuations.py [--regime silo|portfolio] [--duration 2h] [--set KEY=VALUE ...] [--out PATH]
     -> prints a table, writes benchmarks/results/pm_valuations_<regime>.json.

Each block the options venue values its book at the agents' decisions (new time and oracle prices) and again
after accrual (the block's metrics; accrual folds the block into the vol surfaces' realised variance, settles
perps at the oracle and expires options); under the portfolio regime the coordinator also values every
principal's combined book at the block's metrics, and at the keeper's decision only the principals its screen
cannot clear (`MarginCoordinator.screened_health`). This script counts, per phase, the venue's margin-model
batches and rows (`RowMarginCache`) and the coordinator's valuations, and checks what a memo keyed on the
inputs would find:

- venue, decide vs metrics of the same block: which parts of the market key (`OptionsVenue.market_key`: chain
  time, oracle prices, settlement prices, instrument table, vol-surface state) differ, and whether the
  surfaces' *effective* state (ATM vol and skew, the only surface figures a valuation reads) differs;
- coordinator, a whole-book valuation at the keeper's decision (none since the keeper screens) vs the block's
  metrics: principals whose combined portfolio (positions and cash, bit for bit) is unchanged, and whether the
  market state (spot, surfaces' ATM vol and skew) is.

A valuation can be reused bit-identically only where both its book and its market are unchanged; the counts show
how often that happens. The venue's margin model (deribit-pm) and the coordinator's (derive-pm2) use different
scenario grids, so their per-account scenario arrays are never the same numbers.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
KEY_PARTS = ("time", "prices", "settle_price", "inst_und", "inst_kind", "inst_strike", "inst_expiry", "inst_active")


def run(regime: str, duration: str, extra: list[str] | None = None) -> dict[str, Any]:
    from defistress.protocols import coordinator as coord_mod
    from defistress.protocols import options_margin_cache as omc
    from defistress.sim.engine import model as model_mod
    from defistress.sim.experiments.runs import run_scenario

    phase = {"name": "setup", "block": -1}
    batches: collections.Counter[tuple[str, bool]] = collections.Counter()
    rows: collections.Counter[tuple[str, bool]] = collections.Counter()
    venue_keys: dict[tuple[int, str], Any] = {}  # (block, phase) -> last market key of a whole-book batch
    coord_books: dict[tuple[int, str], tuple] = {}  # (block, phase) -> (per-principal signatures, market)
    coord_calls: collections.Counter[tuple[str, str]] = collections.Counter()

    def wrap_phase(name: str):
        orig = getattr(model_mod.StressModel, f"phase_{name}")

        def wrapped(self, *a, **k):
            phase["name"], phase["block"] = name, self.env.clock.block
            return orig(self, *a, **k)

        setattr(model_mod.StressModel, f"phase_{name}", wrapped)

    for name in ("governance", "market", "oracles", "decide", "build", "accrue", "metrics"):
        wrap_phase(name)
    orig_run = model_mod.StressModel.run

    def run_then_finish(self, *a, **k):
        orig_run(self, *a, **k)
        phase["name"], phase["block"] = "finish", self.env.clock.block  # the summary's valuations

    model_mod.StressModel.run = run_then_finish

    orig_compute = omc.RowMarginCache._compute

    def compute(self, venue, need):
        full = bool(need.size == venue.n_accounts)
        batches[(phase["name"], full)] += 1
        rows[(phase["name"], full)] += int(need.size)
        if full:
            eff = tuple((s.atm_vol, s.skew_now, s.excess_vol) for s in venue.surfaces.values())
            venue_keys[(phase["block"], phase["name"])] = (venue.market_key(), eff)
        return orig_compute(self, venue, need)

    omc.RowMarginCache._compute = compute

    orig_req = coord_mod.MarginCoordinator.requirements
    orig_combine = coord_mod.MarginCoordinator._combine
    state = {"whole": False}

    def requirements(self, principals=None, with_pm=True):
        whole = principals is None
        coord_calls[(phase["name"], "whole_pm" if whole and with_pm else "subset_or_silo")] += 1
        state["whole"] = whole and with_pm
        try:
            return orig_req(self, principals, with_pm)
        finally:
            state["whole"] = False

    def combine(self, parts, n):
        pf = orig_combine(self, parts, n)
        if state["whole"]:
            mkt = self.market_state()
            spot = tuple(sorted(mkt.spot.items()))
            vol = tuple(
                (u, (v.atm_vol, v.skew_now) if hasattr(v, "skew_now") else float(v)) for u, v in sorted(mkt.vol.items())
            )
            order = np.argsort(pf.account, kind="stable")
            cols = np.column_stack(
                [pf.account, pf.kind, pf.und, pf.qty, pf.strike, pf.expiry_s, pf.entry_price]
            ).astype(np.float64)[order]
            bounds = np.searchsorted(pf.account[order], np.arange(n + 1))
            sig = [cols[bounds[i] : bounds[i + 1]].tobytes() + pf.cash[i : i + 1].tobytes() for i in range(n)]
            coord_books[(phase["block"], phase["name"])] = (sig, (spot, vol))
        return pf

    orig_screen = coord_mod.MarginCoordinator.screened_health

    def screened_health(self):
        coord_calls[(phase["name"], "screened")] += 1
        return orig_screen(self)

    coord_mod.MarginCoordinator.requirements = requirements
    coord_mod.MarginCoordinator.screened_health = screened_health
    coord_mod.MarginCoordinator._combine = combine
    load0 = os.getloadavg()[0]
    t0 = time.process_time()
    overrides = [f"margin.regime={regime}", f'run.duration="{duration}"', *(extra or [])]
    res = run_scenario("inter-protocol-pm", seed=1, overrides=overrides)
    cpu = time.process_time() - t0
    n_blocks = int(res.metrics["blocks"])

    same_parts: collections.Counter[str] = collections.Counter()
    eff_same = key_same = pairs = 0
    for b in range(n_blocks):
        d = venue_keys.get((b, "decide"))
        m = venue_keys.get((b, "accrue")) or venue_keys.get((b, "metrics"))
        if d is None or m is None:
            continue
        pairs += 1
        for name, x, y in zip(KEY_PARTS, d[0].values, m[0].values):
            same_parts[name] += int(x == y)
        same_parts["surfaces (raw state)"] += int(d[0].values[-1] == m[0].values[-1])
        eff_same += int(d[1] == m[1])
        key_same += int(d[0].same(m[0]))
    coord_pairs = principals_same = principals_total = market_same = 0
    for b in range(n_blocks):
        d2, m2 = coord_books.get((b, "decide")), coord_books.get((b, "metrics"))
        if d2 is None or m2 is None:
            continue
        coord_pairs += 1
        market_same += int(d2[1] == m2[1])
        principals_same += sum(x == y for x, y in zip(d2[0], m2[0]))
        principals_total += len(m2[0])
    return {
        "regime": regime,
        "duration": duration,
        "overrides": overrides,
        "blocks": n_blocks,
        "cpu_s": round(cpu, 3),
        "load_1min_before": round(load0, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
        "venue_batches": {f"{p}/{'whole' if f else 'rows'}": c for (p, f), c in sorted(batches.items())},
        "venue_rows_valued": {f"{p}/{'whole' if f else 'rows'}": c for (p, f), c in sorted(rows.items())},
        "venue_decide_vs_metrics": {
            "blocks_compared": pairs,
            "market_key_same": key_same,
            "surfaces_effective_state_same": eff_same,
            "parts_same": dict(same_parts),
        },
        "coordinator_calls": {f"{p}/{kind}": c for (p, kind), c in sorted(coord_calls.items())},
        "coordinator_decide_vs_metrics": {
            "blocks_compared": coord_pairs,
            "market_same": market_same,
            "principals_book_same": principals_same,
            "principals_compared": principals_total,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regime", choices=("silo", "portfolio"), default="silo")
    ap.add_argument("--duration", default="2h", help="run.duration override (the medium size of bench_pm.py)")
    ap.add_argument("--set", action="append", default=[], help="further scenario override KEY=VALUE (repeatable)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = run(a.regime, a.duration, a.set)
    print(json.dumps(out, indent=1))
    path = Path(a.out) if a.out else HERE / "results" / f"pm_valuations_{a.regime}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
