"""The scans' shortcuts (issue 14) against the plain numpy they replace, on random histories: `MaskRows` (rows of a
mask updated where it flipped) against `np.flatnonzero(mask)` / `base[mask]`, its flips found word by word
(`flipped`) against `np.flatnonzero(last != mask)`, and `TopByDebt` (the debt ranking
through a threshold carried between blocks) against `plain_top`, the ranking as `Liquidator._ranked` wrote it,
with ties, NaN, infinities and signed zeros among the debts; and a reduced eth-crash run with every shortcut taken at
every size against the same run with none (events and per-block table equal)."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.agents import debt_rank, mask_rows
from defistress.agents.debt_rank import TopByDebt, plain_top
from defistress.agents.mask_rows import MaskRows, flipped


def reference_top(debt_usd: np.ndarray, ready: np.ndarray, k: int) -> np.ndarray:
    """The ranking as first written in `Liquidator._ranked` (kept here as the reference)."""
    top = ready
    if top.size > k:
        top = top[np.argpartition(-debt_usd[top], k - 1)[:k]]
    return top[np.argsort(-debt_usd[top], kind="stable")]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mask_rows_are_the_compaction_of_every_mask(seed: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(mask_rows, "_MIN_SIZE", 0)  # the splice at every size (the engine's books are large)
    rng = np.random.default_rng(seed)
    spliced = plain = 0
    for _ in range(150):
        n = int(rng.integers(0, 400))
        base = None
        if rng.random() < 0.5:
            base = np.sort(rng.choice(100_000, n, replace=False)).astype(np.int64)
            base.flags.writeable = False
        sel = MaskRows()
        mask = rng.random(n) < rng.random()
        last = None
        for _step in range(25):
            mask = mask.copy()
            flips = int(rng.integers(0, 6)) if rng.random() < 0.85 else int(rng.integers(0, n + 1))
            if n:
                mask[rng.integers(0, n, flips)] ^= True
            got = sel.select(mask.copy(), base)
            want = np.flatnonzero(mask) if base is None else base[mask]
            assert got.dtype == want.dtype and got.tolist() == want.tolist()
            assert not got.flags.writeable
            if last is not None and sel.removed is not None:  # the values dropped since the last call
                assert sorted(sel.removed.tolist()) == sorted(set(last.tolist()) - set(want.tolist()))
                spliced += 1
            else:
                plain += 1
            last = want
    assert spliced > 1000 and plain > 100, "both paths must be exercised"


def test_mask_rows_compact_afresh_when_the_base_changes_or_is_writeable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(mask_rows, "_MIN_SIZE", 0)
    sel = MaskRows()
    base = np.array([3, 5, 9, 12])
    base.flags.writeable = False
    assert sel.select(np.array([True, False, True, False]), base).tolist() == [3, 9]
    other = np.array([1, 2, 4, 8])  # another base object: its own compaction, not an update of the last one
    other.flags.writeable = False
    assert sel.select(np.array([True, False, True, True]), other).tolist() == [1, 4, 8]
    assert sel.removed is None
    writeable = np.array([1, 2, 4, 8])  # a base that could have changed in place is never trusted
    sel.select(np.array([True, True, True, True]), writeable)
    writeable[0] = 100
    assert sel.select(np.array([True, True, True, False]), writeable).tolist() == [100, 2, 4]


def reference_flips(last: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The flips as `MaskRows.select` first found them: every position where the masks differ, None above 64."""
    flip = np.flatnonzero(last != mask)
    return flip if flip.size <= 64 else None


def _check_flips(last: np.ndarray, mask: np.ndarray) -> None:
    got, want = flipped(last, mask), reference_flips(last, mask)
    if want is None:
        assert got is None
    else:
        assert got is not None and got.dtype == want.dtype and got.tolist() == want.tolist()


