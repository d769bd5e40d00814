"""`Liquidator._candidates`: the unhealthy rows of a lending market less the rows under an external controller (the
controller's to liquidate), against `np.flatnonzero((hf < 1) & ~controlled)` computed here; with no controlled row the
selection's edits are handed on (`delta`), with some they are not (the rows were filtered)."""

from __future__ import annotations

import mesa
import numpy as np
from test_liquidator_fast_paths import PRICES, _spec, _world

from defistress.agents.liquidator import Liquidator
from defistress.agents.tx import BlockView


def test_controlled_rows_are_left_out_and_the_rest_kept_in_order():
    env, m, pools, bots = _world(1, "aave-v3.3", 5e6, "capital")
    liq = Liquidator(mesa.Model(rng=0), bots[0][0], _spec(0.0), [m], pools, 500_000, lambda: 1280.0)
    ref = {s: p * 0.8 for s, p in PRICES.items()}
    hf = m.health()
    unhealthy = np.flatnonzero(hf < 1.0)
    assert unhealthy.size >= 3
    rows, delta = liq._candidates(m, hf, BlockView(5, 60.0, 1.0, ref))
    assert rows.tolist() == unhealthy.tolist() and not rows.flags.writeable
    m.set_controlled(unhealthy[[0, 2]])
    hf = m.health()
    rows, delta = liq._candidates(m, hf, BlockView(6, 72.0, 1.0, ref))
    want = np.flatnonzero((hf < 1.0) & ~m.controlled)
    assert rows.tolist() == want.tolist() and rows.size == unhealthy.size - 2 and delta is None
    assert not rows.flags.writeable
