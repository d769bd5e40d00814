"""Reference prices: GBM statistics, scheduled shocks, the stablecoin peg, replayed candles and impact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from defistress.scenarios.loader import HISTORIC_DIR, load
from defistress.sim.engine.market import SECONDS_PER_YEAR, Market
from defistress.sim.engine.replay import load_replay

BLOCK_S = 12.0
BLOCKS_PER_HOUR = 300
H1 = "01_black_thursday_2020-03_ETH_BTC_1h.csv"


def market(assets: list[dict], duration: str, shocks: list[dict] | None = None, seed: int = 7, **market_kw) -> Market:
    raw = {
        "run": {"name": "market-test", "duration": duration, "block_seconds": BLOCK_S},
        "market": {"assets": assets, **market_kw},
        "shocks": shocks or [],
    }
    loaded = load(raw)
    data = load_replay(loaded.scenario, loaded.resolve_data)
    return Market(loaded.scenario, np.random.default_rng(seed), data, np.random.default_rng(seed + 1))


def log_returns(m: Market, symbol: str) -> np.ndarray:
    return np.diff(np.log(m.exogenous[:, m.index[symbol]]))


def annualised(r: np.ndarray) -> float:
    return float(np.std(r, ddof=1) * np.sqrt(SECONDS_PER_YEAR / BLOCK_S))


# --- GBM --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gbm() -> Market:
    """Two correlated risky assets over 14 days = 100,800 blocks."""
    return market(
        [
            {"symbol": "ETH", "price": 2_000.0, "volatility": 0.65},
            {"symbol": "BTC", "price": 60_000.0, "volatility": 0.55},
        ],
        "14d",
        correlation=[[1.0, 0.8], [0.8, 1.0]],
    )


@pytest.mark.parametrize("symbol, sigma", [("ETH", 0.65), ("BTC", 0.55)])
def test_gbm_sample_volatility_matches_the_spec(gbm, symbol, sigma):
    r = log_returns(gbm, symbol)
    n = r.size
    # relative standard error of a sample stdev ~ 1/sqrt(2n) = 0.22% for n ~ 100,800: 3% is generous
    assert annualised(r) == pytest.approx(sigma, rel=0.03)
    # and the spec lies inside the 99.9% chi-square confidence interval of the variance
    s2 = np.var(r, ddof=1)
    lo, hi = stats.chi2.interval(0.999, df=n - 1)
    per_block_var = sigma**2 * BLOCK_S / SECONDS_PER_YEAR
    assert (n - 1) * s2 / hi <= per_block_var <= (n - 1) * s2 / lo


def test_gbm_starts_at_the_initial_price(gbm):
    assert gbm.exogenous[0].tolist() == [2_000.0, 60_000.0]


def test_gbm_correlation_of_two_assets(gbm):
    res = stats.pearsonr(log_returns(gbm, "ETH"), log_returns(gbm, "BTC"))
    assert res.statistic == pytest.approx(0.8, abs=0.02)
    lo, hi = res.confidence_interval(0.999)
    assert lo <= 0.8 <= hi


def test_correlation_override_applies_inside_its_window():
    m = market(
        [
            {"symbol": "ETH", "price": 2_000.0, "volatility": 0.6},
            {"symbol": "BTC", "price": 60_000.0, "volatility": 0.6},
        ],
        "4d",
        shocks=[{"at": "2d", "until": "4d", "correlation": 0.0}],
        correlation=[[1.0, 0.9], [0.9, 1.0]],
    )
    half = 2 * 24 * BLOCKS_PER_HOUR
    re, rb = log_returns(m, "ETH"), log_returns(m, "BTC")
    before = stats.pearsonr(re[: half - 1], rb[: half - 1]).statistic
    inside = stats.pearsonr(re[half:], rb[half:]).statistic
    assert before == pytest.approx(0.9, abs=0.02)
    assert inside == pytest.approx(0.0, abs=0.05)


# --- scheduled shocks -------------------------------------------------------------------------------
FLAT_ETH = {"symbol": "ETH", "price": 2_000.0, "volatility": 0.0}


def test_scheduled_jump_moves_the_price_by_exactly_the_jump_at_its_time():
    m = market([FLAT_ETH], "4h", shocks=[{"at": "2h", "asset": "ETH", "jump": -0.15}])
    p = m.exogenous[:, 0]
    at = 2 * BLOCKS_PER_HOUR  # 2h / 12 s = block 600
    assert p[at] / p[at - 1] == pytest.approx(0.85, rel=1e-12)
    assert np.all(p[:at] == 2_000.0)
    assert np.allclose(p[at:], 1_700.0, rtol=1e-12)  # 2,000 · (1 − 0.15) and nothing else moves


def test_drift_to_reaches_the_stated_total_over_the_window():
    m = market([FLAT_ETH], "8h", shocks=[{"at": "2h", "until": "6h", "asset": "ETH", "drift_to": -0.25}])
    p = m.exogenous[:, 0]
    start, end = 2 * BLOCKS_PER_HOUR, 6 * BLOCKS_PER_HOUR  # blocks 600 .. 1799 are the window
    assert np.all(p[:start] == 2_000.0)
    assert p[end - 1] == pytest.approx(1_500.0, rel=1e-12)  # 2,000 · (1 − 0.25) by the window's last block
    assert np.allclose(p[end:], 1_500.0, rtol=1e-12)  # and it stays there
    assert np.all(np.diff(p[start - 1 : end]) < 0)  # a steady fall, no jump
    # half way (600 of 1,200 window blocks): 2,000 · 0.75^(1/2) = 1,732.05
    assert p[start + 599] == pytest.approx(2_000 * 0.75**0.5, rel=1e-12)


def test_drift_of_a_run_that_ends_inside_the_window_is_not_compressed():
    # the same shock, but the run stops at 4h: half of the window has elapsed, so half of the log drift
    m = market([FLAT_ETH], "4h", shocks=[{"at": "2h", "until": "6h", "asset": "ETH", "drift_to": -0.25}])
    p = m.exogenous[:, 0]
    assert p[-1] == pytest.approx(2_000 * 0.75**0.5, rel=1e-12)  # 1,732.05, not 1,500


def test_volatility_multiplier_raises_realised_vol_in_its_window():
    m = market(
        [{"symbol": "ETH", "price": 2_000.0, "volatility": 0.5}],
        "2d",
        shocks=[{"at": "12h", "until": "36h", "asset": "ETH", "volatility_multiplier": 3.0}],
    )
    r = log_returns(m, "ETH")
    a, b = 12 * BLOCKS_PER_HOUR, 36 * BLOCKS_PER_HOUR  # returns r[k] = log p[k+1] − log p[k]
    inside = annualised(r[a : b - 1])
    outside = annualised(np.concatenate([r[: a - 1], r[b:]]))
    assert outside == pytest.approx(0.5, rel=0.04)
    assert inside == pytest.approx(1.5, rel=0.04)
    assert inside / outside == pytest.approx(3.0, rel=0.05)


# --- stablecoins --------------------------------------------------------------------------------------
def test_stablecoin_depeg_pulls_the_price_to_depeg_to_and_the_peg_mean_reverts():
    m = market(
        [{"symbol": "USDC", "peg": 1.0, "peg_reversion_per_hour": 2.0, "peg_volatility": 0.002}],
        "14h",
        shocks=[{"at": "2h", "until": "8h", "asset": "USDC", "depeg_to": 0.90}],
    )
    p = m.exogenous[:, 0]
    start, end = 2 * BLOCKS_PER_HOUR, 8 * BLOCKS_PER_HOUR
    assert np.all(np.abs(p[:start] - 1.0) < 1e-3)  # on peg before the shock
    # reversion per block a = 2/h · 12 s / 3,600 s = 1/150: after 1,800 window blocks (1 − a)^1800 = e^−12
    assert p[end - 1] == pytest.approx(0.90, rel=1e-3)
    # after the window the log deviation decays as (1 − 1/150)^k: half-life ln 2 · 150 ≈ 104 blocks
    # (149/150)^104 = exp(104 · ln(149/150)) = 0.4988
    x_end = np.log(p[end - 1])
    assert np.log(p[end - 1 + 104]) / x_end == pytest.approx((149 / 150) ** 104, rel=0.01)
    assert abs(p[-1] - 1.0) < 1e-3  # back on peg 6h later


# --- replay -----------------------------------------------------------------------------------------
def eth_candles() -> pd.DataFrame:
    df = pd.read_csv(HISTORIC_DIR / H1, comment="#")
    return df[df["symbol"] == "ETH-USDT"].reset_index(drop=True)


def replay_market(fill: str) -> Market:
    return market(
        [{"symbol": "ETH"}, {"symbol": "USDC", "peg": 1.0}],
        "10h",
        replay={"file": H1, "symbols": {"ETH": "ETH-USDT"}, "start": "2020-03-12T00:00:00Z", "fill": fill},
    )


def test_replay_hold_steps_at_candle_boundaries_without_inventing_prices():
    m = replay_market("hold")
    p = m.exogenous[:, m.index["ETH"]]
    c = eth_candles()
    assert set(np.unique(p)) <= set(c["open"]) | set(c["close"])
    # candle 2020-03-12 00:00 opens 194.61 and closes 193.31; the 01:00 candle closes 185.03
    assert np.all(p[:BLOCKS_PER_HOUR] == 194.61)
    assert np.all(p[BLOCKS_PER_HOUR : 2 * BLOCKS_PER_HOUR] == 193.31)
    assert np.all(p[2 * BLOCKS_PER_HOUR : 3 * BLOCKS_PER_HOUR] == 185.03)
    changes = np.flatnonzero(np.diff(p)) + 1
    assert np.all(changes % BLOCKS_PER_HOUR == 0)  # moves only at candle boundaries
    info = m.replay_data.manifest()
    assert info["fill"] == "hold" and info["series"][0]["interval_s"] == 3600.0


def test_replay_linear_fill_interpolates_between_observations():
    m = replay_market("linear")
    p = m.exogenous[:, m.index["ETH"]]
    half = BLOCKS_PER_HOUR // 2
    assert p[0] == 194.61
    assert p[half] == pytest.approx((194.61 + 193.31) / 2)  # 193.96 at 00:30
    assert p[BLOCKS_PER_HOUR] == pytest.approx(193.31)
    assert p[BLOCKS_PER_HOUR + half] == pytest.approx((193.31 + 185.03) / 2)  # 189.17 at 01:30


# --- impact -----------------------------------------------------------------------------------------
def test_selling_moves_the_reference_down_by_the_square_root_law_and_recovers_with_the_half_life():
    m = market(
        [FLAT_ETH, {"symbol": "USDC", "peg": 1.0, "peg_volatility": 0.0}],
        "2h",
        depth={"ETH": {"usd_for_1pct": 5_000_000, "recovery_half_life": "30m"}},
    )
    m.advance(0)
    assert m.price("ETH") == 2_000.0
    m.record_flow("ETH", 20_000_000.0)
    m.advance(1)
    # impact = 1% · sqrt(20M / 5M) = 2% -> 2,000 · 0.98 = 1,960
    assert m.price("ETH") == pytest.approx(1_960.0, rel=1e-12)
    for b in range(2, 2 + 150):  # 30 min = 150 blocks: the unrecovered flow halves to 10M
        m.advance(b)
    # impact = 1% · sqrt(10M / 5M) = 1.4142% -> 2,000 · (1 − 0.014142) = 1,971.716
    assert m.price("ETH") == pytest.approx(2_000 * (1 - 0.01 * np.sqrt(2.0)), rel=1e-9)
    assert m.price("USDC") == 1.0  # no depth entry: no impact


def test_buying_moves_the_reference_up():
    m = market([FLAT_ETH], "1h", depth={"ETH": {"usd_for_1pct": 5_000_000}})
    m.record_flow("ETH", -20_000_000.0)
    m.advance(1)
    assert m.price("ETH") == pytest.approx(2_040.0, rel=1e-12)  # 2,000 · (1 + 2%)


def test_selling_impact_is_capped_at_99_percent_and_buying_impact_is_not():
    m = market([FLAT_ETH], "1h", depth={"ETH": {"usd_for_1pct": 5_000_000}})
    m.record_flow("ETH", 100_000_000_000.0)  # 1% · sqrt(100G / 5M) = 141% down: capped at 99% down
    m.advance(1)
    assert m.price("ETH") == pytest.approx(20.0, rel=1e-12)  # 2,000 · (1 − 99%)
    m = market([FLAT_ETH], "1h", depth={"ETH": {"usd_for_1pct": 5_000_000}})
    m.record_flow("ETH", -100_000_000_000.0)  # the same flow bought: 141% up, no cap
    m.advance(1)
    assert m.price("ETH") == pytest.approx(2_000.0 * (1.0 + 0.01 * np.sqrt(20_000.0)), rel=1e-12)  # 4,828.43
    m.advance(2)  # the flow of a block is counted once: the next block only decays it (default half-life 30 min)
    assert m.price("ETH") == pytest.approx(2_000.0 * (1.0 + 0.01 * np.sqrt(20_000.0 * 0.5 ** (12 / 1800))), rel=1e-12)


def test_the_per_asset_impact_is_numpys_formula_bit_for_bit():
    """`advance` computes max(-1% · sign(Q) · sqrt(|Q| / depth), -0.99) on Python floats (issue 14: fewer ufunc calls
    a block); `impact_plain` is the numpy formula it replaced. Random flows of every sign and size, zeros of both
    signs, the -99% cap and an asset without depth (infinite) must give the same log impact and prices, bit for bit."""
    assets = [FLAT_ETH, {"symbol": "BTC", "price": 60_000.0, "volatility": 0.0}, {"symbol": "USDC", "peg": 1.0}]
    m = market(assets, "1h", depth={"ETH": {"usd_for_1pct": 5_000_000}, "BTC": {"usd_for_1pct": 7_777_777.7}})
    assert np.isinf(m.depth[2])
    rng = np.random.default_rng(11)
    flows = [np.array([0.0, -0.0, 0.0]), np.array([-0.0, 0.0, -0.0]), np.array([1e11, -1e11, 5.0])]
    flows += [rng.choice([-1.0, 1.0], 3) * 10.0 ** rng.uniform(-3, 12, 3) for _ in range(300)]
    for b, flow in enumerate(flows, start=1):
        m.flow_usd = np.copysign(np.zeros(3), flow)  # decayed zeros of the flow's signs: Q is `flow`, signed zeros too
        m.pending_usd[:] = flow
        prices = m.advance(b)
        assert m.flow_usd.tobytes() == flow.tobytes()
        expected = m.impact_plain(flow)
        assert m.impact.tobytes() == expected.tobytes()
        assert prices.tobytes() == (m.exogenous[min(b, m.n_blocks - 1)] * np.exp(expected)).tobytes()
    assert m.impact_plain(np.array([1e11, 0.0, 1.0]))[0] == np.log1p(-0.99)  # the cap is reached: a real check
