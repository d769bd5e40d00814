"""Smoke test of benchmarks/pm_valuations.py on `inter-protocol-pm` at the pinned reduced size (2 hours of 36 s
blocks: 200 blocks, 100 hedged accounts) under the portfolio regime: every block's decision values the venue's
whole book (but the first, at the set-up's chain time and prices) and the coordinator's combined book once (chain
time moved since the last valuation; the coordinator keeps no valuation), and the block's two venue valuations
see the same chain time and oracle prices (nothing moves them between the decision and accrual); no timing is
asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("pinned_results", BENCH / "pinned_results.py")
assert _spec is not None and _spec.loader is not None
_pinned = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pinned)
#: the pinned reduced size of inter-protocol-pm, without its duration (passed as --duration)
SMALL = [s for s in _pinned.PM_SMALL if not s.startswith("run.duration=")]


def test_pm_valuations_counts_the_blocks_valuations(tmp_path: Path):
    out = tmp_path / "v.json"
    cmd = [sys.executable, str(BENCH / "pm_valuations.py"), "--regime", "portfolio", "--duration", "2h"]
    cmd += [a for s in SMALL for a in ("--set", s)] + ["--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    r = json.loads(out.read_text())
    blocks = 2 * 3600 // 36
    assert r["blocks"] == blocks and r["regime"] == "portfolio"
    assert r["venue_batches"]["decide/whole"] == blocks - 1
    assert r["coordinator_calls"]["decide/screened"] == blocks and r["coordinator_calls"]["metrics/whole_pm"] == blocks
    assert "decide/whole_pm" not in r["coordinator_calls"]  # the keeper screens: no whole-book valuation to compare
    v = r["venue_decide_vs_metrics"]
    assert v["blocks_compared"] == blocks - 1
    assert v["parts_same"]["time"] == blocks - 1 and v["parts_same"]["prices"] == blocks - 1
    c = r["coordinator_decide_vs_metrics"]
    assert c["blocks_compared"] == 0 and c["principals_compared"] == 0
    assert r["cpu_s"] > 0 and r["load_1min_before"] >= 0
