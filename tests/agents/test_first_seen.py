"""The first-seen bookkeeping shared by liquidators (`agents.first_seen`, issue 14) against each liquidator keeping its
own, as `Liquidator.submit` kept it before: random looks over many blocks in which holders skip blocks, see a market
state of their own, have different latencies, and the book grows; every holder's ready rows must be the plain ones."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.agents import mask_rows
from defistress.agents.first_seen import FirstSeen, FirstSeenChain
from defistress.agents.mask_rows import MaskRows, spliced_entries


class Plain:
    """One liquidator's own bookkeeping (the code `Liquidator.submit` ran before the shared chains)."""

    def __init__(self) -> None:
        self.seen: np.ndarray | None = None
        self.watch: np.ndarray | None = None

    def ready(self, hf: np.ndarray, rows: np.ndarray, block: int, latency: int) -> np.ndarray:
        if self.seen is None or self.seen.size != hf.size:
            self.seen, self.watch = np.full(hf.size, -1, dtype=np.int64), None
        if self.watch is not None and self.watch.size:
            self.seen[self.watch[~(hf[self.watch] < 1.0)]] = -1
        first = self.seen[rows]
        fresh = first < 0
        first[fresh] = block
        self.seen[rows[fresh]] = block
        self.watch = rows
        return rows[block - first >= latency]


def _looks(seed: int, skip: float, own_state: float, blocks: int = 400):
    """Run holders with latencies 0, 1, 3 and 3 over `blocks` blocks; returns the number of looks whose ready rows
    differ from the plain bookkeeping's, the looks in which a holder shared another's chain, and the blocks in which
    the two holders of latency 3 had different plain ready rows (their histories really diverged)."""
    rng = np.random.default_rng(seed)
    latencies = [0, 1, 3, 3]
    shared, plain = [FirstSeen() for _ in latencies], [Plain() for _ in latencies]
    n, hf = 40, rng.uniform(0.9, 1.3, 40)
    wrong = adopted = diverged = 0
    for block in range(blocks):
        if block == blocks // 2:  # the book grows: every holder starts again from nothing
            n += 7
            hf = np.concatenate([hf, rng.uniform(0.9, 1.3, 7)])
        hf = np.clip(hf * np.exp(rng.normal(0.0, 0.03, n)), 0.5, 2.0)  # health drifts: spells start and end
        hf[rng.random(n) < 0.05] = 1.2  # some rows repay
        memo: dict = {}
        rows = np.flatnonzero(hf < 1.0)
        rows.flags.writeable = False  # the block's candidate rows, handed to every holder (as `_candidates` does)
        key = (hf.tobytes(), block)
        chains, plain_ready = [], {}
        for k, lat in enumerate(latencies):
            if rng.random() < skip:
                continue  # this holder does not look this block
            h, r, ck = hf, rows, key
            if rng.random() < own_state:  # the market changed before this holder looked: a state of its own
                h = hf.copy()
                h[rng.integers(0, n, 3)] = rng.uniform(0.8, 1.2, 3)
                r = np.flatnonzero(h < 1.0)
                ck = (h.tobytes(), block)
            elif rng.random() < own_state:  # the same state key, but candidate rows not from the block's memo (a
                r = rows[1:].copy()  # row under an external controller since: only the rows' identity tells)
            got = shared[k].ready("m", h, r, block, ck, lat, memo)
            want = plain[k].ready(h, r, block, lat)
            wrong += not np.array_equal(got, want)
            chain = shared[k].held["m"][0]
            adopted += any(c is chain for c in chains)
            chains.append(chain)
            plain_ready[k] = want.tolist()
        diverged += 2 in plain_ready and 3 in plain_ready and plain_ready[2] != plain_ready[3]
    return wrong, adopted, diverged


@pytest.mark.parametrize(
    "seed,skip,own_state", [(1, 0.0, 0.0), (2, 0.0, 0.1), (3, 0.1, 0.0), (4, 0.15, 0.15), (5, 0.3, 0.3)]
)
def test_shared_first_seen_gives_every_holder_the_rows_its_own_bookkeeping_gives(seed, skip, own_state):
    wrong, adopted, diverged = _looks(seed, skip, own_state)
    assert wrong == 0
    if skip == own_state == 0.0:
        assert adopted == 3 * 400  # every block the three later holders take the first one's look
        assert diverged == 0
    else:  # histories diverge and holders still share where they agree (each block until a fork, the growth block)
        assert diverged > 0 and adopted > 0


def test_holders_that_look_alike_share_one_array_and_ready_rows():
    """Three holders looking at the same states every block share one chain and, with the same latency, one ready
    array (the identity `Liquidator._ranked`'s block memo is looked up by)."""
    fs = [FirstSeen() for _ in range(3)]
    hf = np.array([0.9, 1.1, 0.95, 2.0])
    for block in range(5):
        memo: dict = {}
        rows = np.flatnonzero(hf < 1.0)
        out = [f.ready("m", hf, rows, block, (hf.tobytes(), block), 2, memo) for f in fs]
        assert out[0] is out[1] is out[2]
        assert fs[0].held["m"][0] is fs[1].held["m"][0] is fs[2].held["m"][0]
    assert out[0].tolist() == [0, 2]  # both unhealthy since block 0, seen for 4 >= 2 blocks


