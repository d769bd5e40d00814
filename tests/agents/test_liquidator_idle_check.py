"""`_Idle.still`'s cheap checks (bytes instead of array comparisons, float quotients instead of numpy's under an error
state, one stacked product for the bound; issue 14) against the check as it was written first, kept here as the
reference: over the slow squeeze of test_liquidator_fast_paths, at every block and with the block's state perturbed
in each way the check must notice, both must carry the same verdicts (the same caps) or both decline."""

from __future__ import annotations

import math

import mesa
import numpy as np
import pytest
from test_liquidator_fast_paths import PRICES, _spec, _world, squeeze_run

from defistress.agents import liquidator
from defistress.agents.liquidator import GWEI, Liquidator, _Idle
from defistress.agents.tx import BlockView
from defistress.protocols.lending import CLOSE_FACTOR_HF_THRESHOLD, MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD

MARGIN = 1e-8  # _IDLE_MARGIN as the reference was written with it
ANCHOR = _Idle.anchor.__func__


def reference_snapshot(m, top, dj, view, liq, verdict, figures) -> dict:
    """What the first `_Idle.anchor` kept (arrays, not bytes)."""
    snap = {
        "inputs": _Idle._static_inputs(m, view, liq),
        "top": top.copy(),
        "coll": m.coll_scaled[top].copy(),
        "debt": m.debt_scaled[top].copy(),
        "prices": m.prices().tobytes(),
        "terms": (m.bonus.tobytes(), m.fee.tobytes(), m.lt.tobytes()),
        "liq_index": m.liq_index.copy(),
        "borrow_index": m.borrow_index.copy(),
        "ref": np.array([view.reference.get(a, 1.0) for a in m.assets]),
        "pair_rows": figures["rows"],
        "hf_high": figures["hf_high"],
        "thresholds": None,
        "proceeds": figures["proceeds"],
        "cost": figures["cost"],
        "rho_idx": dj,
        "verdict": verdict,
    }
    if "coll_usd" in figures:
        t = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        snap["thresholds"] = tuple(
            (float(v[v >= t].min(initial=np.inf)), float(v[~(v >= t)].max(initial=-np.inf)))
            for v in (figures["coll_usd"], figures["debt_usd"])
        )
    return snap


def reference_still(s: dict, m, top, view, liq):
    """The first `_Idle.still`, line for line, on a `reference_snapshot`."""
    if (
        top.shape != s["top"].shape
        or not bool((top == s["top"]).all())
        or m.prices().tobytes() != s["prices"]
        or m._coll_on is not None
        or m._emode is not None
        or _Idle._static_inputs(m, view, liq) != s["inputs"]
        or (m.bonus.tobytes(), m.fee.tobytes(), m.lt.tobytes()) != s["terms"]
        or not np.array_equal(m.coll_scaled[top], s["coll"])
        or not np.array_equal(m.debt_scaled[top], s["debt"])
        or not np.array_equal(m.health()[s["pair_rows"]] > CLOSE_FACTOR_HF_THRESHOLD, s["hf_high"])
    ):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.concatenate([m.liq_index / s["liq_index"], m.borrow_index / s["borrow_index"]])
    r_min, r_max = float(ratios.min()), float(ratios.max())
    if not (0.0 < r_min <= r_max < math.inf):
        return None
    t = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
    if s["thresholds"] is not None and not all(
        passed * r_min >= t * (1 + MARGIN) and failed * r_max <= t * (1 - MARGIN) for passed, failed in s["thresholds"]
    ):
        return None
    now = np.array([view.reference.get(a, 1.0) for a in m.assets])
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (now / s["ref"])[s["rho_idx"]]
    gas_usd = liq.gas * view.base_fee_gwei * GWEI * liq.eth_price()
    if not (np.all(rho > 0) and np.all(np.isfinite(rho)) and math.isfinite(gas_usd)):
        return None
    up = max(r_max, 1.0)
    p_hi, c_lo, c_hi = rho * up * s["proceeds"], rho * r_min * s["cost"], rho * r_max * s["cost"]
    size = p_hi + c_hi + abs(gas_usd)
    bound = p_hi - c_lo - gas_usd + 1e-9 * size + 1e-9 + MARGIN * (size + 1.0)
    if not bool(np.all(bound <= liq.spec.min_profit_usd)):
        return None
    return s["verdict"].scaled(r_max * (1 + MARGIN))


def _caps(v) -> dict | None:
    return None if v is None else dict(v._need)


