"""Liquidators of lending markets: capital, gas budget, minimum profit, latency; they compete in blocks.

Each block a liquidator looks at accounts that have been liquidatable for at least its latency, picks for each
the collateral / debt pair that pays most at oracle prices (the market's `best_liquidation_pairs`: close factor,
collateral balance, bonus and fee of the account's terms), previews the liquidation, values the seized
collateral at what the venue would pay for it, and submits a transaction when the profit after gas beats its
minimum. Its priority fee bids a share of the expected profit (a gas war). The transaction liquidates and sells
the seized collateral in the same call (an atomic liquidate-and-swap, as MEV liquidators do); if another
liquidator got there first the call reverts and the gas is lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import mesa
import numpy as np

from defistress.agents.debt_rank import TopByDebt
from defistress.agents.first_seen import FirstSeen
from defistress.agents.funding import CAPITAL, Funding
from defistress.agents.mask_rows import MaskRows
from defistress.agents.single_pairs import single_pairs
from defistress.agents.tx import GAS_REFILL_SHARE, GWEI, BlockView, Tx, refill_gas
from defistress.protocols.amm import ConstantProductPool
from defistress.protocols.lending import (
    CLOSE_FACTOR_HF_THRESHOLD,
    DEFAULT_LIQUIDATION_CLOSE_FACTOR,
    MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD,
    LendingMarket,
)

#: key of the liquidators' per-block shared figures in `BlockView.extra`
_MEMO = "liquidator-shared"


class _Screened:
    """`Liquidator._screen`'s verdict on a block's rows, shared by the liquidators of the block, with what each needs
    to check its own capital against it in a few scalar comparisons instead of array operations:
    `covered_by(avail)` is `np.all(avail[debt_idx][plain] >= cover[plain])` and `funded_by(avail)` says that
    `plain & (avail[debt_idx] <= 0)` is all False, for `avail` (A,) tokens available per asset."""

    __slots__ = ("skip", "cover", "plain", "_need", "_undefined", "_used")
    skip: np.ndarray
    cover: np.ndarray | None  # None in a verdict carried to a later block (`scaled`)
    plain: np.ndarray
    _need: dict[int, float]
    _undefined: bool
    _used: list[int]

    def __init__(self, skip: np.ndarray, cover: np.ndarray, plain: np.ndarray, debt_idx: np.ndarray) -> None:
        for a in (skip, cover, plain):
            a.flags.writeable = False
        self.skip, self.cover, self.plain = skip, cover, plain
        need: dict[int, float] = {}  # debt asset -> largest cap of a screened row repaid in it, tokens
        caps = cover[plain].tolist()
        for j, c in zip(debt_idx[plain].tolist(), caps):
            if not c <= need.get(j, -math.inf):
                need[j] = c
        self._need = need
        self._undefined = any(c != c for c in caps)  # a NaN cap: `avail >= cap` is False
        self._used = sorted(need)

    def covered_by(self, avail: list[float]) -> bool:
        return not self._undefined and all(avail[j] >= c for j, c in self._need.items())

    def funded_by(self, avail: list[float]) -> bool:
        return not any(avail[j] <= 0 for j in self._used)

    def scaled(self, factor: float) -> _Screened:
        """The same verdict with every cap multiplied by `factor` (an upper bound on the caps some blocks later)."""
        out = object.__new__(_Screened)
        out.skip, out.cover, out.plain, out._undefined, out._used = (
            self.skip,
            None,
            self.plain,
            self._undefined,
            self._used,
        )
        out._need = {j: c * factor for j, c in self._need.items()}
        return out


#: relative margin the carried-over verdict keeps beyond the screen's own 1e-9 slack, far above float rounding
_IDLE_MARGIN = 1e-8
#: up to this many screened pairs `_Idle.still` bounds them in float arithmetic, above with numpy (the same operations)
_IDLE_PYTHON_PAIRS = 64


def _group_bounds(
    rho_idx: np.ndarray, proceeds: np.ndarray, cost: np.ndarray, n_groups: int
) -> list[tuple[int, float, float, float]] | None:
    """Per debt asset g of an anchor's screened pairs: (g, max(P0 - C0), max P0, max C0), the pairs' proceeds P0
    and cost C0 (USD) as floats, for `_groups_skip`; None unless every figure is finite."""
    if not (np.isfinite(proceeds).all() and np.isfinite(cost).all()):
        return None
    out = []
    for g in range(n_groups):
        sel = rho_idx == g
        if sel.any():
            p0, c0 = proceeds[sel], cost[sel]
            out.append((g, float((p0 - c0).max()), float(p0.max()), float(c0.max())))
    return out


def _groups_skip(
    groups: list[tuple[int, float, float, float]],
    rho: list[float],
    up: float,
    r_min: float,
    r_max: float,
    gas_usd: float,
    min_profit: float,
) -> bool:
    """A bound of `_Idle.still`'s per-pair bounds by one figure per debt asset: True only if every pair's bound
    passes, so the verdict is the same as the per-pair check's, at the cost of a few pairs (issue 14).

    For a pair (P0, C0) of debt asset g with rho = rho[g] > 0 and up >= r_max >= r_min > 0, in exact arithmetic:
    rho up P0 - rho r_min C0 = rho (up (P0 - C0) + (up - r_min) C0) <= rho up D + rho (up - r_min) C with
    D = max (P0 - C0), C = max C0 over the asset's pairs, and the pair's size rho up P0 + rho r_max C0 + |gas| is at
    most S = rho up P + rho r_max C + |gas| (P = max P0). So the pair's bound is at most
    F = rho up D + rho (up - r_min) C - gas + 1e-9 S + 1e-9 + margin (S + 1). This checks F + margin (S + 1) <= the
    minimum profit: the extra margin (1e-8 of the amounts) is far above the rounding of F here and of the pair's
    bound there (a few ulps of S), so if it passes every pair's bound passes as `still` computes it."""
    g_abs = abs(gas_usd)
    slack = up - r_min  # >= 0: up >= r_min, and float subtraction keeps the sign
    for g, d, p, c in groups:
        r = rho[g]
        size = r * up * p + r * r_max * c + g_abs
        bound = r * up * d + r * slack * c - gas_usd + 1e-9 * size + 1e-9 + 2.0 * _IDLE_MARGIN * (size + 1.0)
        if not bound <= min_profit:  # NaN: no
            return False
    return True