@pytest.mark.parametrize("seed", [1, 2])
def test_flips_found_word_by_word_are_the_plain_ones(seed: int, monkeypatch: pytest.MonkeyPatch):
    """Every size around a word (tails of 0-7 entries), no flip, a flip at each end, 64 and 65 flips, 64 and 65
    words that differ, and bools stored as other bytes than 0 and 1 (equal truth values, different bytes)."""
    monkeypatch.setattr(mask_rows, "_MIN_WORDS", 0)  # word by word at every size
    rng = np.random.default_rng(seed)
    for n in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 511, 512, 513, 520, 1000, 4096, 4101]:
        for _ in range(20):
            last = rng.random(n) < rng.random()
            mask = last.copy()
            if n:
                mask[rng.integers(0, n, int(rng.integers(0, 8)))] ^= True
            _check_flips(last, mask)
            _check_flips(last, last.copy())
            if n:
                ends = last.copy()
                ends[[0, n - 1]] ^= True
                _check_flips(last, ends)
                odd = mask.view(np.uint8).copy()  # the same truth values stored as bytes 1-255
                odd[odd == 1] = rng.integers(1, 256, int(np.count_nonzero(odd == 1)))
                _check_flips(last, odd.view(np.bool_))
                _check_flips(odd.view(np.bool_), mask)
        if n >= 8 * 65:
            last = np.zeros(n, dtype=bool)
            for flips in (64, 65):  # one flip in each of 64 or 65 words, then 64 or 65 flips in fewer words
                spread = last.copy()
                spread[np.arange(flips) * 8 + int(rng.integers(0, 8))] = True
                _check_flips(last, spread)
                packed = last.copy()
                packed[:flips] = True
                _check_flips(last, packed)
                assert (flipped(last, packed) is None) == (flips > 64)


def test_flips_of_masks_that_are_not_one_contiguous_row(monkeypatch: pytest.MonkeyPatch):
    """Strided and two-dimensional masks: the plain expression."""
    monkeypatch.setattr(mask_rows, "_MIN_WORDS", 0)
    rng = np.random.default_rng(4)
    a, b = rng.random(400) < 0.5, rng.random(400) < 0.5
    b[::2] = a[::2]
    _check_flips(a[::2], b[::2])
    _check_flips(a.reshape(20, 20), b.reshape(20, 20))
    _check_flips(a[::2].copy(), b[::2])


def test_flips_of_the_engine_s_size_without_lowering_the_gate():
    """A 100,000-entry mask (above `_MIN_WORDS`: word by word) with a few flips, none, and many."""
    rng = np.random.default_rng(5)
    last = rng.random(100_003) < 0.3
    for flips in (0, 1, 5, 64, 65, 500):
        mask = last.copy()
        mask[rng.choice(last.size, flips, replace=False)] ^= True
        _check_flips(last, mask)


