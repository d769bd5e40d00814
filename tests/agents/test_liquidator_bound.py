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

    def record_bound(self, m, ready, coll_usd, debt_usd, view, ledger):
        skip, cover = bound(self, m, ready, coll_usd, debt_usd, view, ledger)
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
