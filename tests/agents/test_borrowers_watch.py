"""`BorrowerPopulation.submit`'s bookkeeping (issue 14: the attentive rows' alarm levels kept contiguous, nothing
written when the rows alarmed are the last look's) against the bookkeeping as first written, kept here as the
reference: random health paths over many blocks, with repayments resetting accounts between blocks, must give the
same repayment batches and the same `below_since` every block."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from defistress.agents import borrowers, mask_rows
from defistress.agents.borrowers import BorrowerPopulation
from defistress.agents.tx import BlockView


class Market:
    def __init__(self, hf: np.ndarray) -> None:
        self.hf = hf

    def health(self) -> np.ndarray:
        return self.hf


def reference_ready(pop: dict, hf: np.ndarray, block: int) -> np.ndarray:
    """The first `submit`'s rows ready to repay (before batching), on a dict of the population's arrays."""
    attentive, alarm, accounts, bs = pop["attentive"], pop["alarm"], pop["accounts"], pop["below_since"]
    if not attentive.any():
        return np.zeros(0, dtype=np.int64)
    local = np.flatnonzero(attentive)
    alarmed = local[hf[accounts[local]] < alarm[local]]
    watch = pop["watch"]
    if watch.size:
        bs[watch[~(hf[accounts[watch]] < alarm[watch])]] = -1
    first = bs[alarmed]
    fresh = first < 0
    first[fresh] = block
    bs[alarmed[fresh]] = block
    pop["watch"] = alarmed
    return alarmed[(block - first >= pop["delay"]) & (pop["wallet"][alarmed] > 0)]


def reference_state(pop: BorrowerPopulation) -> dict:
    """The reference bookkeeping's state of `pop` (`reference_ready`'s `pop`): its arrays, a copy of `below_since`
    (the reference writes its own), no row watched."""
    return {
        "attentive": pop.attentive,
        "alarm": pop.alarm,
        "accounts": pop.accounts,
        "below_since": pop.below_since.copy(),
        "wallet": pop.wallet,
        "delay": pop.delay_blocks,
        "watch": np.zeros(0, dtype=np.int64),
    }


def _population(rng: np.random.Generator, n: int, attentive_share: float) -> BorrowerPopulation:
    pop = object.__new__(BorrowerPopulation)  # no Mesa model or lending market: submit reads only these
    offset = 5  # the population's rows in the market: 5 .. 5 + n - 1
    pop.market = Market(rng.uniform(0.9, 1.5, n + offset))
    pop.accounts = np.arange(offset, offset + n)
    pop.accounts.flags.writeable = False
    pop.attentive = rng.random(n) < attentive_share
    pop.attentive.flags.writeable = False
    pop.alarm = rng.uniform(1.0, 1.2, n)
    pop.alarm.flags.writeable = False
    pop.below_since = np.full(n, -1, dtype=np.int64)
    pop.wallet = rng.uniform(0.0, 1.0, n) * (rng.random(n) < 0.9)
    pop.delay_blocks = 3
    pop._watch = np.zeros(0, dtype=np.int64)
    pop.holder = "pop"
    pop.spec = SimpleNamespace(max_users_per_block=10**9, users_per_tx=10**9, repay_gas=1, priority_fee_gwei=1.0)
    return pop


@pytest.mark.parametrize(
    "seed,attentive_share,limit", [(1, 0.33, 10**9), (2, 0.9, 10**9), (3, 0.0, 10**9), (4, 0.9, 3), (5, 0.5, 1)]
)
def test_the_batches_and_first_alarmed_blocks_are_the_reference_ones(
    seed: int, attentive_share: float, limit: int, monkeypatch: pytest.MonkeyPatch
):
    """`limit`: users per block (the ready rows past it wait; `submit` tests a leading slice first). The sizes below
    which the plain compaction is used are lowered so that the small book takes every path."""
    monkeypatch.setattr(mask_rows, "_MIN_SIZE", 0)
    monkeypatch.setattr(borrowers, "_READY_HEAD", 2)
    rng = np.random.default_rng(seed)
    pop = _population(rng, 60 if limit > 60 else 600, attentive_share)
    pop.spec.max_users_per_block, pop.spec.users_per_tx = limit, 2
    ref = reference_state(pop)
    n = pop.accounts.size
    hf = pop.market.hf
    same_rows = changed_rows = acted = 0
    prev: list = []
    for block in range(300):
        if block in (100, 200):  # new alarm levels, then who is attentive (new arrays, the second one writeable)
            key = "alarm" if block == 100 else "attentive"
            new = rng.uniform(1.0, 1.2, n) if block == 100 else rng.random(n) < attentive_share
            setattr(pop, key, new)
            ref[key] = new
            if block == 100:
                new.flags.writeable = False
        if rng.random() < 0.7:  # most blocks nothing crosses an alarm level; some blocks health moves
            hf *= np.exp(rng.normal(0.0, 0.02, hf.size))
        txs = pop.submit(BlockView(block, 12.0 * block, 1.0, {}))
        want = reference_ready(ref, hf, block)[:limit]
        got = np.concatenate([tx.action.args[0] for tx in txs]) if txs else np.zeros(0, dtype=np.int64)
        assert got.tolist() == want.tolist()
        assert pop.below_since.tolist() == ref["below_since"].tolist()
        if pop._watch.size and block:
            same_rows += pop._watch.tolist() == prev
            changed_rows += pop._watch.tolist() != prev
        prev = pop._watch.tolist()
        acted += bool(txs)
        if txs and rng.random() < 0.5:  # a repayment: the rows repaid are reset (as `_repay` does) in both
            paid = got[rng.random(got.size) < 0.5]
            pop._reset(paid)  # as `_repay` does (`below_since` is read-only between looks)
            ref["below_since"][paid] = -1
            hf[pop.accounts[paid]] *= 1.01
    if attentive_share:
        assert same_rows > 20 and changed_rows > 20 and acted > 10, "the paths would not bite"
    else:
        assert acted == 0
