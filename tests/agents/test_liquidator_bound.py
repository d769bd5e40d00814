"""The liquidators' profit bound (issue 14) only skips rows `_plan` would turn down: run a crash with the skip
disabled, record which rows the bound would have skipped, and check that `_plan` planned none of them."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.agents.liquidator import Liquidator
from defistress.scenarios.loader import load
from defistress.sim.engine.model import StressModel


def test_every_row_the_bound_skips_is_one_plan_turns_down(monkeypatch: pytest.MonkeyPatch):
    flagged: list[tuple[int, int]] = []  # (block, account) the bound would skip
    planned: list[tuple[int, int, bool]] = []  # (block, account, got a transaction)
    bound = Liquidator._hopeless
    plan = Liquidator._plan
    monkeypatch.setattr(Liquidator, "_all_hopeless", lambda *a: False)  # every block through `_hopeless`

    def record_bound(self, m, ready, coll_usd, debt_usd, view, ledger, *inputs):
        skip, cover = bound(self, m, ready, coll_usd, debt_usd, view, ledger, *inputs)
        flagged.extend((view.block, int(a)) for a in ready[skip])
        return np.zeros_like(skip), cover  # plan every row

    def record_plan(self, m, a, coll_usd, debt_usd, view, ledger, committed):
        tx = plan(self, m, a, coll_usd, debt_usd, view, ledger, committed)
        planned.append((view.block, int(a), tx is not None))
        return tx

    monkeypatch.setattr(Liquidator, "_hopeless", record_bound)
    monkeypatch.setattr(Liquidator, "_plan", record_plan)
    model = StressModel(load("eth-crash", ["agents.borrowers.accounts=600", 'run.duration="3h"']), seed=2)
    model.run()
    took = {(b, a) for b, a, ok in planned if ok}
    assert took, "the crash liquidates nothing: the test would not bite"
    assert len(flagged) > len(took)  # the bound skips a good share of the planning
    assert not took & set(flagged)


def _events(overrides: list[str]) -> list[str]:
    model = StressModel(load("eth-crash", overrides), seed=3)
    model.run()
    return [repr(e) for e in model.env.events]


@pytest.mark.parametrize("capital_usd", [3_000, 5_000_000])
def test_the_screen_and_the_shared_figures_change_no_event(monkeypatch: pytest.MonkeyPatch, capital_usd: int):
    """The whole event log of a crash is the same with the screen (the figures the three liquidators share per
    block, the block-wide `_all_hopeless` skip and the shared previews) as with every row planned one by one from
    per-liquidator pairs and previews: with ample capital, and with capital so small that it binds (each liquidator
    then plans against what it has left after earlier rows)."""
    overrides = ["agents.borrowers.accounts=500", 'run.duration="3h"', f"agents.liquidator.capital_usd={capital_usd}"]
    fast = _events(overrides)
    assert sum(e.startswith("Liquidated(") for e in fast) > 20, (
        "the crash liquidates too little: the test would not bite"
    )

    def plan_every_row(self, m, ready, coll_idx, debt_idx, view, ledger, *inputs):
        return np.zeros(ready.size, dtype=bool), np.full(ready.size, np.inf)

    def own_pairs(self, m, ready, ledger, view=None):
        return pairs(self, m, ready, ledger, None)

    pairs = Liquidator._pairs
    monkeypatch.setattr(Liquidator, "_all_hopeless", lambda *a: False)
    monkeypatch.setattr(Liquidator, "_preview", lambda self, m, a, c, d, x, view: m.preview(a, c, d, x))
    monkeypatch.setattr(Liquidator, "_hopeless", plan_every_row)
    monkeypatch.setattr(Liquidator, "_pairs", own_pairs)
    assert _events(overrides) == fast