def test_a_holder_one_behind_with_a_look_of_its_own_gets_the_state_before_the_shared_look():
    """Holder A looks (and advances the chain in place); holder B then sees a different market state: B's copy must be
    rebuilt from the undo, so a row A saw first this block is not first seen by B then."""
    a, b = FirstSeen(), FirstSeen()
    hf = np.array([0.9, 1.1, 1.2])
    memo: dict = {}
    rows = np.flatnonzero(hf < 1.0)
    key = (hf.tobytes(), 0)
    assert a.ready("m", hf, rows, 0, key, 0, memo).tolist() == [0]
    assert b.ready("m", hf, rows, 0, key, 0, memo).tolist() == [0]
    memo = {}
    hf1 = np.array([0.9, 0.8, 1.2])  # row 1 falls at block 1 for A
    rows1 = np.flatnonzero(hf1 < 1.0)
    assert a.ready("m", hf1, rows1, 1, (hf1.tobytes(), 1), 1, memo).tolist() == [0]
    hf2 = np.array([0.9, 1.1, 1.2])  # B sees row 1 healthy
    assert b.ready("m", hf2, np.flatnonzero(hf2 < 1.0), 1, (hf2.tobytes(), 1), 1, memo).tolist() == [0]
    memo = {}
    hf3 = np.array([0.9, 0.8, 1.2])  # block 2: both see row 1 unhealthy; A since block 1, B since block 2
    rows3 = np.flatnonzero(hf3 < 1.0)
    key3 = (hf3.tobytes(), 2)
    assert a.ready("m", hf3, rows3, 2, key3, 1, memo).tolist() == [0, 1]
    assert b.ready("m", hf3, rows3, 2, key3, 1, memo).tolist() == [0]


def test_the_same_rows_again_are_not_restamped_unless_their_block_reads_as_unseen():
    """The same unhealthy rows look after look write nothing (the shortcut), except where the block written was
    negative, which the plain bookkeeping reads as unseen and stamps again: the shortcut must do the same."""
    fs, plain = FirstSeen(), Plain()
    hf = np.array([0.9, 1.1, 0.95])
    rows = np.flatnonzero(hf < 1.0)
    for block in range(-3, 4):
        got = fs.ready("m", hf, rows, block, (hf.tobytes(), block), 2, {})
        assert got.tolist() == plain.ready(hf, rows, block, 2).tolist()
    assert got.tolist() == [0, 2]  # stamped again at block 0, the first block >= 0: ready two blocks later


def test_ready_rows_carried_while_the_same_rows_stay_unhealthy_are_the_plain_ones():
    """The same unhealthy rows look after look (most blocks of a small book's crash): once every row is ready for a
    latency the last look's ready array is handed out again (the same object), and it is the plain bookkeeping's
    rows every block, also when a row recovers, a new one turns unhealthy or a holder skips blocks."""
    rng = np.random.default_rng(9)
    latencies = [0, 1, 3, 3]
    shared = [FirstSeen() for _ in latencies]
    plain = [Plain() for _ in latencies]
    hf = np.array([0.9, 1.1, 0.95, 2.0, 0.97, 1.3])
    last: dict[int, np.ndarray] = {}
    carried = 0
    for block in range(60):
        if block in (20, 40):  # a row recovers, another turns unhealthy
            hf[[0, 1]] = hf[[1, 0]]
        memo: dict = {}
        rows = np.flatnonzero(hf < 1.0)
        rows.flags.writeable = False
        for k, lat in enumerate(latencies):
            if k == 3 and rng.random() < 0.3:
                continue  # a holder that skips some blocks
            got = shared[k].ready("m", hf, rows, block, (hf.tobytes(), block), lat, memo)
            want = plain[k].ready(hf, rows, block, lat)
            assert got.dtype == want.dtype and got.tolist() == want.tolist(), (block, k)
            carried += last.get(k) is got
            last[k] = got
    assert carried >= 100, carried