def _debts(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.random()
    if kind < 0.5:
        d = np.exp(rng.normal(8.0, 2.0, n))
    elif kind < 0.8:  # many ties
        d = rng.integers(0, 30, n).astype(float) * 1000.0
    else:  # NaN, infinities and signed zeros among lognormal debts
        d = np.exp(rng.normal(8.0, 2.0, n))
        odd = rng.random(n) < 0.05
        d[odd] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], int(odd.sum()))
    return d


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_top_by_debt_is_the_plain_ranking_block_after_block(seed: int, monkeypatch: pytest.MonkeyPatch):
    """A book whose debts drift, whose top rows are liquidated (debt halved) and whose ready rows change each block;
    some books tie, some hold NaN, infinities and signed zeros."""
    monkeypatch.setattr(debt_rank, "_MIN_READY", 0)  # the threshold at every size (the engine's books are large)
    rng = np.random.default_rng(seed)
    plain_calls = []
    monkeypatch.setattr(debt_rank, "plain_top", lambda *a: plain_calls.append(1) or plain_top(*a))
    fast = slow = 0
    for _ in range(40):
        n, k = int(rng.integers(1, 3000)), int(rng.integers(1, 30))
        debt = _debts(rng, n)
        ranker = TopByDebt()
        for _block in range(40):
            ready = np.flatnonzero(rng.random(n) < rng.uniform(0.2, 1.0))
            calls = len(plain_calls)
            got = ranker.top(debt, ready, k)
            fast += len(plain_calls) == calls
            slow += ready.size > k and len(plain_calls) > calls
            want = reference_top(debt, ready, k)
            assert got.dtype == want.dtype and got.tolist() == want.tolist()
            assert plain_top(debt, ready, k).tolist() == want.tolist()
            with np.errstate(invalid="ignore"):
                debt = debt * np.exp(rng.normal(0.0, 0.001, n))
                debt[got[: max(1, k // 4)]] *= 0.5  # the top rows liquidated
    assert fast > 200 and slow > 50, "both paths must be exercised"


def test_the_shortcuts_run_on_books_of_the_engine_s_size():
    """At the sizes the gates let through (a 100,000-account book), unchanged thresholds and gates included."""
    rng = np.random.default_rng(9)
    n = 100_000
    sel, ranker = MaskRows(), TopByDebt()
    hf = rng.uniform(0.8, 1.6, n)
    debt = np.exp(rng.normal(8.0, 2.0, n))
    spliced = 0
    for _block in range(6):
        hf[rng.integers(0, n, 5)] = rng.uniform(0.9, 1.1, 5)
        rows = sel.select(hf < 1.0)
        assert rows.tolist() == np.flatnonzero(hf < 1.0).tolist()
        spliced += sel.removed is not None
        assert ranker.top(debt, rows, 20).tolist() == reference_top(debt, rows, 20).tolist()
        debt[ranker.top(debt, rows, 20)[:5]] *= 0.5
    assert spliced == 5 and ranker.threshold is not None


def _crash(monkeypatch: pytest.MonkeyPatch, fast: bool) -> tuple[str, str, int, int]:
    """A reduced eth-crash run with the shortcuts at every size (`fast`) or never: its events and per-block table
    as text, the splices and the rankings that did not fall back to `plain_top`."""
    from defistress.agents import borrowers
    from defistress.sim.experiments.runs import run_scenario

    big = 10**12
    monkeypatch.setattr(mask_rows, "_MIN_SIZE", 0 if fast else big)
    monkeypatch.setattr(debt_rank, "_MIN_READY", 0 if fast else big)
    monkeypatch.setattr(borrowers, "_READY_HEAD", 2 if fast else big)
    counts = {"splice": 0, "top": 0, "plain": 0}

    def spliced(*a):
        counts["splice"] += 1
        return SPLICED(*a)

    def top(self, *a):
        counts["top"] += 1
        return TOP(self, *a)

    def plain(*a):
        counts["plain"] += 1
        return plain_top(*a)

    monkeypatch.setattr(mask_rows, "_spliced", spliced)
    monkeypatch.setattr(TopByDebt, "top", top)
    monkeypatch.setattr(debt_rank, "plain_top", plain)
    r = run_scenario("eth-crash", seed=3, overrides=['run.duration="5h"', "agents.borrowers.accounts=1500"])
    monkeypatch.undo()
    events = r.events.to_csv(index=False, float_format="%r")
    return (
        events,
        r.timeseries.to_csv(index=False, float_format="%r"),
        counts["splice"],
        counts["top"] - counts["plain"],
    )


SPLICED, TOP = mask_rows._spliced, TopByDebt.top


def test_a_crash_run_is_the_same_with_the_shortcuts_everywhere_and_nowhere(monkeypatch: pytest.MonkeyPatch):
    fast = _crash(monkeypatch, True)
    plain = _crash(monkeypatch, False)
    assert fast[0] == plain[0] and fast[1] == plain[1]
    assert "liquidation" in plain[0]  # a run with liquidations, not two empty logs
    assert fast[2] > 100 and fast[3] > 100, "the shortcuts must run in the fast run"
    assert plain[2] == 0 and plain[3] == 0
