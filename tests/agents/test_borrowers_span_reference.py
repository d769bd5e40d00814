"""`agents.borrowers_span`: the attentive borrowers' alarm test over a slice of the book against the gather it replaced
(issue 14), kept here as the reference, bit for bit: the same positions, dtype and order on crafted health factors
(NaN, inf, -0.0, zeros, alarm levels one ulp either side) and random ones, and the same batches from `submit`."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.agents import mask_rows
from defistress.agents.borrowers_span import alarm_span
from defistress.agents.tx import BlockView
from tests.agents.test_borrowers_watch import _population


def reference_alarmed(hf: np.ndarray, attentive: np.ndarray, alarm: np.ndarray, accounts: np.ndarray) -> np.ndarray:
    """The test as `BorrowerPopulation.submit` made it before: a gather of the attentive rows' health factors."""
    local = np.flatnonzero(attentive)
    return local[hf.take(accounts[local]) < alarm[local]]


def span_alarmed(hf: np.ndarray, attentive: np.ndarray, alarm: np.ndarray, accounts: np.ndarray) -> np.ndarray:
    start, levels = alarm_span(attentive, alarm, accounts)
    assert start >= 0
    return np.flatnonzero(hf[start : start + levels.size] < levels)


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _edge_values(level: float) -> list[float]:
    up, down = np.nextafter(level, np.inf), np.nextafter(level, -np.inf)
    return [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, level, up, down, 5e-324, -5e-324, 1e308, level * 2]


@pytest.mark.parametrize("start", [0, 1, 7])
def test_crafted_health_factors_and_levels_select_the_reference_positions(start: int):
    levels = [1.1, 0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324]
    hf_values, alarm, attentive = [], [], []
    for level in levels:
        for v in _edge_values(level if np.isfinite(level) else 1.0):
            for on in (True, False):
                hf_values.append(v)
                alarm.append(level)
                attentive.append(on)
    n = len(hf_values)
    hf = np.concatenate([np.full(start, 0.5), np.array(hf_values), np.full(3, 0.5)])
    accounts = np.arange(start, start + n)
    att, al = np.array(attentive), np.array(alarm)
    got, want = span_alarmed(hf, att, al, accounts), reference_alarmed(hf, att, al, accounts)
    _same(got, want)
    assert 0 < want.size < att.sum(), "the edges would not bite"


@pytest.mark.parametrize("n,share", [(1, 1.0), (1, 0.0), (2, 0.5), (0, 0.5), (1000, 0.3), (5000, 0.95), (4000, 0.0)])
def test_random_books_select_the_reference_positions(n: int, share: float):
    rng = np.random.default_rng(n + int(share * 100))
    for start in (0, 3):
        hf = rng.uniform(0.9, 1.4, start + n + 2)
        hf[rng.random(hf.size) < 0.01] = np.nan
        attentive = rng.random(n) < share
        alarm = rng.uniform(1.05, 1.25, n)
        alarm[::7] = hf[start : start + n][::7]  # equal levels: `<` is False there
        accounts = np.arange(start, start + n)
        if n == 0:
            assert alarm_span(attentive, alarm, accounts)[0] == -1
            continue
        _same(span_alarmed(hf, attentive, alarm, accounts), reference_alarmed(hf, attentive, alarm, accounts))


def test_other_accounts_or_levels_are_gathered():
    """Rows that are not one increasing run, or levels that are not float64: no slice (the caller gathers)."""
    att = np.array([True, False, True])
    al = np.array([1.1, 1.2, 1.3])
    assert alarm_span(att, al, np.array([0, 1, 2]))[0] == 0
    assert alarm_span(att, al, np.array([4, 5, 6]))[0] == 4
    for accounts in (np.array([0, 2, 3]), np.array([2, 1, 0]), np.array([0, 1, 1]), np.array([-1, 0, 1])):
        assert alarm_span(att, al, accounts)[0] == -1
    assert alarm_span(att, al.astype(np.float32), np.array([0, 1, 2]))[0] == -1
    assert alarm_span(att, al, np.array([0.0, 1.0, 2.0]))[0] == -1
    assert alarm_span(att.astype(np.int8), al, np.array([0, 1, 2]))[0] == -1
    assert alarm_span(att[:2], al, np.array([0, 1, 2]))[0] == -1
    start, levels = alarm_span(att, al, np.array([5, 6, 7]))
    assert levels.tobytes() == np.array([1.1, np.nan, 1.3]).tobytes() and not levels.flags.writeable


@pytest.mark.parametrize("shuffled", [False, True])
def test_submit_takes_the_slice_for_contiguous_accounts_and_gathers_otherwise(shuffled: bool, monkeypatch):
    """The same batches every block either way, and `submit` uses the slice (no base) only where the rows are one run
    (the population's `below_since` and batches are checked against the gather's in test_borrowers_watch)."""
    monkeypatch.setattr(mask_rows, "_MIN_SIZE", 0)
    rng = np.random.default_rng(11)
    pops = [_population(np.random.default_rng(3), 80, 0.5) for _ in range(2)]
    gather = pops[1]
    # the same accounts in another order (a permutation of rows 5..84: not one increasing run), with their arrays
    if shuffled:
        perm = rng.permutation(80)
        for key in ("attentive", "alarm", "accounts"):
            arr = getattr(gather, key)[perm].copy()
            arr.flags.writeable = False
            setattr(gather, key, arr)
        gather.wallet = gather.wallet[perm]
    hf = pops[0].market.hf
    gather.market.hf = hf
    for block in range(60):
        hf *= np.exp(rng.normal(0.0, 0.02, hf.size))
        outs = []
        for pop in pops:
            txs = pop.submit(BlockView(block, 12.0 * block, 1.0, {}))
            rows = np.concatenate([tx.action.args[0] for tx in txs]) if txs else np.zeros(0, dtype=np.int64)
            outs.append(sorted(pop.accounts[rows].tolist()))
        assert outs[0] == outs[1]
    assert pops[0]._alarmed_rows.base is None
    assert (gather._alarmed_rows.base is None) != shuffled
