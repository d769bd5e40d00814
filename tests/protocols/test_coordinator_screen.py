"""The coordinator's screened health (MarginCoordinator.screened_health) and the split of `requirements` into the
book, the portfolio-margin MM and the coordinated figures: bit for bit against the whole-book `requirements` as it
was (`reference_requirements`, the code before the split), on the scaled-down built-in `inter-protocol-pm` through
its crash, on random row batches, and on crafted figures at the bound (NaN, inf, -0.0, zeros, one ulp either side).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.coordinator import (
    DUST_USD,
    SCREEN_MARGIN,
    CoordinatedResult,
    CoordinatorParams,
    MarginCoordinator,
    _Book,
    _take,
)
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.margin.catalog import get_model, list_models
from defistress.protocols.margin.portfolio import CALL, PERP, PUT, SECONDS_PER_YEAR, SPOT, MarketState, Portfolio
from defistress.protocols.margin.scenario_pm import ScenarioPM
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams
from defistress.scenarios.loader import load
from defistress.sim.engine.model import StressModel

FIELDS = (
    "equity_usd",
    "silo_im_usd",
    "silo_mm_usd",
    "silo_mm_max_usd",
    "pm_mm_usd",
    "credit_usd",
    "contingency_usd",
    "mm_usd",
    "im_usd",
    "health",
    "silo_shortfall_usd",
)


def reference_requirements(self: MarginCoordinator, principals: np.ndarray | None = None) -> CoordinatedResult:
    """`MarginCoordinator.requirements` (with_pm=True) as it was before the book / MM / coordinated split."""
    idx = np.arange(self.n_accounts) if principals is None else np.atleast_1d(np.asarray(principals, np.int64))
    n, unds, pr = idx.size, self.underlyings, self.params
    z = lambda: np.zeros(n)  # noqa: E731
    orc, lat = z(), z()
    pv, mean = self._prices()
    mkt = self.market_state(mean)
    sigma = self.vol_of(mkt)
    eq, s_im, s_mm, s_mm_max, s_im_max, s_gap, venues = self._silo_sums(idx)
    parts = []
    for v, a, sel, rr in venues:
        parts.append((sel, a.portfolio(rr, unds)))
        px = np.array([pv[v].get(u, np.nan) for u in unds])
        dev = np.nan_to_num(np.abs(px - mean), nan=0.0)
        orc[sel] += pr.oracle_divergence * (np.abs(a.net_delta(rr, unds)) @ dev)
        scale = pr.latency_z * math.sqrt(self.latency_s[v] / SECONDS_PER_YEAR)
        lat[sel] += scale * (a.gross_notional_usd(rr, unds) @ sigma)
    pm_mm = self.model.requirements(self._combine(parts, n), mkt).mm if n else z()
    credit = pr.credit_rate * np.maximum(s_mm - pm_mm, 0.0)
    settle = pr.settlement_haircut * credit
    cont = orc + lat + settle
    combined = np.maximum(s_mm - credit, s_mm_max)
    mm = combined + cont
    im = np.maximum(pr.im_factor * combined, s_im_max) + cont
    with np.errstate(divide="ignore", invalid="ignore"):
        health = np.where(mm > 0, eq / mm, np.where(eq >= 0, np.inf, -np.inf))
    return CoordinatedResult(
        eq, s_im, s_mm, s_mm_max, pm_mm, credit, cont, {"oracle": orc, "latency": lat, "settlement": settle}, mm, im,
        health, s_gap,
    )  # fmt: skip


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def assert_same(a: CoordinatedResult, b: CoordinatedResult, rows: np.ndarray | None = None) -> None:
    """Every figure of `a` equals `b` (or `b` at `rows`) bit for bit."""
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        np.testing.assert_array_equal(bits(x), bits(y if rows is None else y[rows]), err_msg=f)
    for k in ("oracle", "latency", "settlement"):
        y = b.contingencies[k]
        np.testing.assert_array_equal(bits(a.contingencies[k]), bits(y if rows is None else y[rows]), err_msg=k)


def assert_screen_exact(coord: MarginCoordinator, whole: CoordinatedResult) -> tuple[int, int]:
    """screened_health is the whole book's health bit for bit where it is finite or below 1, and +inf only where
    the whole book's health is >= 1; returns how many principals with a finite health it left unvalued, and how
    many it valued."""
    got = coord.screened_health()
    left = got == np.inf
    np.testing.assert_array_equal(bits(got[~left]), bits(whole.health[~left]))
    assert np.all(whole.health[left] >= 1.0)
    bad = whole.health < 1.0
    np.testing.assert_array_equal(got < 1.0, bad)
    np.testing.assert_array_equal(bits(got[bad]), bits(whole.health[bad]))
    return int((left & (whole.health != np.inf)).sum()), int((~left).sum())


# --- a small two-venue world -------------------------------------------------------------------------------------
ETH_L = AssetParams("ETH", ltv=0.825, liquidation_threshold=0.86, liquidation_bonus=0.05)
USDC_L = AssetParams("USDC", ltv=0.865, liquidation_threshold=0.885, liquidation_bonus=0.048)
ETH_P = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)


def world(model: str = "derive-pm2", n: int = 12, seed: int = 0) -> tuple[MarginCoordinator, FixedPrice]:
    """Principals with random ETH collateral, USDC debt and perps (some on one venue only, some flat)."""
    env = Env()
    eth = FixedPrice(2000.0)
    lend = LendingMarket("lend", [ETH_L, USDC_L], {"ETH": eth, "USDC": FixedPrice(1.0)}, env)
    dex = PerpDex(PerpDexParams(markets=[ETH_P]), {"ETH": eth}, env)
    led = env.ledger
    for h in ("lenders", "vault"):
        led.mint("USDC", h, 1e9, "t")
    lend.supply_liquidity("lenders", "USDC", 1e9)
    dex.set_vault(int(dex.open_accounts("vault", [1e8], None)[0]))
    coord = MarginCoordinator(CoordinatorParams(model=model), {"lend": lend, "perps": dex}, env)
    rng = np.random.default_rng(seed)
    for i in range(n):
        name, rows = f"p{i}", {}
        if i % 4 != 3:
            coll = float(rng.uniform(1.0, 20.0))
            led.mint("ETH", name, coll, "t")
            a = lend.add_accounts(1)
            lend.supply(name, a, "ETH", np.array([coll]))
            lend.borrow(name, a, "USDC", np.array([coll * 2000.0 * float(rng.uniform(0.3, 0.8))]))
            rows["lend"] = int(a[0])
        if i % 4 != 2:
            size = -float(rng.uniform(0.0, 20.0)) if i % 5 else 0.0
            pc = float(rng.uniform(200.0, 4000.0))
            led.mint("USDC", name, pc, "t")
            r = dex.open_accounts([name, "vault"], [pc, 1e5], [[size], [-size]])
            rows["perps"] = int(r[0])
        coord.enroll(name, rows)
    return coord, eth


@pytest.mark.parametrize("price", [2000.0, 1700.0, 1500.0, 1300.0, 1000.0, 0.0])
def test_screened_health_is_exact_below_one_at_every_price(price):
    coord, eth = world(n=16)
    eth.price = price
    whole = coord.requirements()
    assert_same(whole, reference_requirements(coord))
    left, valued = assert_screen_exact(coord, whole)
    assert (valued > 0) == (price <= 1300.0)  # far from 1 every principal is cleared without a valuation


def test_a_model_the_screen_cannot_bound_values_every_principal():
    coord, eth = world(model="cme-span", n=8)
    assert not coord._screens()
    eth.price = 1500.0
    np.testing.assert_array_equal(bits(coord.screened_health()), bits(reference_requirements(coord).health))


def test_the_screen_clears_healthy_principals_and_values_the_rest_in_a_batch_of_their_own():
    coord, eth = world(n=16)
    eth.price = 1000.0
    assert coord._screens()
    book = coord._book(np.arange(coord.n_accounts))
    clear = coord._surely_healthy(book)
    assert clear.any() and not clear.all()  # the world has both
    calls = []
    model = coord.model
    orig = model.requirements

    def spy(pf, mkt):
        calls.append(pf.n_accounts)
        return orig(pf, mkt)

    model.requirements = spy
    coord.screened_health()
    assert calls == [int((~clear).sum())]


def test_no_principals_and_no_valuation_when_every_principal_is_cleared():
    coord, _ = world(n=0)
    assert coord.screened_health().shape == (0,)
    coord, _ = world(n=4)
    book = coord._book(np.arange(4))
    coord.model.requirements = None  # would raise if called
    coord._surely_healthy = lambda b: np.ones(b.equity_usd.size, dtype=bool)
    np.testing.assert_array_equal(coord.screened_health(), np.full(4, np.inf))
    assert book.equity_usd.size == 4


def test_take_keeps_each_venues_rows_in_order_and_drops_venues_without_any():
    coord, _ = world(n=12)
    book = coord._book(np.arange(12))
    for pick in (np.array([2, 6, 10]), np.array([3, 7]), np.arange(12), np.array([0])):
        sub = _take(book, pick)
        ref = coord._book(pick)
        assert [v for v, *_ in sub.venues] == [v for v, *_ in ref.venues]
        for (_, a, sel, rr), (_, b, sel2, rr2) in zip(sub.venues, ref.venues):
            assert a is b
            np.testing.assert_array_equal(sel, sel2)
            np.testing.assert_array_equal(rr, rr2)
        for f in ("equity_usd", "silo_mm_usd", "silo_mm_max_usd", "silo_im_max_usd", "oracle_usd", "latency_usd"):
            np.testing.assert_array_equal(bits(getattr(sub, f)), bits(getattr(ref, f)), err_msg=f)


def test_only_the_plain_scenario_grid_model_of_per_account_figures_is_screened():
    coord, _ = world(n=2)
    assert coord._screens()  # derive-pm2 over ETH
    coord.underlyings = ("ETH", "BTC")
    assert coord._screens()  # separate underlyings: still per account
    coord.model = get_model("deribit-pm")  # gains offset across underlyings: an account's MM depends on the batch
    assert not coord._screens()
    coord.underlyings = ("ETH",)
    assert coord._screens()

    class Other(ScenarioPM):
        """A subclass may value differently (and so need not keep MM >= 0)."""

    coord.model = Other(get_model("derive-pm2").params)
    assert not coord._screens()


# --- the bound on crafted figures --------------------------------------------------------------------------------
def crafted_book(coord: MarginCoordinator, eq, s_mm, s_max, orc, lat) -> _Book:
    arr = [np.asarray(x, dtype=np.float64) for x in (eq, s_mm, s_max, orc, lat)]
    n = arr[0].size
    return _Book(coord._book(np.zeros(0, np.int64)).mkt, arr[0], arr[1].copy(), arr[1], arr[2], arr[2].copy(),
                 np.zeros(n), arr[3], arr[4], [])  # fmt: skip


def pm_values(s_mm: float) -> list[float]:
    """Portfolio-margin MMs in [0, inf] and NaN, around the silo sum and 0."""
    out = [0.0, -0.0, 5e-324, 1e-9, 1.0, math.inf, math.nan, 1e300]
    if math.isfinite(s_mm) and s_mm > 0:
        out += [s_mm, np.nextafter(s_mm, 0.0), np.nextafter(s_mm, math.inf), s_mm / 2, s_mm * 3]
    return out


def test_every_cleared_principal_has_health_at_least_one_for_any_portfolio_margin_mm():
    coord, _ = world(n=2)
    rng = np.random.default_rng(11)
    base = [
        (100.0, 80.0, 60.0, 1.0, 2.0),
        (0.0, 0.0, 0.0, 0.0, 0.0),
        (-0.0, 0.0, 0.0, 0.0, 0.0),
        (0.0, -0.0, -0.0, -0.0, -0.0),
        (1e-7, 0.0, 0.0, 0.0, 0.0),
        (5e-324, 0.0, 0.0, 0.0, 0.0),
        (100.0, -50.0, 0.0, 1.0, 1.0),
        (100.0, math.nan, 0.0, 1.0, 1.0),
        (math.inf, 80.0, 60.0, 1.0, 2.0),
        (100.0, math.inf, 60.0, 1.0, 2.0),
        (100.0, 80.0, 60.0, math.nan, 2.0),
        (100.0, 80.0, 60.0, 1.0, math.inf),
        (-1.0, 0.0, 0.0, 0.0, 0.0),
        (1e308, 1e308, 1e308, 1e308, 1e308),
        (100.0, 80.0, 60.0, math.inf, -math.inf),
        (0.01, 0.0, 0.0, 0.0, 0.0),  # below one dollar, no requirement: cleared (credit_max 0, not 0.8 x 1)
        (0.0, -10.0, -10.0, 0.0, 0.0),  # no equity, a negative requirement: MM <= 0, health +inf
    ]
    rows = list(base)
    for _ in range(300):
        s = float(rng.choice([0.0, rng.uniform(0, 1e6), rng.uniform(-10, 10)]))
        rows.append((float(rng.uniform(-10, 2e6)), s, float(rng.uniform(0, max(s, 0.0))), float(rng.uniform(0, 50)),
                     float(rng.uniform(0, 50))))  # fmt: skip
    # equity exactly at the bound plus the margin, and one ulp either side of it
    pr = coord.params
    for s, s_max, orc, lat in ((80.0, 60.0, 1.0, 2.0), (3800.0, 2800.0, 0.0, 83.42), (1.0, 1.0, 0.0, 0.0)):
        mm_max = max(s, s_max) + (orc + lat + pr.settlement_haircut * (pr.credit_rate * max(s, 0.0)))
        edge = mm_max + SCREEN_MARGIN * abs(mm_max) + DUST_USD
        for e in (np.nextafter(edge, 0.0), edge, np.nextafter(edge, math.inf), mm_max):
            rows.append((float(e), s, s_max, orc, lat))
    eq, s_mm, s_max, orc, lat = (np.array(c) for c in zip(*rows))
    book = crafted_book(coord, eq, s_mm, s_max, orc, lat)
    with np.errstate(all="raise"):  # an overflowing or undefined bound is no error: the row is just not cleared
        clear = coord._surely_healthy(book)
    for k in np.flatnonzero(clear):
        one = crafted_book(coord, eq[k : k + 1], s_mm[k : k + 1], s_max[k : k + 1], orc[k : k + 1], lat[k : k + 1])
        for pm in pm_values(float(s_mm[k])):
            h = coord._coordinated(one, np.array([pm])).health[0]
            assert h >= 1.0, (rows[k], pm, h)
    # the bound is used: healthy rows are cleared (a negative silo sum too); equity within DUST_USD of the bound,
    # NaN, inf, negative equity and the row just below the edge are not
    assert clear[0] and clear[6]
    assert not clear[1:6].any() and not clear[7:15].any()
    assert clear[15] and clear[16]
    assert clear.sum() > 100
    last = len(rows) - 12
    for j in range(3):
        below, at, above, plain = clear[last + 4 * j : last + 4 * j + 4]
        assert not below and at and above and not plain


# --- the premise: a scenario-grid model's MM is never below 0 -----------------------------------------------------
@pytest.mark.parametrize("name", [n for n in list_models() if isinstance(get_model(n), ScenarioPM)])
def test_a_scenario_grid_models_mm_is_never_below_zero(name):
    model = get_model(name)
    rng = np.random.default_rng(3)
    for spot in (0.0, 1.0, 2000.0, 1e6):
        n, p = 30, 120
        kind = rng.choice(np.array([SPOT, PERP, CALL, PUT], dtype=np.int8), size=p)
        opt = (kind == CALL) | (kind == PUT)
        pf = Portfolio(
            n,
            ("ETH",),
            rng.integers(0, n, size=p),
            kind,
            np.zeros(p, dtype=np.int64),
            rng.normal(0.0, 10.0, size=p),
            np.where(opt, rng.uniform(0.5, 1.5, size=p) * max(spot, 1.0), 0.0),
            np.where(opt, rng.uniform(0.0, 60.0, size=p) * 86_400.0, 0.0),
            np.where(kind == PERP, rng.uniform(0.5, 1.5, size=p) * spot, 0.0),
            rng.normal(0.0, 1e4, size=n),
        )
        with np.errstate(divide="ignore", invalid="ignore"):  # spot 0: a floor's delta F/S is NaN (allowed below)
            mm = model.requirements(pf, MarketState(spot={"ETH": spot}, vol={"ETH": 0.65})).mm
        assert np.all((mm >= 0.0) | np.isnan(mm)), (name, spot, mm.min())


# --- the scaled-down built-in through its crash (last: the slowest) -----------------------------------------------
SMALL = [
    "run.duration=1h",
    "agents.hedged.accounts=60",
    "agents.borrowers.accounts=40",
    "agents.traders.params.accounts=40",
    "agents.writers.params.accounts=30",
    "agents.delta-hedgers.params.accounts=10",
    "agents.protection-buyers.params.accounts=30",
    "shocks.0.at=10m",
    "shocks.1.at=10m",
    "shocks.1.until=50m",
    "shocks.2.at=10m",
    "shocks.2.until=50m",
    "margin.regime=portfolio",
]


@pytest.fixture(scope="module")
def crash_checks():
    """Per block of the crash: (unvalued principals, valued principals, unhealthy principals), after checking every
    figure (row batches every fifth block)."""
    model = StressModel(load("inter-protocol-pm", SMALL), 5)
    coord = model.coordinator
    rng = np.random.default_rng(7)
    seen = []

    def check(m) -> None:
        whole = coord.requirements()
        assert_same(whole, reference_requirements(coord))
        seen.append((*assert_screen_exact(coord, whole), int((whole.health < 1.0).sum())))
        if m.env.clock.block % 5:
            return
        book = coord._book(np.arange(coord.n_accounts))
        for size in (1, 2, coord.n_accounts // 3, coord.n_accounts - 1):
            pick = np.sort(rng.choice(coord.n_accounts, size=size, replace=False))
            sub = _take(book, pick)
            assert_same(coord._coordinated(sub, coord._pm_mm(sub)), whole, pick)
            assert_same(coord.requirements(pick), whole, pick)

    model.hooks["block_end"].append(check)
    model.run()
    return seen


def test_screened_health_and_row_batches_match_the_whole_book_through_the_crash(crash_checks):
    assert len(crash_checks) >= 200
    # the checks saw every side: principals the bound cleared, principals valued, unhealthy principals among them
    left, valued, bad = np.array(crash_checks).T
    assert left.sum() > 0 and valued.sum() > 0 and bad.sum() > 0
