"""`Liquidator._hopeless` for a liquidator whose capital is below some screened row's cap (issue 14): the shared
verdict with the rows it binds left to `_plan` (`_within_capital`), against the screen of its own figures it replaced,
kept here as the reference. Rows it does not bind: the same skips, bit for bit; caps: the same bits; rows it binds:
not skipped (unless nothing is available), so `_plan` decides them; and every block submits and executes the same
transactions as with the reference, on the crafted books of test_liquidator_fast_paths and on one account whose cap
the capital meets exactly or misses by one ulp either side."""

from __future__ import annotations

import mesa
import numpy as np
import pytest
from test_liquidator_fast_paths import CASES, PRICES, _run, _spec, _world, one_binding_account

from defistress.agents import liquidator
from defistress.agents.liquidator import Liquidator, _Screened, _within_capital
from defistress.agents.tx import BlockView
from defistress.protocols.base import Revert

HOPELESS, WITHIN = Liquidator._hopeless, _within_capital  # as shipped


def reference_hopeless(self, m, ready, coll_idx, debt_idx, view, ledger, inputs=None):
    """`_hopeless` as it was: a liquidator whose capital binds screens its own figures."""
    avail = [self.funding.available(ledger, self.holder, s, 0.0) for s in m.assets]
    if self.funding.mode == "capital" and self._screens(m) and ready.size:
        shared = _Screened(
            *self._screen(m, ready, coll_idx, debt_idx, view, ledger, np.full(len(avail), np.inf)), debt_idx
        )
        if not shared.covered_by(avail):
            skip, cover, plain = self._screen(m, ready, coll_idx, debt_idx, view, ledger, np.array(avail))
            return skip | (plain & (np.array(avail)[debt_idx] <= 0)), cover
    return HOPELESS(self, m, ready, coll_idx, debt_idx, view, ledger, inputs)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _verdicts(liq, m, led, view, avail_usd: float):
    """(new skip, new cap, reference skip, reference cap, rows bound) for every unhealthy row with its pairs."""
    rows = np.flatnonzero(m.health() < 1.0)
    ci, dj = liq._pairs(m, rows, led)
    inf = np.full(len(m.assets), np.inf)
    shared = _Screened(*liq._screen(m, rows, ci, dj, view, led, inf), dj)
    avail = np.array([avail_usd / PRICES[s] for s in m.assets])
    skip, cap = _within_capital(shared, avail[dj])
    ref_skip, ref_cap, plain = liq._screen(m, rows, ci, dj, view, led, avail)
    ref_skip = ref_skip | (plain & (avail[dj] <= 0))
    binds = plain & ~(avail[dj] >= shared.cover)
    return skip, cap, ref_skip, ref_cap, binds, plain


@pytest.mark.parametrize("rule", ["aave-v3.0", "aave-v3.3"])
def test_rows_the_capital_covers_keep_the_own_screens_verdict_and_bound_rows_are_planned(rule: str):
    bound = covered = 0
    for seed in (1, 2, 3):
        env, m, pools, bots = _world(seed, rule, 5e6, "capital")
        liq = Liquidator(mesa.Model(rng=0), bots[0][0], _spec(0.0), [m], pools, 500_000, lambda: 1280.0)
        ref = {s: p * (0.8 if s in ("ETH", "BTC") else 1.0) for s, p in PRICES.items()}
        for avail_usd in (0.0, 50.0, 400.0, 3_000.0, 1e9):
            for base_fee in (1.0, 60.0):
                view = BlockView(5, 60.0, base_fee, ref)
                skip, cap, ref_skip, ref_cap, binds, plain = _verdicts(liq, m, env.ledger, view, avail_usd)
                assert _same(cap, ref_cap)
                assert _same(skip[~binds], ref_skip[~binds])
                assert skip[binds].tolist() == [avail_usd <= 0] * int(binds.sum())
                bound += int((binds & ref_skip).sum())
                covered += int((~binds & plain).sum())
    assert bound > 5 and covered > 5, "the cases would not bite"


def _block(capital: float, min_profit: float, reference: bool, monkeypatch) -> tuple[list, list[str]]:
    monkeypatch.setattr(Liquidator, "_hopeless", reference_hopeless if reference else HOPELESS)
    env, m, pool = one_binding_account(capital)
    liq = Liquidator(mesa.Model(rng=0), "bot", _spec(min_profit), [m], [pool], 500_000, lambda: 1600.0)
    sent = liq.submit(BlockView(5, 60.0, 1.0, {"ETH": 1600.0, "USDC": 1.0}))
    log = [(tx.sender, tx.label, tx.gas, tx.priority_fee_gwei) for tx in sent]
    for tx in sent:
        try:
            tx.action()
        except Revert:
            log.append(("reverted", tx.sender))
    return log, [repr(e) for e in env.events]


def test_capital_at_the_cap_and_one_ulp_either_side_decides_as_the_reference(monkeypatch: pytest.MonkeyPatch):
    cap = 100_000.0
    env, m, pool = one_binding_account(cap)
    liq = Liquidator(mesa.Model(rng=0), "bot", _spec(0.0), [m], [pool], 500_000, lambda: 1600.0)
    rows = np.array([0])
    shared = liq._screen(m, rows, np.array([0]), np.array([1]), BlockView(5, 60.0, 1.0, {}), env.ledger, [np.inf] * 2)
    assert shared[1].tolist() == [pytest.approx(cap)]
    cap = float(shared[1][0])
    liquidated = 0
    for capital in (cap, np.nextafter(cap, 0.0), np.nextafter(cap, np.inf), 20_000.0, 2_000.0, 1.0, 0.0):
        for min_profit in (0.0, 3_000.0, 1e9):
            got = _block(float(capital), min_profit, False, monkeypatch)
            want = _block(float(capital), min_profit, True, monkeypatch)
            assert got == want
            liquidated += any(e.startswith("Liquidated(") for e in got[1])
    assert liquidated >= 2, "the cases would not bite"


@pytest.mark.parametrize("seed,rule,capital,funding,min_profit,base_fee", [c for c in CASES if c[2] in (400.0, 5e6)])
def test_every_block_submits_and_executes_what_the_own_screen_did(
    monkeypatch: pytest.MonkeyPatch, seed, rule, capital, funding, min_profit, base_fee
):
    got = _run(seed, rule, capital, funding, min_profit, base_fee, True, monkeypatch)
    monkeypatch.setattr(Liquidator, "_hopeless", reference_hopeless)
    want = _run(seed, rule, capital, funding, min_profit, base_fee, True, monkeypatch)
    assert got[:2] == want[:2]


def test_the_blocks_above_leave_bound_rows_to_plan_and_some_pay(monkeypatch: pytest.MonkeyPatch):
    """The comparison above bites: in some of its blocks a liquidator's capital binds rows the reference's own screen
    skipped, and in some it binds a row that is liquidated."""
    bound: list[int] = []

    def watched(hit, avail):
        bound.append(int((hit.plain & ~(avail >= hit.cover)).sum()))
        return WITHIN(hit, avail)

    monkeypatch.setattr(liquidator, "_within_capital", watched)
    liquidated = 0
    for seed, rule, capital, funding, min_profit, base_fee in CASES:
        if capital == 400.0:
            events = _run(seed, rule, capital, funding, min_profit, base_fee, True, monkeypatch)[1]
            liquidated += any(e.startswith("Liquidated(") for e in events)
    assert sum(b > 0 for b in bound) > 5 and liquidated > 3