def _perturbations(m, top, view):
    """Changes of the block's state, each of which one of the checks must see (a name and how to undo it)."""
    row = int(top[0])
    j = int(np.flatnonzero(m.debt_scaled[row])[0])
    out = []

    def scale(name, arr, idx, f):
        def do():
            old = arr[idx]
            arr[idx] = old * f
            return lambda: arr.__setitem__(idx, old)

        out.append((name, do))

    scale("a ranked row's debt", m.debt_scaled, (row, j), 1.0 + 1e-12)
    scale("a ranked row's collateral", m.coll_scaled, (row, int(np.argmax(m.coll_scaled[row]))), 1.0 - 1e-12)
    scale("a borrow index", m.borrow_index, j, 1.5)
    scale("a liquidity index", m.liq_index, 0, 0.5)
    scale("a protocol fee", m.fee, 0, 2.0)
    scale("the debt asset's reference price", view.reference, m.assets[j], 3.0)

    def gas_up():
        old = view.base_fee_gwei
        view.base_fee_gwei = old * 1e-3
        return lambda: setattr(view, "base_fee_gwei", old)

    out.append(("the base fee", gas_up))

    def negative_zero():  # -0.0 == 0.0: the reference carries, the bytes check screens again (never the reverse)
        k = np.flatnonzero(m.coll_scaled[row] == 0)
        if not k.size:
            return lambda: None
        m.coll_scaled[row, k[0]] = -0.0
        return lambda: m.coll_scaled.__setitem__((row, k[0]), 0.0)

    out.append(("-0.0 for 0.0", negative_zero))
    return out


@pytest.mark.parametrize("python_pairs", [64, 0])  # the bound in float arithmetic, or with numpy
@pytest.mark.parametrize("rule", ["aave-v3.0", "aave-v3.3"])
def test_the_cheap_check_carries_exactly_what_the_first_check_carried(
    monkeypatch: pytest.MonkeyPatch, rule: str, python_pairs: int
):
    monkeypatch.setattr(liquidator, "_IDLE_PYTHON_PAIRS", python_pairs)
    refs: dict[int, dict] = {}  # id(anchor) -> the reference snapshot taken with it
    compared = {"same": 0, "carried": 0, "declined_only_by_bytes": 0}

    def anchor(cls, m, top, ci, dj, view, liq, verdict, figures):
        a = ANCHOR(cls, m, top, ci, dj, view, liq, verdict, figures)
        if a is not None:
            refs[id(a)] = reference_snapshot(m, top, dj, view, liq, verdict, figures)
        return a

    def still(self, m, top, view, liq):
        s = refs[id(self)]
        assert (len(self.pairs) <= liquidator._IDLE_PYTHON_PAIRS) == (python_pairs > 0)  # the path meant
        for name, do in [("as it is", lambda: lambda: None), *_perturbations(m, top, view)]:
            undo = do()
            try:
                got, want = (
                    _caps(_Idle.still.__wrapped__(self, m, top, view, liq)),
                    _caps(reference_still(s, m, top, view, liq)),
                )
            finally:
                undo()
            if name == "-0.0 for 0.0" and got is None and want is not None:
                compared["declined_only_by_bytes"] += 1  # conservative: screens again
                continue
            assert got == want, name
            compared["same"] += 1
        v = _Idle.still.__wrapped__(self, m, top, view, liq)
        compared["carried"] += v is not None
        return v

    still.__wrapped__ = _Idle.still  # type: ignore[attr-defined]
    monkeypatch.setattr(_Idle, "anchor", classmethod(anchor))
    monkeypatch.setattr(_Idle, "still", still)
    squeeze_run(rule, 40.0)
    assert compared["carried"] >= 10, "the verdict was hardly carried: the comparison would not bite"
    assert compared["same"] >= 9 * compared["carried"]