def _one_pair_each(r: np.ndarray, ci: np.ndarray, dj: np.ndarray, coll_idx: np.ndarray, debt_idx: np.ndarray) -> bool:
    """Whether the pairs screened (`r`, `ci`, `dj`: row position, collateral and debt index of each) are one per row,
    row k's the k-th, and that pair is (`coll_idx[k]`, `debt_idx[k]`) for every row: then the screen's figures per pair
    are the figures per row of the pairs given, in the same order (`_pair_figures`' gather would copy them as they
    are: every row has a pair, each found at its own position)."""
    n = coll_idx.size
    return (
        r.size == n
        and ci.size == n
        and dj.size == n
        and bool((ci == coll_idx).all())
        and bool((dj == debt_idx).all())
        and bool((r == np.arange(n)).all())
    )


def _within_capital(hit: _Screened, avail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`Liquidator._hopeless`'s (skip, cap) for a liquidator whose capital `avail` (tokens of each row's debt asset) is
    below some screened row's cap, from the shared verdict `hit` (no capital limit) without screening again (issue 14:
    at 100,000 accounts a liquidator screened its own figures in a third of the blocks, for two or three rows).

    A screened row whose cap the capital covers (`avail >= cap`) has the shared figures: `_screen` is elementwise and
    its repayment `min(avail, cap)` is the cap, as `min(inf, cap)` is (if the two are equal, so are their values,
    and where both are zeros of either sign the row is skipped by `avail <= 0` either way); only that test is added.
    A row whose cap it does not cover (or an undefined cap) is not skipped: `submit` then plans it, and `_plan`, which
    a skip only stands in for, decides it exactly, so the transactions are the same. The caps do not depend on the
    capital: the shared ones."""
    cover = hit.cover
    assert cover is not None  # a verdict screened this block (a carried one has no caps and is not shared here)
    binds = hit.plain & ~(avail >= cover)
    return (hit.skip & ~binds) | (hit.plain & (avail <= 0)), cover


class _Idle:
    """A block-wide skip (`Liquidator._all_hopeless`) carried to later blocks while it provably holds, without
    screening again: at 1,000 accounts the crash leaves the same few unhealthy rows, none worth liquidating, for
    thousands of blocks, while interest, the reference prices and the gas price move every block.

    Anchored on a block where every pair of every ranked row was screened and skipped, with own capital (no flash
    loan) and no row under the account model. It holds at a later block if the ranked rows, their balances, the
    oracle prices, the reserves' parameters, the liquidator's pools (with their reserves, constant-product or the
    collateral itself: sales are increasing and concave in the amount) and everything else `_screen` reads are the
    same, except the liquidity and borrow indices, the debt assets' reference prices and the gas cost. Then, with
    r_min <= r_max the smallest and largest ratio of any index to its anchor value (both indices of every asset):

    - every amount `_screen` computes for a pair (the close-factor cap from the debt and the account's total debt,
      the collateral balance, the seizure and the repayment, both capped, less the protocol fee) is a product of
      constants and one index, or a min/max of such, so it moves by a factor in [r_min, r_max], provided the close
      factor's regime does not change: the health factor above or below 0.95 (checked exactly) and, under v3.3, the
      $2,000 collateral and debt tests (checked with the bound: a value v passes for sure if v r_min >= 2,000);
    - the sale returns q(s x) <= max(s, 1) q(x) for a constant-product pool (and equality for the collateral
      itself), and every figure is in the debt asset's reference price (ratio rho to the anchor's);
    - so proceeds P <= rho max(r_max, 1) P0 and cost C >= rho r_min C0 (P0, C0 >= 0 at the anchor), and the gross
      profit P - C - gas, plus the screen's slack 1e-9 (|P| + |C| + gas) + 1e-9, is at most
      rho (max(r_max, 1) P0 - r_min C0) - gas + 1e-9 (rho max(r_max, 1) P0 + rho r_max C0 + gas) + 1e-9;
      if that, plus `_IDLE_MARGIN` of the amounts (far beyond float rounding), is at most the minimum profit for
      every pair, `_screen` would skip every pair now, which is the block-wide skip;
    - caps grow by at most r_max, so a capital covering r_max (1 + margin) x the anchor's caps covers today's.
    Anything else: screen again (and re-anchor if all is still skipped).

    Cheap to re-check (issue 14; this runs once a block at 1,000 accounts): the anchor keeps the bytes of what must be
    equal (the ranked rows, their balances, the health-factor regime of the screened rows) and its indices and
    reference prices as Python floats, which it requires finite and positive, so the ratios are float divisions
    with no zero or NaN to guard (the very quotients numpy would give) and a few comparisons of bytes replace the
    array comparisons. Bytes equal means values equal; values equal but bytes not (0.0 and -0.0) only screens again.
    Balances that are not finite get no anchor (bytes would call two NaN equal)."""

    __slots__ = (
        "inputs",
        "top",
        "top_bytes",
        "coll",
        "debt",
        "prices",
        "terms",
        "index0",
        "ref",
        "ref_assets",
        "pair_rows",
        "hf_high",
        "thresholds",
        "pcc",
        "rho_idx",
        "pairs",
        "groups",
        "verdict",
    )
    inputs: tuple
    top: np.ndarray
    top_bytes: bytes
    coll: bytes  # `coll_scaled[top]`'s bytes
    debt: bytes  # `debt_scaled[top]`'s bytes
    prices: bytes
    terms: tuple[bytes, bytes, bytes]
    index0: list[float]  # liquidity then borrow index per asset at the anchor, finite and > 0
    ref: list[float]  # reference price per asset of `ref_assets` at the anchor, finite and > 0
    ref_assets: list[tuple[int, str]]  # (index, symbol) of the debt assets of the screened pairs
    pair_rows: np.ndarray
    hf_high: bytes  # `health()[pair_rows] > CLOSE_FACTOR_HF_THRESHOLD`'s bytes
    thresholds: tuple[tuple[float, float], ...] | None
    pcc: np.ndarray  # (3, pairs): the anchor's proceeds, cost and cost again, USD
    rho_idx: np.ndarray  # position of each pair's debt asset in `ref_assets`
    pairs: list[tuple[int, float, float]]  # per pair: (`rho_idx`, proceeds, cost) as Python numbers
    groups: list[tuple[int, float, float, float]] | None  # per debt asset: `_group_bounds`
    verdict: _Screened

    @staticmethod
    def _static_inputs(m, view: BlockView, liq: Liquidator) -> tuple:
        """What must be equal for the verdict to carry over (the reference prices and gas are bounded instead)."""
        return (
            id(m),
            m.rule,
            liq.gas,
            liq.spec.min_profit_usd,
            liq.funding.mode,
            tuple([(id(q), q.reserves(), q.p.fee) for q in liq.pools]),
            getattr(view.external, "fee", 0.0),
        )

    @classmethod
    def anchor(cls, m, top, ci, dj, view, liq: Liquidator, verdict: _Screened, figures: dict) -> _Idle | None:
        """The anchor of a block-wide skip just screened, or None where the bound does not apply."""
        if liq.funding.mode != "capital" or m._coll_on is not None or m._emode is not None:
            return None
        proceeds, cost = figures.get("proceeds"), figures.get("cost")
        if proceeds is None or cost is None or not proceeds.size or not (np.all(proceeds >= 0) and np.all(cost >= 0)):
            return None
        for i, j in set(zip(ci.tolist(), dj.tolist())):  # every sale: the collateral itself or a constant-product pool
            if i != j:
                pool = liq._pool_for(m.assets[i], m.assets[j])
                if pool is None or type(pool).quote is not ConstantProductPool.quote:
                    return None
        coll, debt = m.coll_scaled[top], m.debt_scaled[top]
        index0 = m.liq_index.tolist() + m.borrow_index.tolist()
        used = sorted(set(dj.tolist()))
        ref = [float(view.reference.get(m.assets[j], 1.0)) for j in used]
        if not (
            np.isfinite(coll).all()
            and np.isfinite(debt).all()
            and all(0.0 < v < math.inf for v in index0)
            and all(0.0 < v < math.inf for v in ref)
        ):
            return None  # the ratios below divide by these; bytes would call two NaN balances equal
        self = object.__new__(cls)
        self.inputs = cls._static_inputs(m, view, liq)
        self.top, self.top_bytes = top, top.tobytes()
        self.coll, self.debt = coll.tobytes(), debt.tobytes()
        self.prices = m.prices().tobytes()
        self.terms = (m.bonus.tobytes(), m.fee.tobytes(), m.lt.tobytes())
        self.index0 = index0
        self.ref, self.ref_assets = ref, [(j, m.assets[j]) for j in used]
        self.pair_rows, self.hf_high = figures["rows"], np.asarray(figures["hf_high"], dtype=bool).tobytes()
        self.thresholds = None
        if "coll_usd" in figures:  # v3.3: the smallest value that passed and the largest that failed, per test
            t = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            cu, du = figures["coll_usd"], figures["debt_usd"]
            self.thresholds = tuple(
                (float(v[v >= t].min(initial=np.inf)), float(v[~(v >= t)].max(initial=-np.inf))) for v in (cu, du)
            )
        self.pcc, self.rho_idx = np.stack([proceeds, cost, cost]), np.searchsorted(np.array(used), dj)
        self.pairs = list(zip(self.rho_idx.tolist(), proceeds.tolist(), cost.tolist()))
        self.groups = _group_bounds(self.rho_idx, proceeds, cost, len(used))
        self.verdict = verdict
        return self

    def still(self, m, top: np.ndarray, view: BlockView, liq: Liquidator) -> _Screened | None:
        """The verdict, its caps scaled to their bound, if it provably holds now; None otherwise."""
        if (
            top.dtype != self.top.dtype
            or top.tobytes() != self.top_bytes
            or m._coll_on is not None
            or m._emode is not None
            or m.prices().tobytes() != self.prices
            or self._static_inputs(m, view, liq) != self.inputs
            or (m.bonus.tobytes(), m.fee.tobytes(), m.lt.tobytes()) != self.terms
            or m.coll_scaled.take(top, axis=0).tobytes() != self.coll  # `take`: the rows `[top]` gathers, cheaper
            or m.debt_scaled.take(top, axis=0).tobytes() != self.debt
            or (m.health().take(self.pair_rows) > CLOSE_FACTOR_HF_THRESHOLD).tobytes() != self.hf_high
        ):
            return None
        # the anchor's indices are finite and > 0: these are numpy's quotients, without its error state
        ratios = [a / b for a, b in zip(m.liq_index.tolist() + m.borrow_index.tolist(), self.index0)]
        r_min, r_max = min(ratios), max(ratios)
        if not (0.0 < r_min <= r_max < math.inf) or any(r != r for r in ratios):
            return None
        t = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        if self.thresholds is not None and not all(
            passed * r_min >= t * (1 + _IDLE_MARGIN) and failed * r_max <= t * (1 - _IDLE_MARGIN)
            for passed, failed in self.thresholds
        ):
            return None
        ref = view.reference
        rho_assets = [ref.get(a, 1.0) / r0 for (_, a), r0 in zip(self.ref_assets, self.ref)]
        gas_usd = float(liq.gas * view.base_fee_gwei * GWEI * liq.eth_price())
        if not (all(0.0 < r < math.inf for r in rho_assets) and math.isfinite(gas_usd)):
            return None
        up, mp = max(r_max, 1.0), liq.spec.min_profit_usd
        if self.groups is not None and _groups_skip(self.groups, rho_assets, up, r_min, r_max, gas_usd, mp):
            return self.verdict.scaled(r_max * (1 + _IDLE_MARGIN))  # every pair's bound below passes too (see there)
        # rho up P0, rho r_min C0 and rho r_max C0 per pair: the factors are the float products of the per-asset rho
        # (what numpy's elementwise products of the pairs' rho give)
        a, b, c = [r * up for r in rho_assets], [r * r_min for r in rho_assets], [r * r_max for r in rho_assets]
        if len(self.pairs) <= _IDLE_PYTHON_PAIRS:  # a few pairs: float arithmetic, each numpy operation costs more
            g = abs(gas_usd)
            for j, p0, c0 in self.pairs:
                p_hi, c_lo, c_hi = a[j] * p0, b[j] * c0, c[j] * c0
                size = p_hi + c_hi + g
                if not p_hi - c_lo - gas_usd + 1e-9 * size + 1e-9 + _IDLE_MARGIN * (size + 1.0) <= mp:  # NaN: no
                    return None
        else:  # the same operations, elementwise
            p_hi, c_lo, c_hi = np.array([a, b, c])[:, self.rho_idx] * self.pcc
            size = p_hi + c_hi + abs(gas_usd)
            bound = p_hi - c_lo - gas_usd + 1e-9 * size + 1e-9 + _IDLE_MARGIN * (size + 1.0)
            if not bound.max() <= mp:  # NaN: not carried (there is at least one pair)
                return None
        return self.verdict.scaled(r_max * (1 + _IDLE_MARGIN))


class Liquidator(mesa.Agent):
    def __init__(
        self,
        model: mesa.Model,
        holder: str,
        spec,
        markets: list,
        pools: list,
        liquidation_gas: int,
        eth_price,
        funding: Funding = CAPITAL,
    ):
        super().__init__(model)
        self.holder = holder
        self.funding = funding  # own capital, flash loans or both (agents.funding)
        self.spec = spec
        self.markets = markets
        self.pools = pools
        self.gas = liquidation_gas
        self.eth_price = eth_price  # callable: USD per ETH now
        self._first_seen = FirstSeen()  # per market: the block each account was first seen unhealthy
        self._idle: dict[str, _Idle] = {}  # per market: the last block-wide skip, while it provably still holds
        self._rankers: dict[str, TopByDebt] = {}  # per market: the ranking's threshold carried between blocks
        self._unhealthy: dict[str, MaskRows] = {}  # per market: its unhealthy rows at this liquidator's last look
        self.attempts = 0

    def _pool_for(self, sell: str, buy: str):
        """The first pool whose two tokens are `sell` and `buy` (as sets: `{token0, token1} == {sell, buy}`, compared
        as the two orders, without building sets: issue 14, about 130,000 calls at 100,000 accounts)."""
        for pool in self.pools:
            t0, t1 = pool.p.token0, pool.p.token1
            if (t0 == sell and t1 == buy) or (t0 == buy and t1 == sell):
                return pool
        return None

    def submit(self, view: BlockView) -> list[Tx]:
        txs: list[Tx] = []
        ledger = self.markets[0].env.ledger if self.markets else None
        if ledger is not None:
            self._refill(ledger, view)
        for m in self.markets:
            hf = m.health()
            rows, delta = self._candidates(m, hf, view)
            # the block each row was first seen unhealthy: one bookkeeping for the liquidators whose looks agree
            cache_key = m._cache_key if isinstance(m, LendingMarket) else None
            memo = view.extra.setdefault(_MEMO, {})
            lat = self.spec.latency_blocks
            ready = self._first_seen.ready(m.id, hf, rows, view.block, cache_key, lat, memo, delta)
            if ready.size == 0:
                continue
            ranked = self._ranked(m, ready, view, ledger)
            if ranked is None:  # no pair of any ranked row pays (`_all_hopeless`): nothing to plan in this market
                continue
            ready, coll_idx, debt_idx, skip, cover = ranked
            live_rows = (coll_idx >= 0) & ~skip
            if not live_rows.any():  # nothing is committed in this market yet, so the loop below passes every row
                continue
            committed: dict[str, float] = {}
            live = live_rows.tolist()
            for k in range(ready.size):
                if len(txs) >= self.spec.max_tx_per_block:
                    break
                if not live[k]:  # no pair, or `_plan` would return None (see `_hopeless`) ...
                    if coll_idx[k] < 0 or not committed:
                        continue
                    if self._still_hopeless(ledger, m.assets[debt_idx[k]], committed, cover[k]):
                        continue  # ... and still would with the capital committed so far
                coll, debt = m.assets[coll_idx[k]], m.assets[debt_idx[k]]
                tx = self._plan(m, int(ready[k]), coll, debt, view, ledger, committed)
                if tx is not None:
                    txs.append(tx)
        self.attempts += len(txs)
        return txs

    def _refill(self, ledger, view: BlockView) -> None:
        """`refill_gas`, paying with the token this liquidator holds most of (USD at reference prices). The pay token is
        looked for only when `refill_gas` would buy: most blocks the gas balance is above the refill share and it
        returns before reading it."""
        if view.external is None or ledger.balance(self.holder, "ETH") >= GAS_REFILL_SHARE * self.spec.gas_budget_eth:
            return
        quote = max(ledger.tokens(), key=lambda t: ledger.balance(self.holder, t) * view.reference.get(t, 0.0))
        refill_gas(ledger, view.external, self.holder, self.spec.gas_budget_eth, quote)

    def _candidates(self, m, hf: np.ndarray, view: BlockView) -> tuple[np.ndarray, tuple | None]:
        """Rows of `m` that are unhealthy and not under an external controller (the controller's to liquidate),
        computed once per block and market state for every liquidator of the block (in `view.extra`), with how they
        differ from the rows of the selection's last call (`MaskRows.delta`, for `FirstSeen.ready`) when they are
        every unhealthy row, else None."""
        memo = view.extra.setdefault(_MEMO, {})
        key = ("candidates", id(m), m._cache_key if isinstance(m, LendingMarket) else None, hf.size)
        hit = memo.get(key) if key[2] is not None else None
        if hit is None:
            sel = self._unhealthy.get(m.id)
            if sel is None:
                sel = self._unhealthy[m.id] = MaskRows()
            rows = sel.select(hf < 1.0)  # `np.flatnonzero(hf < 1.0)`, updated where the mask flipped (read-only)
            delta = sel.delta
            controlled = m.controlled
            if controlled.any():  # rows under a controller are its own to liquidate (none: no gather)
                rows, delta = rows[~controlled[rows]], None
            rows.flags.writeable = False
            hit = (rows, delta)
            if key[2] is not None:
                memo[key] = hit
        return hit

    def _ranked(self, m, ready: np.ndarray, view: BlockView, ledger):
        """The rows this liquidator looks at, largest debt first (at most 4 x max_tx_per_block of them), with their
        (collateral, debt) pair, whether `_plan` would turn them down and their close-factor cap (`_hopeless`); None
        when `_all_hopeless` says that `_plan` would turn down every pair of every ranked row (every row skipped:
        `submit` plans nothing in this market, so no per-row arrays are built).

        On a LendingMarket the ranking is computed once per block and ready rows and shared by the liquidators of the
        block (in `view.extra`): a later liquidator compares its ready rows with the ones ranked (no key bytes of
        the tens of thousands of rows a 100k-account crash leaves unhealthy)."""
        k = self.spec.max_tx_per_block * 4
        memo = view.extra.setdefault(_MEMO, {})
        shared = isinstance(m, LendingMarket) and m._cache_key is not None
        top = None
        done = memo.setdefault(("ranked", id(m), m._cache_key, k), []) if shared else []
        for rows, ranked in done:  # [(ready rows, their ranking)] of this block and market state
            if rows is ready or (rows.shape == ready.shape and bool((rows == ready).all())):
                top = ranked
                break
        if top is None:
            _, debt_usd = m.account_usd()
            ranker = self._rankers.get(m.id)
            if ranker is None:
                ranker = self._rankers[m.id] = TopByDebt()
            top = ranker.top(debt_usd, ready, k)  # `plain_top`'s rows and order (agents.debt_rank)
            if shared:
                done.append((ready, top))
        # what the screens' figures depend on besides rows, pairs and capital: read once for the three calls below,
        # which change nothing it reads (they only look; issue 14: it was built three times per liquidator and block)
        inputs = self._screen_inputs(m, view) if self._screens(m) else None
        if self._all_hopeless(m, top, view, ledger, inputs):  # no pair of any row pays: nothing to plan at all
            return None
        coll_idx, debt_idx = self._pairs(m, top, ledger, view)
        skip, cover = self._hopeless(m, top, coll_idx, debt_idx, view, ledger, inputs)
        return top, coll_idx, debt_idx, skip, cover

    def _pairs(self, m, ready: np.ndarray, ledger, view: BlockView | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The (collateral, debt) pair to liquidate per row: on an Aave-like market the one that pays most at oracle
        prices within what this liquidator can pay (`best_liquidation_pairs`); elsewhere the largest of each.

        On a LendingMarket the pairs without a budget are computed once per block and rows and shared by the
        liquidators of the block (in `view.extra`); a liquidator whose budget covers every row's close-factor cap
        gets exactly those pairs, any other computes its own. The first search of a block is made with the searching
        liquidator's budget: the pairs without a budget where it covers every cap (then kept), its own where not."""
        if hasattr(m, "best_liquidation_pairs"):
            avail = [self.funding.available(ledger, self.holder, s, 0.0) for s in m.assets]
            if view is None or not isinstance(m, LendingMarket):
                coll_idx, debt_idx, _ = m.best_liquidation_pairs(ready, np.array(avail) * m.prices())
                return coll_idx, debt_idx
            memo = view.extra.setdefault(_MEMO, {})
            single = self._single_pairs(m, ready, memo)
            if single is not None:  # one collateral and one debt per row: the pair of any budget above zero
                coll_idx, debt_idx, used = single
                q = m.prices().tolist()
                if all(avail[j] * q[j] > 0 for j in used):  # the budget (USD) of each debt asset, as the search's
                    return coll_idx, debt_idx
            key = ("pairs", id(m), m._cache_key, ready.tobytes())
            hit = memo.get(key)
            if hit is None:
                # this liquidator's own search first: where its budget covers every cap these are the pairs of no
                # budget (`repay = min(cap, budget)` is the cap), kept for the others; where it binds, its pairs as
                # `best_liquidation_pairs(ready, budget)` gives them, in one search instead of two (issue 14)
                coll_idx, debt_idx, _, cap_max = m.liquidation_pairs_and_caps(ready, np.array(avail) * m.prices())
                caps = cap_max.tolist()
                if not all(a * q >= c for a, q, c in zip(avail, m.prices().tolist(), caps)):
                    return coll_idx, debt_idx
                coll_idx.flags.writeable = debt_idx.flags.writeable = False
                memo[key] = (coll_idx, debt_idx, caps)
                return coll_idx, debt_idx
            coll_idx, debt_idx, cap_max = hit
            # the budget (tokens x oracle price, USD) binds somewhere, or a cap is undefined (NaN compares False):
            # float products and comparisons one by one, as `budget >= cap_max` over the arrays makes them
            if not all(a * q >= c for a, q, c in zip(avail, m.prices().tolist(), cap_max)):
                coll_idx, debt_idx, _ = m.best_liquidation_pairs(ready, np.array(avail) * m.prices())
            return coll_idx, debt_idx
        p = m.prices()
        coll_usd = m.coll_scaled[ready] * (m.liq_index * p)
        debt_usd = m.debt_scaled[ready] * (m.borrow_index * p)
        return coll_usd.argmax(axis=1), debt_usd.argmax(axis=1)

    @staticmethod
    def _single_pairs(m, ready: np.ndarray, memo: dict) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
        """`single_pairs(m, ready)` (read-only) with the debt assets it uses, once per block and market state for the
        liquidators of the block (in `view.extra`'s `memo`)."""
        key = ("single-pairs", id(m), m._cache_key, ready.tobytes())
        if m._cache_key is not None and key in memo:
            return memo[key]
        got = single_pairs(m, ready)
        hit: tuple[np.ndarray, np.ndarray, list[int]] | None = None
        if got is not None:
            got[0].flags.writeable = got[1].flags.writeable = False
            hit = (got[0], got[1], sorted(set(got[1].tolist())))
        if m._cache_key is not None:
            memo[key] = hit
        return hit

    def _hopeless(
        self,
        m,
        ready: np.ndarray,
        coll_idx: np.ndarray,
        debt_idx: np.ndarray,
        view,
        ledger,
        inputs: tuple | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows `_plan` would turn down, each row's close-factor cap in debt tokens), computed for all rows at once
        as `_plan` would compute them before anything is committed (most candidates of a crash are accounts whose
        liquidation is not worth the gas; planning each one, three liquidators, every block, was most of a run).

        On a float-precision Aave-like market (`preview` and `max_debt_to_cover` as LendingMarket has them) this is
        `_plan`'s own arithmetic vectorised: the close-factor cap (`max_debt_to_cover`), the repayment within what
        the funding makes available, the seizure capped by the collateral balance and less the protocol fee
        (`preview`), its sale where this liquidator sells (`_sale_value`), the flash-loan fee and gas. A row is
        skipped only when its profit is below the minimum by more than 1e-9 of the amounts involved (so rounding
        can never skip a row `_plan` would take), or nothing is available to pay. Rows without a pair, rows under
        the account model (a collateral flag off or an e-mode category) and other markets: nothing is skipped.
        `_still_hopeless` says whether a skip holds once earlier rows have committed some of the capital.

        The figures that do not depend on the liquidator's capital are computed once per block and rows and shared
        by the liquidators of the block (in `view.extra`); a liquidator whose capital is below some row's cap
        leaves those rows to `_plan` (`_within_capital`). `inputs`: `_screen_inputs(m, view)` if the caller has it
        now."""
        if ready.size == 0 or not self._screens(m):
            return np.zeros(ready.size, dtype=bool), np.full(ready.size, np.inf)
        mode = self.funding.mode
        avail = [self.funding.available(ledger, self.holder, s, 0.0) for s in m.assets]
        memo = view.extra.setdefault(_MEMO, {})
        if inputs is None:
            inputs = self._screen_inputs(m, view)
        key = ("screen", ready.tobytes(), coll_idx.tobytes(), debt_idx.tobytes(), *inputs)
        hit = memo.get(key)
        if hit is None:
            hit = self._pair_figures(memo, m, ready, coll_idx, debt_idx, view, inputs)
            if hit is None:
                shared_avail = np.array(avail) if mode == "both" else np.full(len(avail), np.inf)
                hit = _Screened(*self._screen(m, ready, coll_idx, debt_idx, view, ledger, shared_avail), debt_idx)
            memo[key] = hit
        # this liquidator's capital binds (it is below some screened row's cap): those rows are left to `_plan`
        if mode == "capital" and not hit.covered_by(avail):
            return _within_capital(hit, np.array(avail)[debt_idx])
        if hit.funded_by(avail):  # no screened row's debt asset is out of funds: the shared verdict as it is
            return hit.skip, hit.cover
        return hit.skip | (hit.plain & (np.array(avail)[debt_idx] <= 0)), hit.cover

    def _pair_figures(
        self,
        memo: dict,
        m,
        ready: np.ndarray,
        coll_idx: np.ndarray,
        debt_idx: np.ndarray,
        view,
        inputs: tuple | None = None,
    ) -> _Screened | None:
        """`_screen`'s shared verdict for `ready` with the pairs given, taken from the one `_all_hopeless` computed this
        block for every pair of the same rows with the same inputs (`_screen` is elementwise in (row, pair): the
        figures are the very ones), or None if it did not or a pair is not among them.

        When every row holds exactly one pair and it is the one given (every account of a book with one collateral
        and one debt: most blocks at 100,000 accounts), that verdict is the answer itself: no gather (issue 14)."""
        if inputs is None:
            inputs = self._screen_inputs(m, view)
        got = memo.get(("pair-figures", ready.tobytes(), *inputs))
        if got is None:
            return None
        r, ci, dj, every = got
        if _one_pair_each(r, ci, dj, coll_idx, debt_idx):
            return every
        n_a = len(m.assets)
        where = np.full(ready.size * n_a * n_a, -1)
        where[(r * n_a + ci) * n_a + dj] = np.arange(r.size)
        has = coll_idx >= 0
        k = np.flatnonzero(has)
        at = where[(k * n_a + coll_idx[has]) * n_a + debt_idx[has]]
        if (at < 0).any():
            return None
        out, cover, plain = np.zeros(ready.size, dtype=bool), np.full(ready.size, np.inf), np.zeros(ready.size, bool)
        out[has], cover[has], plain[has] = every.skip[at], every.cover[at], every.plain[at]
        return _Screened(out, cover, plain, debt_idx)

    def _screens(self, m) -> bool:
        """`_hopeless` screens this market's rows: a float-precision LendingMarket whose `preview` and
        `max_debt_to_cover` are LendingMarket's (the arithmetic `_screen` vectorises), under a known funding mode."""
        lm = LendingMarket
        return (
            isinstance(m, lm)
            and type(m).preview is lm.preview
            and type(m).max_debt_to_cover is lm.max_debt_to_cover
            and m.precision == "float"
            and self.funding.mode in ("capital", "flash-loan", "both")
        )

    def _screen_inputs(self, m, view: BlockView) -> tuple:
        """Everything `_screen`'s figures depend on besides the rows, their pairs and the capital: the market's state
        and prices (its cache key), this liquidator's gas, minimum profit, funding and pools (with their reserves),
        the block's reference prices, base fee, outside-market fee and ETH price."""
        mode = self.funding.mode
        return (
            id(m),
            m._cache_key,
            self.gas,
            self.spec.min_profit_usd,
            mode,
            id(self.funding.lender),
            tuple([(id(q), q.reserves()) for q in self.pools]),
            tuple(view.reference.items()),
            view.base_fee_gwei,
            getattr(view.external, "fee", 0.0),
            float(self.eth_price()),
            self.holder if mode == "both" else None,  # a partly flash-funded plan depends on this holder's balance
        )

    def _all_hopeless(self, m, top: np.ndarray, view: BlockView, ledger, inputs: tuple | None = None) -> bool:
        """Whether `_plan` would turn down every row of `top` whatever (collateral, debt) pair `_pairs` gave it, so
        that `submit` sends nothing for this market and neither `_pairs` (the (rows, A, A) pair search) nor
        `_hopeless` need run; at 1,000 accounts the crash leaves unhealthy rows in 6,600 blocks of 7,200 and a
        liquidation in 183, and those two were most of the liquidators' cost.

        Proof that it changes no decision: every pair a row could be given (a collateral and a debt it holds: a
        superset of what `best_liquidation_pairs` can return, with or without a budget) is put through `_screen`
        with the figures `_hopeless` shares (no capital limit; under "both", this holder's). `_screen` is elementwise
        in (row, pair), so the pair `_pairs` picks gets the very figures `_hopeless` would compute for it. True only
        if every such pair is screened (no row under the account model) and skipped, and, with own capital, if it
        covers every pair's cap (then `_hopeless` uses those shared figures and only adds skips for assets out of
        funds; a smaller repayment is not always worse: the pool's price impact is smaller too). Then every row is
        either without a pair or skipped, nothing is committed, and `submit`'s loop plans nothing. Shared per block
        like the screen (in `view.extra`). `inputs`: `_screen_inputs(m, view)` if the caller has it now."""
        if not self._screens(m):
            return False
        avail = [self.funding.available(ledger, self.holder, s, 0.0) for s in m.assets]
        memo = view.extra.setdefault(_MEMO, {})
        if inputs is None:
            inputs = self._screen_inputs(m, view)
        key = ("all-hopeless", top.tobytes(), *inputs)
        hit = memo.get(key)
        if hit is None:
            idle = self._idle.get(m.id)
            hit = idle.still(m, top, view, self) if idle is not None else None
            if hit is None:  # no earlier verdict that provably holds: screen every pair
                self._idle.pop(m.id, None)
                held = (m.coll_scaled[top] != 0)[:, :, None] & (m.debt_scaled[top] != 0)[:, None, :]
                r, ci, dj = np.nonzero(held)
                shared_avail = np.array(avail) if self.funding.mode == "both" else np.full(len(avail), np.inf)
                figures: dict = {}
                every = _Screened(*self._screen(m, top[r], ci, dj, view, ledger, shared_avail, figures), dj)
                # every pair's figures, for `_hopeless` to take the pairs `_pairs` picks from (`_pair_figures`)
                memo[("pair-figures", *key[1:])] = (r, ci, dj, every)
                hit = False
                if bool(every.skip.all()):  # `_screen` never skips a row it does not screen
                    hit = every
                    anchored = _Idle.anchor(m, top, ci, dj, view, self, every, figures)
                    if anchored is not None:
                        self._idle[m.id] = anchored
            memo[key] = hit
        if hit is False:
            return False
        return self.funding.mode != "capital" or hit.covered_by(avail)

    def _screen(
        self,
        m,
        ready: np.ndarray,
        coll_idx: np.ndarray,
        debt_idx: np.ndarray,
        view,
        ledger,
        avail_by_asset,
        figures: dict | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_hopeless`'s figures with `avail_by_asset` (A,) tokens available per debt asset: (skip, cap, rows
        screened). `figures`, if given, receives the screened rows' intermediate figures (`_Idle` keeps them)."""
        screened = coll_idx >= 0
        if m._coll_on is not None or m._emode is not None:  # rows under the account model are not screened
            screened &= ~np.isin(ready, m._special_rows(ready))
        plain = screened
        n_plain = int(np.count_nonzero(screened))
        if n_plain == 0:
            return np.zeros(ready.size, dtype=bool), np.full(ready.size, np.inf), screened
        every = n_plain == ready.size  # every row screened (most calls): the rows and pairs as given, no gathers
        if not every:
            ready, ci, dj = ready[plain], coll_idx[plain], debt_idx[plain]  # the pair `_plan` is given
        else:
            ci, dj = coll_idx, debt_idx
        p, ref = m.prices(), view.reference
        p_debt, p_coll = p[dj], p[ci]  # each gathered once: the same values wherever they are used
        hf = m.health()[ready]
        hf_high = hf > CLOSE_FACTOR_HF_THRESHOLD
        # what the funding makes available before anything is committed, per debt asset
        avail = np.asarray(avail_by_asset, dtype=float)[dj]
        bonus = m.bonus[ci]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # max_debt_to_cover, vectorised
            reserve_debt = m.debt_scaled[ready, dj] * m.borrow_index[dj]  # tokens of the debt asset
            balance = m.coll_scaled[ready, ci] * m.liq_index[ci]  # collateral tokens of the pair's reserve
            if m.rule == "aave-v3.0":
                cap = reserve_debt * np.where(hf_high, DEFAULT_LIQUIDATION_CLOSE_FACTOR, 1.0)
            else:
                reserve_coll_usd = balance * p_coll
                reserve_debt_usd = reserve_debt * p_debt
                half = (
                    (reserve_coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
                    & (reserve_debt_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
                    & hf_high
                )
                _, debt_total_usd = m.account_usd()
                halved = np.minimum(reserve_debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * debt_total_usd[ready] / p_debt)
                cap = np.where(half, halved, reserve_debt)
            # preview, vectorised
            repay = np.minimum(avail, cap)
            seized = repay * p_debt / p_coll * bonus
            over = seized > balance
            seized = np.where(over, balance, seized)
            repay = np.where(over, balance * p_coll / p_debt / bonus, repay)
            seized = seized - (seized - seized / bonus) * m.fee[ci]  # to the liquidator, after the protocol fee
            # the flash loan and its fee (agents.funding)
            if self.funding.mode == "capital":
                flash_fee = np.zeros(repay.size)
            else:
                flash_fee = np.array(
                    [
                        self.funding.fee(self.funding.flash_amount(ledger, self.holder, m.assets[j], r, 0.0))
                        for j, r in zip(dj, repay.tolist())
                    ]
                )
            proceeds = self._sale_values(m, ci, dj, seized, view)
            ref_debt = np.array([ref.get(a, 1.0) for a in m.assets])[dj]
            cost = (repay + flash_fee) * ref_debt
        gas_usd = self.gas * view.base_fee_gwei * GWEI * self.eth_price()
        gross = proceeds - cost - gas_usd
        slack = 1e-9 * (np.abs(proceeds) + np.abs(cost) + abs(gas_usd)) + 1e-9
        # NaN compares False: planned
        skip = (gross + slack <= self.spec.min_profit_usd) | (avail <= 0)
        if every:
            out, cover = skip, cap
        else:
            out, cover = np.zeros(plain.size, dtype=bool), np.full(plain.size, np.inf)
            out[plain] = skip
            cover[plain] = cap
        if figures is not None:
            figures.update(proceeds=proceeds, cost=cost, hf_high=hf_high, rows=ready)
            if m.rule != "aave-v3.0":
                figures.update(coll_usd=reserve_coll_usd, debt_usd=reserve_debt_usd)
        return out, cover, plain

    def _still_hopeless(self, ledger, debt: str, committed: dict[str, float], cap: float) -> bool:
        """A row `_hopeless` skipped with nothing committed is still one `_plan` turns down now that `committed` of
        the capital is promised: nothing is committed in its debt asset, or the funding does not depend on it
        (flash loans only), or the capital left still covers the row's close-factor cap (the repayment is the cap
        either way)."""
        c = committed.get(debt, 0.0)
        if c == 0.0 or self.funding.mode == "flash-loan":
            return True
        if self.funding.mode != "capital":
            return False
        return self.funding.available(ledger, self.holder, debt, 0.0) >= cap and (
            self.funding.available(ledger, self.holder, debt, c) >= cap
        )

    def _sale_values(self, m, ci: np.ndarray, dj: np.ndarray, amount: np.ndarray, view) -> np.ndarray:
        """`_sale_value` of each row's seized collateral (`amount` tokens of asset ci sold for asset dj), USD."""
        ref = view.reference
        out = np.empty(amount.size)
        groups = set(zip(ci.tolist(), dj.tolist()))
        for i, j in groups:  # disjoint row sets: their order does not matter
            rows = (ci == i) & (dj == j) if len(groups) > 1 else slice(None)  # one pair for all: every row
            coll, debt = m.assets[i], m.assets[j]
            x = amount[rows]
            if i == j:
                out[rows] = x * ref.get(coll, 1.0)
                continue
            pool = self._pool_for(coll, debt)
            if pool is not None and type(pool).quote is not ConstantProductPool.quote:
                out[rows] = [pool.quote(coll, float(v)) * ref.get(debt, 1.0) for v in x.tolist()]
            elif pool is not None:  # ConstantProductPool.quote, vectorised
                r_in, r_out = pool._oriented(coll)
                a = x * (1.0 - pool.p.fee)
                out[rows] = np.where(x > 0, a * r_out / (r_in + a), 0.0) * ref.get(debt, 1.0)
            else:
                out[rows] = x * ref.get(coll, 0.0) * (1.0 - getattr(view.external, "fee", 0.0))
        return out

    def _plan(self, m, a, coll, debt, view, ledger, committed):
        available = self.funding.available(ledger, self.holder, debt, committed.get(debt, 0.0))
        if available <= 0:
            return None
        pv = self._preview(m, a, coll, debt, min(available, np.inf), view)
        if pv.debt_to_repay <= 0 or pv.debt_to_repay > available * (1 + 1e-12):
            return None
        flash = self.funding.flash_amount(ledger, self.holder, debt, pv.debt_to_repay, committed.get(debt, 0.0))
        ref = view.reference
        proceeds_usd = self._sale_value(coll, debt, pv.collateral_seized, ref, view)
        cost_usd = (pv.debt_to_repay + self.funding.fee(flash)) * ref.get(debt, 1.0)
        eth_usd = self.eth_price()
        base_gas_usd = self.gas * view.base_fee_gwei * GWEI * eth_usd
        gross = proceeds_usd - cost_usd - base_gas_usd
        if gross <= self.spec.min_profit_usd:
            return None
        tip = min(self.spec.max_priority_fee_gwei, self.spec.profit_share_to_gas * gross / (self.gas * GWEI * eth_usd))
        committed[debt] = committed.get(debt, 0.0) + pv.debt_to_repay - flash
        action: Callable[[], object] = partial(self._execute, m, a, coll, debt, pv.debt_to_repay, view)
        if flash > 0:  # borrow, liquidate, sell, repay: one transaction (agents.funding)
            quote = partial(self._quote, m, a, coll, debt, pv.debt_to_repay, view)
            action = partial(self.funding.execute, ledger, self.holder, debt, flash, action, quote)
        return Tx(
            self.holder,
            action,
            self.gas,
            tip,
            f"liquidate:{m.id}",
            private=self.spec.private_orderflow,
        )

    def _preview(self, m, a: int, coll: str, debt: str, amount: float, view: BlockView):
        """`m.preview(a, coll, debt, amount)`. On a LendingMarket (its own `preview` and `max_debt_to_cover`) the
        preview of an unlimited repayment and the row's close-factor cap are kept per block and market state (in
        `view.extra`) for the liquidators of the block, which plan the same rows: `preview` repays
        `min(amount, cap)`, so any `amount >= cap` gets exactly that preview."""
        lm = LendingMarket
        if not (
            isinstance(m, lm)
            and type(m).preview is lm.preview
            and type(m).max_debt_to_cover is lm.max_debt_to_cover
            and m._cache_key is not None
        ):
            return m.preview(a, coll, debt, amount)
        memo = view.extra.setdefault(_MEMO, {})
        key = ("preview", id(m), m._cache_key, a, coll, debt)
        hit = memo.get(key)
        if hit is None:  # the cap computed once for both (`preview` computes it again otherwise)
            hit = memo[key] = m.cap_and_preview(a, coll, debt, np.inf)
        cap, unlimited = hit
        return unlimited if amount >= cap else m.preview_within(a, coll, debt, amount, cap)

    def _sale_value(self, coll: str, debt: str, amount: float, ref: dict, view) -> float:
        """USD value of `amount` of seized collateral where this liquidator would sell it."""
        if coll == debt:
            return amount * ref.get(coll, 1.0)
        pool = self._pool_for(coll, debt)
        if pool is not None:
            return pool.quote(coll, amount) * ref.get(debt, 1.0)
        fee = getattr(view.external, "fee", 0.0)
        return amount * ref.get(coll, 0.0) * (1.0 - fee)

    def _quote(self, m, account: int, coll: str, debt: str, amount: float, view: BlockView) -> tuple[float, float]:
        """(debt tokens the liquidation pays, debt tokens the sale of its seizure returns) at execution prices."""
        pv = m.preview(account, coll, debt, amount)
        if coll == debt:
            return pv.debt_to_repay, pv.collateral_seized
        pool = self._pool_for(coll, debt)
        if pool is not None:
            return pv.debt_to_repay, pool.quote(coll, pv.collateral_seized)
        ref = view.reference
        fee = getattr(view.external, "fee", 0.0)
        return pv.debt_to_repay, pv.collateral_seized * ref.get(coll, 0.0) / ref.get(debt, 1.0) * (1.0 - fee)

    def _execute(self, m, account: int, coll: str, debt: str, amount: float, view: BlockView) -> None:
        ev = m.liquidate(account, coll, debt, amount, self.holder)
        if coll == debt:
            return
        pool = self._pool_for(coll, debt)
        if pool is not None:
            pool.swap(self.holder, coll, ev.collateral_seized)
        elif view.external is not None:
            view.external.sell(self.holder, coll, ev.collateral_seized, debt)
