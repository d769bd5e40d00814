"""The per-account baselines of benchmarks/ (naive_model.py) do the engine's work: on a small eth-crash through
the crash they land on the engine's liquidations (count and liquidated USD) within the stated tolerance, and the
Mesa-agent and plain-object versions, which differ only in the account class, agree exactly. No timing here
(speed goes to benchmarks/bench_model.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from defistress.protocols.events import BadDebt, Liquidated
from defistress.scenarios.loader import load
from defistress.sim.engine.model import StressModel

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
OVERRIDES = ["agents.borrowers.accounts=400", "run.duration=4h"]  # the shock starts at 2 h


def _naive():
    spec = importlib.util.spec_from_file_location("bench_naive_model", BENCH / "naive_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def runs():
    naive = _naive()
    out = {"engine": StressModel(load("eth-crash", OVERRIDES), seed=2)}
    out["mesa"] = naive.MesaAccountModel("eth-crash", seed=2, overrides=OVERRIDES)
    out["plain"] = naive.PlainAccountModel("eth-crash", seed=2, overrides=OVERRIDES)
    for m in out.values():
        m.run()
    return naive, out


def test_the_per_account_models_hold_one_object_per_account(runs):
    naive, out = runs
    import mesa

    for key, cls in (("mesa", naive.MesaAccount), ("plain", naive.PlainAccount)):
        market = out[key].protocols["lend"]
        assert len(market.accounts) == 400 and all(type(a) is cls for a in market.accounts)
        assert len({id(a) for a in market.accounts}) == 400
    assert all(isinstance(a, mesa.Agent) for a in out["mesa"].protocols["lend"].accounts)
    assert not any(isinstance(a, mesa.Agent) for a in out["plain"].protocols["lend"].accounts)
    assert not any(isinstance(getattr(a, "coll", None), np.ndarray) for a in out["plain"].protocols["lend"].accounts)


def test_the_run_had_liquidations_to_compare(runs):
    _, out = runs
    n, usd = _liquidations(out["engine"])
    assert n >= 20 and usd > 1e5  # the crash bites at this size, so the comparison is not 0 == 0


def test_liquidations_land_on_the_engines_within_the_stated_tolerance(runs):
    naive, out = runs
    eng = _liquidations(out["engine"])
    for key in ("mesa", "plain"):
        got = _liquidations(out[key])
        assert naive.agree(eng, got), (key, eng, got)
        # the tolerance is a bound, not the observation: at this size they match to rounding
        assert got[0] == eng[0] and got[1] == pytest.approx(eng[1], rel=1e-9)


def test_the_two_per_account_models_agree_event_for_event(runs):
    _, out = runs
    a, b = (
        [
            (type(e).__name__, e.block, getattr(e, "account", None), getattr(e, "debt_repaid", None))
            for e in m.env.events
        ]
        for m in (out["mesa"], out["plain"])
    )
    assert a == b


def test_per_account_events_match_the_engine_account_by_account(runs):
    _, out = runs
    key = lambda m: [
        (type(e).__name__, e.block, e.account) for e in m.env.events if isinstance(e, (Liquidated, BadDebt))
    ]  # noqa: E731
    assert key(out["plain"]) == key(out["engine"])


def test_the_per_account_models_keep_the_ledger_and_pay_gas(runs):
    _, out = runs
    for key in ("mesa", "plain"):
        m = out[key]
        assert m.env.ledger.conservation_errors() == {}
        assert sum(r["agent_gas"] for r in m.recorder.rows) > 0  # liquidations and repayments went through blocks
        assert m.env.ledger.balance("block-builder", "ETH") > 0  # and paid tips
        eng_pool = out["engine"].pools["uni-eth-usdc"].reserves()
        assert m.pools["uni-eth-usdc"].reserves() == pytest.approx(eng_pool, rel=1e-9)


def test_the_agreement_rule_rejects_a_different_outcome():
    naive = _naive()
    assert naive.agree((1000, 1e7), (1009, 1.009e7))
    assert not naive.agree((1000, 1e7), (1020, 1e7))
    assert not naive.agree((1000, 1e7), (1000, 1.02e7))
    assert naive.agree((10, 1e5), (12, 1e5)) and not naive.agree((10, 1e5), (13, 1e5))


def _liquidations(m) -> tuple[int, float]:
    evs = [e for e in m.env.events if isinstance(e, Liquidated)]
    return len(evs), sum(e.debt_repaid_usd for e in evs)