def test_an_anchor_is_refused_where_bytes_or_float_quotients_would_not_be_the_reference_check():
    """Balances that are not finite (bytes would call two NaN equal) and indices or reference prices that are zero
    (the quotients would divide by zero): no anchor, so the plain screen runs."""
    env, m, pools, bots = _world(4, "aave-v3.0", 5e6, "capital")
    liq = Liquidator(mesa.Model(rng=0), bots[0][0], _spec(1e9), [m], pools, 500_000, lambda: PRICES["ETH"] * 0.8)
    ref = {s: p * (0.8 if s in ("ETH", "BTC") else 1.0) for s, p in PRICES.items()}
    top = np.flatnonzero(m.health() < 1.0)
    held = (m.coll_scaled[top] != 0)[:, :, None] & (m.debt_scaled[top] != 0)[:, None, :]
    r, ci, dj = np.nonzero(held)

    def anchored(view) -> bool:
        figures: dict = {}
        from defistress.agents.liquidator import _Screened

        verdict = _Screened(*liq._screen(m, top[r], ci, dj, view, env.ledger, np.full(4, np.inf), figures), dj)
        assert verdict.skip.all()  # a minimum profit of $1e9: every pair is skipped
        return _Idle.anchor(m, top, ci, dj, view, liq, verdict, figures) is not None

    assert anchored(BlockView(1, 12.0, 20.0, dict(ref)))
    m.liq_index[1] = 0.0
    assert not anchored(BlockView(1, 12.0, 20.0, dict(ref)))
    m.liq_index[1] = 1.0
    debt = m.assets[int(dj[0])]
    assert not anchored(BlockView(1, 12.0, 20.0, {**ref, debt: 0.0}))
    row = int(top[0])
    free = int(np.flatnonzero(m.coll_scaled[row] == 0)[0])
    m.coll_scaled[row, free] = np.nan  # a NaN balance of an asset the row does not use as collateral
    m._version += 1
    assert not anchored(BlockView(1, 12.0, 20.0, dict(ref)))


def _per_pair_skip(pairs, rho, up, r_min, r_max, gas_usd, mp) -> bool:
    """`_Idle.still`'s per-pair bound (the float loop), on (debt asset, proceeds, cost) pairs."""
    a, b, c = [r * up for r in rho], [r * r_min for r in rho], [r * r_max for r in rho]
    for j, p0, c0 in pairs:
        p_hi, c_lo, c_hi = a[j] * p0, b[j] * c0, c[j] * c0
        size = p_hi + c_hi + abs(gas_usd)
        if not p_hi - c_lo - gas_usd + 1e-9 * size + 1e-9 + MARGIN * (size + 1.0) <= mp:
            return False
    return True


def test_the_bound_by_debt_asset_passes_only_where_every_pair_passes():
    """`_groups_skip` (one bound per debt asset: the largest proceeds - cost, proceeds and cost of its pairs) against
    the per-pair bound, on random anchors with the minimum profit set around the pairs' own bounds (close calls both
    ways): wherever it passes, every pair's bound passes, and it does pass in most cases the pairs pass."""
    rng = np.random.default_rng(14)
    agree = both = 0
    for case in range(3000):
        n_groups = int(rng.integers(1, 4))
        n = int(rng.integers(1, 30))
        rho_idx = rng.integers(0, n_groups, n)
        rho_idx[:n_groups] = np.arange(n_groups)[: min(n, n_groups)]
        cost = rng.uniform(0, 1e5, n) * rng.choice([1e-3, 1.0, 10.0], n)
        proceeds = cost * rng.uniform(0.9, 1.1, n)
        groups = liquidator._group_bounds(rho_idx, proceeds, cost, n_groups)
        assert groups is not None
        drift = rng.choice([0.0, 1e-9, 1e-6, 1e-3])
        r_min = 1.0 + drift * rng.uniform()
        r_max = r_min + drift * rng.uniform()
        up = max(r_max, 1.0)
        rho = rng.uniform(0.5, 1.5, n_groups).tolist()
        gas = float(rng.uniform(0, 200))
        pairs = list(zip(rho_idx.tolist(), proceeds.tolist(), cost.tolist()))
        # the minimum profit just above or below the largest per-pair bound
        worst = max(
            rho[j] * up * p - rho[j] * r_min * c - gas + 1e-9 * (rho[j] * up * p + rho[j] * r_max * c + gas)
            for j, p, c in pairs
        )
        mp = worst + float(rng.choice([-1.0, 1.0])) * float(rng.choice([1e-9, 1e-3, 1.0, 100.0])) * (1 + abs(worst))
        fast = liquidator._groups_skip(groups, rho, up, r_min, r_max, gas, mp)
        slow = _per_pair_skip(pairs, rho, up, r_min, r_max, gas, mp)
        assert not fast or slow, case
        both += slow
        agree += fast and slow
    assert both >= 300 and agree >= 0.5 * both, (agree, both)


def test_the_bound_by_debt_asset_declines_figures_that_are_not_finite():
    rho_idx, cost = np.array([0, 0]), np.array([10.0, 20.0])
    assert liquidator._group_bounds(rho_idx, np.array([9.0, np.inf]), cost, 1) is None
    assert liquidator._group_bounds(rho_idx, np.array([9.0, np.nan]), cost, 1) is None
    assert liquidator._group_bounds(rho_idx, np.array([9.0, 25.0]), cost, 1) == [(0, 5.0, 25.0, 20.0)]
