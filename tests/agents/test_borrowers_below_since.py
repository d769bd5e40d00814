"""`BorrowerPopulation.submit` without a gather of every alarmed row's first-alarmed block (issue 14): `below_since`
is read-only between looks and `_reset` notes what it writes, so a look reads only the rows that joined and the rows
reset. Against the reference bookkeeping of test_borrowers_watch (the gather as first written), also when the blocks
are negative, when the array is replaced or made writeable and written from outside, and when `_reset` is given rows
it cannot note (a mask, negative positions): the same batches and the same `below_since` every block."""

from __future__ import annotations

import numpy as np
import pytest
from test_borrowers_watch import _population, reference_ready, reference_state

from defistress.agents import borrowers, mask_rows
from defistress.agents.tx import BlockView


def _compare(seed: int, blocks: range, outside, monkeypatch) -> int:
    """Run `blocks` on a population and on the reference; `outside(block, pop, ref, rng)` may write both between
    blocks. Returns how many blocks acted."""
    monkeypatch.setattr(mask_rows, "_MIN_SIZE", 0)
    monkeypatch.setattr(borrowers, "_READY_HEAD", 2)
    rng = np.random.default_rng(seed)
    pop = _population(rng, 80, 0.6)
    pop.spec.max_users_per_block, pop.spec.users_per_tx = 10**9, 4
    ref = reference_state(pop)
    hf = pop.market.hf
    acted = 0
    for block in blocks:
        if rng.random() < 0.7:
            hf *= np.exp(rng.normal(0.0, 0.02, hf.size))
        txs = pop.submit(BlockView(block, 12.0 * block, 1.0, {}))
        want = reference_ready(ref, hf, block)
        got = np.concatenate([tx.action.args[0] for tx in txs]) if txs else np.zeros(0, dtype=np.int64)
        assert got.tolist() == want.tolist()
        assert pop.below_since.tolist() == ref["below_since"].tolist()
        acted += bool(txs)
        if txs and rng.random() < 0.5:
            paid = got[rng.random(got.size) < 0.5]
            pop._reset(paid)
            ref["below_since"][paid] = -1
            hf[pop.accounts[paid]] *= 1.01
        outside(block, pop, ref, rng)
    return acted


def test_negative_blocks_give_the_reference_batches(monkeypatch: pytest.MonkeyPatch):
    """A block below zero is written as a first-alarmed block that reads as unseen at the next look."""
    assert _compare(1, range(-40, 40), lambda *a: None, monkeypatch) > 5


def _replace(block, pop, ref, rng):
    if block % 17 == 5:  # a new array with the same values
        pop.below_since = pop.below_since.copy()
    if block % 23 == 7:  # the array made writeable and written from outside
        rows = rng.integers(0, pop.below_since.size, 5)
        pop.below_since.flags.writeable = True
        pop.below_since[rows] = -1
        ref["below_since"][rows] = -1


def test_outside_writes_through_a_new_or_writeable_array_give_the_reference_batches(monkeypatch: pytest.MonkeyPatch):
    assert _compare(2, range(200), _replace, monkeypatch) > 10


def _odd_resets(block, pop, ref, rng):
    if block % 11 == 3:  # a mask of rows
        mask = rng.random(pop.below_since.size) < 0.1
        pop._reset(mask)
        ref["below_since"][mask] = -1
    if block % 13 == 4:  # negative positions count from the end
        rows = -rng.integers(1, 10, 3)
        pop._reset(rows)
        ref["below_since"][rows] = -1


def test_resets_that_cannot_be_noted_give_the_reference_batches(monkeypatch: pytest.MonkeyPatch):
    assert _compare(3, range(200), _odd_resets, monkeypatch) > 10


def test_below_since_is_read_only_between_looks(monkeypatch: pytest.MonkeyPatch):
    """A write from outside fails loudly instead of going unnoticed."""
    pop = _population(np.random.default_rng(4), 20, 0.9)
    pop.market.hf[:] = 0.5  # every attentive account alarmed
    pop.submit(BlockView(1, 12.0, 1.0, {}))
    with pytest.raises(ValueError):
        pop.below_since[0] = -1
    pop._reset(np.array([0, 1]))
    assert pop.below_since[:2].tolist() == [-1, -1] and not pop.below_since.flags.writeable