def _looks_with_edits(seed: int, skip: float, own_state: float, blocks: int = 300) -> tuple[int, dict[str, int]]:
    """As `_looks`, but the block's candidate rows come from one `MaskRows` (at every size) with its `delta`, as
    `Liquidator._candidates` hands them out, and some holders' own looks from a `MaskRows` of their own; health moves
    a few rows a block (the edits path), sometimes many (a fresh compaction), and blocks start below zero. Returns the
    looks whose ready rows differ from the plain bookkeeping's and how often each path ran."""
    rng = np.random.default_rng(seed)
    latencies = [0, 1, 3, 3]
    shared, plain = [FirstSeen() for _ in latencies], [Plain() for _ in latencies]
    block_sel, own_sel = MaskRows(), [MaskRows() for _ in latencies]
    n, hf = 60, rng.uniform(0.9, 1.3, 60)
    wrong = 0
    for block in range(-5, blocks):
        if block == blocks // 2:  # the book grows: every holder starts again from nothing
            n += 7
            hf = np.concatenate([hf, rng.uniform(0.9, 1.3, 7)])
        if rng.random() < 0.1:  # a broad move: many rows change side
            hf = np.clip(hf * np.exp(rng.normal(0.0, 0.05, n)), 0.5, 2.0)
        else:  # a few rows move (a liquidation, a repayment, a new unhealthy row)
            at = rng.integers(0, n, int(rng.integers(0, 4)))
            hf[at] = rng.uniform(0.85, 1.15, at.size)
        if rng.random() < 0.02:
            hf[int(rng.integers(0, n))] = np.nan  # an undefined health factor: not unhealthy
        memo: dict = {}
        rows = block_sel.select(hf < 1.0)
        delta = block_sel.delta
        key = (hf.tobytes(), block)
        for k, lat in enumerate(latencies):
            if rng.random() < skip:
                continue
            h, r, d, ck = hf, rows, delta, key
            if rng.random() < own_state:  # a market state of its own, its rows from a selection of its own
                h = hf.copy()
                h[rng.integers(0, n, 2)] = rng.uniform(0.8, 1.2, 2)
                r = own_sel[k].select(h < 1.0)
                d, ck = own_sel[k].delta, (h.tobytes(), block)
            got = shared[k].ready("m", h, r, block, ck, lat, memo, d)
            want = plain[k].ready(h, r, block, lat)
            wrong += not (got.dtype == want.dtype and np.array_equal(got, want))
            assert not got.flags.writeable
    return wrong, dict(COUNTS)


COUNTS: dict[str, int] = {}


@pytest.mark.parametrize(
    "seed,skip,own_state", [(11, 0.0, 0.0), (12, 0.0, 0.1), (13, 0.1, 0.0), (14, 0.15, 0.15), (15, 0.3, 0.3)]
)
def test_first_seen_updated_at_the_selection_s_edits_is_the_plain_bookkeeping(seed, skip, own_state, monkeypatch):
    monkeypatch.setattr(mask_rows, "_MIN_SIZE", 0)  # the selection's edits at every size (the engine's books are large)
    COUNTS.clear()
    edits, ready = FirstSeenChain._advance_edits, FirstSeen.ready

    def counted_edits(self, rows, block, look, gone, new, before):
        COUNTS["edits"] = COUNTS.get("edits", 0) + 1
        COUNTS["added"] = COUNTS.get("added", 0) + int(new.size > 0)
        COUNTS["dropped"] = COUNTS.get("dropped", 0) + int(gone.size > 0)
        return edits(self, rows, block, look, gone, new, before)

    def counted_ready(self, market_id, hf, rows, *a):
        out = ready(self, market_id, hf, rows, *a)
        COUNTS["all ready"] = COUNTS.get("all ready", 0) + int(out is rows)
        return out

    first = FirstSeenChain._first

    def counted_first(self):  # the first-seen blocks an edit left to be taken from `seen` when read
        COUNTS["taken from seen"] = COUNTS.get("taken from seen", 0) + int(self.first is None)
        return first(self)

    monkeypatch.setattr(FirstSeenChain, "_advance_edits", counted_edits)
    monkeypatch.setattr(FirstSeen, "ready", counted_ready)
    monkeypatch.setattr(FirstSeenChain, "_first", counted_first)
    wrong, counts = _looks_with_edits(seed, skip, own_state)
    assert wrong == 0
    assert counts["edits"] > 100 and counts["added"] > 30 and counts["dropped"] > 30, counts
    assert counts.get("taken from seen", 0) > 30, counts
    assert counts["all ready"] > 100, counts


def test_spliced_entries_are_the_entries_of_the_edited_keys():
    """`spliced_entries` (as first-seen calls it: one fill for the added keys) against a dict of key -> entry rebuilt
    and read in key order, on random edits (empty keys, edits at both ends, an insertion just below a removed key)."""
    rng = np.random.default_rng(21)
    cases = 0
    for _ in range(400):
        keys = np.unique(rng.integers(0, 60, int(rng.integers(0, 25))))
        values = rng.integers(-3, 50, keys.size)
        gone = keys[rng.random(keys.size) < 0.3]
        others = np.setdiff1d(np.arange(-2, 63), keys)
        new = np.sort(rng.choice(others, int(rng.integers(0, 5)), replace=False))
        want = dict(zip(keys.tolist(), values.tolist()))
        for g in gone.tolist():
            del want[g]
        want.update(dict.fromkeys(new.tolist(), 99))
        got = spliced_entries(keys, values, gone, new, np.full(new.size, 99, dtype=values.dtype))
        assert got.dtype == values.dtype and got.tolist() == [want[k] for k in sorted(want)]
        cases += bool(gone.size and new.size)
    assert cases > 100
